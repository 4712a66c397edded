"""The asynchronous rollout pipeline on its own (`rlvr.rollout.pipeline`), with engines of random latency: the
staleness bound holds, admission wastes nothing, every batch is taken once, nothing deadlocks, and stopping at any
point (an exception on either side, Ctrl-C) leaves no thread running."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest
import torch

from rlvr.rollout import Rollout
from rlvr.rollout.pipeline import (
    PipelinedEngine,
    RolloutPipeline,
    StalenessError,
    episode_lags,
    policy_versions,
    token_versions,
)

pytestmark = pytest.mark.timeout(120)  # a deadlock fails the test instead of hanging the suite


class SlowEngine:
    """An engine whose calls and pushes take a random time (seeded); it records what it was asked."""

    name = "slow"
    runs_apart = True

    def __init__(self, seed: int, latency: float = 0.004, fail_on_call: int | None = None) -> None:
        self.random = random.Random(seed)
        self.latency = latency
        self.fail_on_call = fail_on_call
        self.calls = 0
        self.pushes = 0
        self.busy = threading.Lock()  # held during a call or a push: overlapping ones would be a bug

    def generate(self, prompt: int) -> int:
        assert self.busy.acquire(blocking=False), "a call overlapped another call or a push"
        try:
            self.calls += 1
            if self.calls == self.fail_on_call:
                raise RuntimeError("the engine broke")
            time.sleep(self.random.uniform(0, self.latency))
            return prompt
        finally:
            self.busy.release()

    def sync_weights(self) -> None:
        assert self.busy.acquire(blocking=False), "a push overlapped a call"
        try:
            time.sleep(self.random.uniform(0, self.latency))
            self.pushes += 1
        finally:
            self.busy.release()


def make_pipeline(engine, steps, staleness, turns=3, first=0, seen=None):
    """A pipeline whose batch of step k makes `turns` engine calls and records, as it starts, how far ahead of
    the engine's weights it is (`seen`: step -> version at start)."""
    holder = {}

    def produce(step):
        pipeline = holder["pipeline"]
        if seen is not None:
            assert step not in seen, f"step {step} produced twice"
            seen[step] = pipeline.version
        with policy_versions() as versions:
            out = [wrapped.generate(step * 100 + turn) for turn in range(turns)]
        return step, out, versions

    pipeline = RolloutPipeline(produce, first, steps, staleness, join_timeout=10)
    holder["pipeline"] = pipeline
    wrapped = PipelinedEngine(engine, pipeline)
    return pipeline, wrapped


def train(pipeline, wrapped, first, steps, rng, work=0.004, fail_at=None, interrupt_at=None):
    """The trainer's side: take, 'update' for a random time, push; raises at step `fail_at` or `interrupt_at`."""
    taken = []
    for step in range(first, steps):
        batch = pipeline.take(step)
        taken.append(batch)
        if step == fail_at:
            raise ValueError("the trainer broke")
        if step == interrupt_at:
            raise KeyboardInterrupt
        time.sleep(rng.uniform(0, work))
        wrapped.sync_weights()
    return taken


@pytest.mark.parametrize("staleness", [0, 1, 2, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_bound_holds_admission_wastes_nothing_and_every_batch_is_taken_once(staleness, seed):
    engine, seen = SlowEngine(seed), {}
    steps = 12
    pipeline, wrapped = make_pipeline(engine, steps, staleness, seen=seen)
    pipeline.start()
    try:
        taken = train(pipeline, wrapped, 0, steps, random.Random(seed + 100))
    finally:
        assert pipeline.close()
    assert [b.step for b in taken] == list(range(steps))
    assert [b.value[0] for b in taken] == list(range(steps))  # each batch is its own step's, once
    assert sorted(seen) == list(range(steps))  # no batch made twice or left unmade: nothing wasted
    for step, version in seen.items():
        assert step - staleness <= version <= step  # admission: started only on weights fresh enough
    for batch in taken:
        assert batch.versions == batch.value[2]  # the thread-local record sees the same calls
        assert all(batch.step - staleness <= v <= batch.step for v in batch.versions), batch
        assert batch.versions == sorted(batch.versions)  # later calls of a batch never sample older weights
    assert engine.pushes == steps and engine.calls == 3 * steps


class Fixed:
    """A random source whose `uniform` is always the top of the range: a trainer of constant speed."""

    def uniform(self, low, high):
        return high


def test_with_a_slow_trainer_the_producer_runs_exactly_s_steps_ahead():
    # the trainer takes 50x longer than a batch: the producer is always as far ahead as admission lets it
    engine, seen = SlowEngine(0, latency=0.001), {}
    pipeline, wrapped = make_pipeline(engine, 8, 2, turns=1, seen=seen)
    pipeline.start()
    try:
        taken = train(pipeline, wrapped, 0, 8, Fixed(), work=0.05)
    finally:
        pipeline.close()
    assert {step: step - version for step, version in seen.items()} == {
        0: 0,
        1: 1,
        **{k: 2 for k in range(2, 8)},
    }
    assert [max(b.step - v for v in b.versions) for b in taken] == [0, 1, 2, 2, 2, 2, 2, 2]
    assert all(b.weight_wait > 0 for b in taken[3:])  # steps 3+ waited for the push of step k - 2


def test_s0_takes_turns():
    # S = 0: a batch starts only after the push of the step before it, so no call overlaps an update
    engine = SlowEngine(0)
    updating = threading.Event()
    calls_during_update = []
    original = engine.generate

    def generate(prompt):
        calls_during_update.append(updating.is_set())
        return original(prompt)

    engine.generate = generate
    pipeline, wrapped = make_pipeline(engine, 6, 0)
    pipeline.start()
    try:
        for step in range(6):
            pipeline.take(step)
            updating.set()
            time.sleep(0.01)
            updating.clear()
            wrapped.sync_weights()
    finally:
        pipeline.close()
    assert len(calls_during_update) == 18 and not any(calls_during_update)


def test_a_batch_is_taken_once_and_a_step_without_its_push_is_refused():
    engine = SlowEngine(0)
    pipeline, wrapped = make_pipeline(engine, 4, 1)
    pipeline.start()
    try:
        pipeline.take(0)
        with pytest.raises(ValueError, match="taken already"):
            pipeline.take(0)
        wrapped.sync_weights()
        pipeline.take(1)
        with pytest.raises(ValueError, match="push after each step"):
            pipeline.take(3)  # the engine holds version 1: step 3 would wait for version 2 forever
    finally:
        assert pipeline.close()


def test_a_batch_outside_the_bound_is_refused():
    pipeline = RolloutPipeline(lambda step: step, 0, 2, max_staleness=0)
    pipeline.start()
    batch = pipeline.take(0)
    pipeline.push(lambda: None)
    time.sleep(0.05)
    pipeline._ready[1].versions = [0]  # as if step 1 had sampled before step 0's push
    with pytest.raises(StalenessError, match=r"versions \[0\], outside \[1, 1\]"):
        pipeline.take(1)
    assert batch.value == 0 and pipeline.close()


# --------------------------------------------------------------------------- stopping at any point
def _producer_threads():
    return [t for t in threading.enumerate() if t.name == "rlvr-rollout-producer"]


@pytest.mark.parametrize("stop_at", [0, 1, 3, 6])
@pytest.mark.parametrize("how", ["trainer raises", "Ctrl-C in the trainer", "engine raises"])
def test_stopping_at_any_point_leaves_no_thread_running(how, stop_at):
    before = set(_producer_threads())
    # the engine's call number 3 * stop_at + 2 fails: in the middle of the batch of step `stop_at`
    engine = SlowEngine(stop_at, fail_on_call=3 * stop_at + 2 if how == "engine raises" else None)
    pipeline, wrapped = make_pipeline(engine, 10, 2)
    pipeline.start()
    expected = {"trainer raises": ValueError, "Ctrl-C in the trainer": KeyboardInterrupt}.get(
        how, RuntimeError
    )
    try:
        with pytest.raises(expected):
            train(
                pipeline,
                wrapped,
                0,
                10,
                random.Random(stop_at),
                fail_at=stop_at if how == "trainer raises" else None,
                interrupt_at=stop_at if how == "Ctrl-C in the trainer" else None,
            )
    finally:
        assert pipeline.close()
    assert set(_producer_threads()) == before
    assert pipeline.depth == 0  # queued batches were dropped with the producer


def test_an_engine_failure_reaches_the_trainer_after_the_batches_made_before_it():
    engine = SlowEngine(0, fail_on_call=7)  # the 7th call: the first of step 2 (3 calls a batch)
    pipeline, wrapped = make_pipeline(engine, 6, 2)
    pipeline.start()
    try:
        assert pipeline.take(0).step == 0
        wrapped.sync_weights()
        assert pipeline.take(1).step == 1
        wrapped.sync_weights()
        with pytest.raises(RuntimeError, match="the engine broke"):
            pipeline.take(2)
    finally:
        assert pipeline.close()


def test_close_during_a_slow_call_ends_the_producer_at_its_next_call():
    engine = SlowEngine(0, latency=0.2)
    pipeline, _ = make_pipeline(engine, 10, 3, turns=5)
    pipeline.start()
    time.sleep(0.1)  # inside the first call
    started = time.perf_counter()
    assert pipeline.close()
    assert time.perf_counter() - started < 1.0  # it did not make the batch's other four calls
    assert engine.calls <= 2


# --------------------------------------------------------------------------- versions of tokens
def _rollout(loss_mask, episode_index, turn_index=None, versions=None):
    rows, width = len(loss_mask), len(loss_mask[0])
    rollout = Rollout(
        prompt_ids=torch.zeros(rows, 1, dtype=torch.long),
        prompt_mask=torch.ones(rows, 1, dtype=torch.long),
        completion_ids=torch.zeros(rows, width, dtype=torch.long),
        completion_mask=torch.ones(rows, width, dtype=torch.long),
        truncated=torch.zeros(rows, dtype=torch.bool),
        prompts=["p"] * (max(episode_index) + 1),
        completions=["c"] * (max(episode_index) + 1),
        loss_mask=torch.tensor(loss_mask),
        episode_index=torch.tensor(episode_index),
        turn_index=None if turn_index is None else torch.tensor(turn_index),
    )
    if versions is not None:
        rollout.policy_version = token_versions(rollout, versions)
    return rollout


@pytest.mark.parametrize(
    "loss_mask, episode_index, turn_index, versions, expected",
    [
        ([[1, 1, 0]], [0], None, [5], [[5, 5, -1]]),  # one reply: one call, padding -1
        ([[1, 0, 1, 1]], [0], [[0, -1, 1, 1]], [2, 3], [[2, -1, 3, 3]]),  # a push between the turns
        # a template that rewrote the past: the episode's second turn continues in a row of its own
        ([[1, 1], [0, 1]], [0, 0], [[0, 0], [-1, 1]], [4, 4], [[4, 4], [-1, 4]]),
    ],
)
def test_token_versions(loss_mask, episode_index, turn_index, versions, expected):
    assert _rollout(loss_mask, episode_index, turn_index, versions).policy_version.tolist() == expected


def test_token_versions_refuses_turns_without_calls():
    with pytest.raises(ValueError, match="tokens of turn 1 but 1 engine calls"):
        _rollout([[1, 1]], [0], [[0, 1]], [7])


def test_episode_lags_take_each_episodes_oldest_token():
    # episode 0: rows at versions 3 and 4 -> oldest 3, lag 2 at step 5; episode 1: version 5, lag 0;
    # episode 2: no sampled token (cut before its first turn) -> -1
    rollout = _rollout([[1, 1], [1, 0], [1, 1], [0, 0]], [0, 0, 1, 2])
    rollout.policy_version = torch.tensor([[4, 4], [3, -1], [5, 5], [-1, -1]])
    assert episode_lags(rollout, step=5).tolist() == [2, 0, -1]
    rollout.policy_version = None
    assert episode_lags(rollout, step=5).tolist() == [0, 0, 0]


def test_a_real_ctrl_c_while_the_trainer_waits_for_data_stops_everything():
    # SIGINT arrives while the trainer blocks in `take` (the producer is in a slow call): the wait is interrupted
    engine = SlowEngine(0, latency=0.0)
    slow = engine.generate

    def very_slow(prompt):
        time.sleep(0.3)
        return slow(prompt)

    engine.generate = very_slow
    pipeline, _ = make_pipeline(engine, 5, 1, turns=10)
    pipeline.start()
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            pipeline.take(0)  # the batch needs 3 s: the interrupt comes first
    finally:
        assert pipeline.close()
    assert time.perf_counter() - started < 2.0
    assert _producer_threads() == []
