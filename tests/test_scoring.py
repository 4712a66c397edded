"""Scoring a batch: the registry's rule for reward values with the trainer's messages, and reward functions in
worker processes (order kept, errors that name the function and the completion, a time limit per call, a worker
that hangs or dies replaced while the others go on)."""

from __future__ import annotations

import math
import multiprocessing
import os
import threading
import time

import numpy as np
import pytest
import torch

from rlvr.config import ConfigError, GRPOConfig
from rlvr.rewards.pool import RewardPool, RewardPoolBusy, RewardTimeout, RewardWorkerDied, chunk_bounds
from rlvr.rewards.scoring import RewardError, WorkerTraceback, checked_values, score

PROMPTS = [[{"role": "user", "content": f"What is {i} + {i}?"}] for i in range(3) for _ in range(4)]
COMPLETIONS = [f"The answer is \\boxed{{{i}}}" + "!" * j for i in range(3) for j in range(4)]
COLUMNS = {"answer": [str(2 * i) for i in range(3) for _ in range(4)]}


def length_reward(prompts, completions, **kwargs):
    return [float(len(c[0]["content"])) for c in completions]


def group_position(prompts, completions, **kwargs):
    """0, 1, 2, 3 within each group: right only when the worker sees whole groups, in order."""
    return [float(i % 4) for i in range(len(completions))]


def fragile(prompts, completions, **kwargs):
    if any("oops" in c[0]["content"] for c in completions):
        raise KeyError("gold")
    return [0.0] * len(completions)


def sleepy(prompts, completions, **kwargs):
    time.sleep(1.0)  # a slow verifier; sleeping needs no CPU, so timings hold on a busy machine
    return [1.0] * len(completions)


def worker_pid(prompts, completions, **kwargs):
    """The process that scored each completion."""
    return [float(os.getpid())] * len(completions)


def exits(prompts, completions, **kwargs):
    if any("crash" in c[0]["content"] for c in completions):
        os._exit(3)  # as a segfault or the out-of-memory killer would end it: no exception, no answer
    return [0.0] * len(completions)


def worker_processes() -> set[int]:
    """Process ids of the live reward workers of every pool in this process."""
    return {p.pid for p in multiprocessing.active_children() if p.name == "rlvr-reward-worker"}


def wait_for_workers(others: set[int], n: int) -> set[int]:
    """The workers besides `others` once there are `n` (a replacement starts in the background)."""
    deadline = time.monotonic() + 60
    while len(worker_processes() - others) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    return worker_processes() - others


def alive(pid: float) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    return True


STUCK = """
def stuck(prompts, completions, **kwargs):
    while any("hang" in c[0]["content"] for c in completions):
        pass
    return [0.0] * len(completions)
"""
STARTS_ONLY_HERE = """
import multiprocessing

if multiprocessing.parent_process() is not None:
    raise ImportError("no licence server from the workers")


def reward(prompts, completions, **kwargs):
    return [0.0] * len(completions)
"""


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 0.5, None], [1.0, 0.5, None]),
        ([None, 2, -0.5], [None, 2.0, -0.5]),
        ([np.float32(0.25), torch.tensor(3.0), np.int64(-2)], [0.25, 3.0, -2.0]),  # scalars of NumPy, torch
        ((1, 2, 3), [1.0, 2.0, 3.0]),
        ([None, None, None], [None, None, None]),
    ],
)
def test_checked_values_follow_the_registry_rule(values, expected):
    assert checked_values("r", values, ["a", "b", "c"]) == expected


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([1.0], r"'r' must return a list of 3 floats or None, got 1"),
        (1.0, r"'r' must return a list of 3 floats or None, got float"),
        ([1.0, "yes", 0.0], r"'r' failed: returned 'yes'.*; completion 11:\n---\nb\n---"),  # offset 10
        ([1.0, 0.0, [1]], r"returned \[1\].*completion 12:\n---\nc\n---"),
        # An inf reward once made every advantage of its group NaN and every weight after the update.
        (
            [1.0, float("inf"), 0.0],
            r"returned inf, which is not a finite number.*completion 11:\n---\nb\n---",
        ),
        ([float("-inf"), 0.0, 0.0], r"returned -inf, which is not a finite number.*completion 10"),
        ([float("nan"), 0.0, 0.0], r"returned nan, which is not a finite number.*completion 10:"),  # not None
        ([0.0, torch.tensor(float("nan")), 0.0], r"returned tensor\(nan\).*completion 11"),
        ([0.0, 0.0, "0.5"], r"returned '0.5', which is not a number or None.*completion 12"),  # not parsed
        ([True, 0.0, 0.0], r"returned True, which is not a number.*completion 10"),  # not 1.0
        ([0.0, np.bool_(False), 0.0], r"returned np.False_, which is not a number.*completion 11"),
        ([0.0, torch.tensor([1.0, 2.0]), 0.0], r"which is not a number or None.*completion 11"),
        (
            [0.0, 10**400, 0.0],
            r"returned 1000.*, which is not a number or None.*completion 11",
        ),  # float() overflows
    ],
)
def test_checked_values_name_the_function_and_the_completion(values, message):
    with pytest.raises(RewardError, match=message):
        checked_values("r", values, ["a", "b", "c"], offset=10)


@pytest.mark.parametrize(
    ("n", "parts", "group_size", "bounds"),
    [
        (12, 3, 4, [(0, 4), (4, 8), (8, 12)]),
        (12, 2, 4, [(0, 8), (8, 12)]),  # 3 groups on 2 workers: 2 + 1, never a group cut in two
        (8, 4, 4, [(0, 4), (4, 8)]),  # fewer groups than workers
        (5, 2, 1, [(0, 3), (3, 5)]),
        (4, 1, 4, [(0, 4)]),
    ],
)
def test_chunk_bounds_keep_groups_whole(n, parts, group_size, bounds):
    assert chunk_bounds(n, parts, group_size) == bounds


def test_in_process_score_marks_not_applicable_as_nan():
    def some(prompts, completions, **kwargs):
        return [None if i % 2 else 1.0 for i in range(len(completions))]

    out = score([some, length_reward], PROMPTS, COMPLETIONS, COLUMNS)
    assert out.shape == (12, 2) and out.dtype == torch.float32
    assert math.isnan(out[1, 0]) and out[0, 0] == 1.0
    assert out[:, 1].tolist() == [float(len(c)) for c in COMPLETIONS]


@pytest.fixture(scope="module")
def pool():
    pool = RewardPool(["accuracy", length_reward, group_position, fragile], num_workers=2)
    yield pool
    pool.close()


def test_workers_give_what_the_training_process_gives(pool):
    serial = RewardPool(["accuracy", length_reward, group_position], num_workers=0)
    inline = serial.score(PROMPTS, COMPLETIONS, COLUMNS, group_size=4)
    pool_fns = RewardPool(["accuracy", length_reward, group_position], num_workers=2)
    try:
        parallel = pool_fns.score(PROMPTS, COMPLETIONS, COLUMNS, group_size=4)
    finally:
        pool_fns.close()
    torch.testing.assert_close(parallel, inline, equal_nan=True)
    # group i answers \boxed{i} to "i + i": right only for i = 0
    assert parallel[:, 0].tolist() == [1.0] * 4 + [0.0] * 8
    assert parallel[:, 2].tolist() == [0.0, 1.0, 2.0, 3.0] * 3


def test_a_worker_error_names_the_function_and_the_chunk(pool):
    completions = ["fine"] * 8 + ["oops"] + ["fine"] * 3  # completion 8: the third group, second chunk
    with pytest.raises(
        RewardError,
        match=r"'fragile' raised KeyError: 'gold' \(at test_scoring.py:\d+\), on one of completions 8..11 \(it is "
        "not called again",
    ) as info:
        pool.score(PROMPTS, completions, COLUMNS, group_size=4)
    assert isinstance(info.value.__cause__, WorkerTraceback)
    assert "fragile" in str(info.value.__cause__)  # the worker's traceback
    # the pool is still usable
    assert pool.score(PROMPTS, COMPLETIONS, COLUMNS, group_size=4).shape == (12, 4)


def test_slow_verifiers_run_side_by_side():
    pool = RewardPool([sleepy], num_workers=2)
    try:
        pool.score(PROMPTS[:2], COMPLETIONS[:2], {}, group_size=1)  # start the workers (imports) untimed
        started = time.perf_counter()
        out = pool.score(PROMPTS[:8], COMPLETIONS[:8], {}, group_size=4)  # two chunks, one second each
        seconds = time.perf_counter() - started
    finally:
        pool.close()
    assert out.flatten().tolist() == [1.0] * 8
    assert seconds < 1.8, f"two one-second calls on two workers took {seconds:.2f}s"


def test_a_call_past_the_timeout_is_killed_and_its_worker_replaced(tmp_path):
    (tmp_path / "stuck.py").write_text(STUCK)  # a file spec: resolved in the worker
    pool = RewardPool([worker_pid, f"{tmp_path / 'stuck.py'}:stuck"], num_workers=2, timeout=1.0)
    others = worker_processes()
    try:
        pool.start()
        started = worker_processes() - others
        hanging = COMPLETIONS[:4] + ["hang"] * 4
        with pytest.raises(
            RewardTimeout,
            match=r"'stuck' took longer than rewards.timeout=1s on completions 4..7; its worker",
        ):
            pool.score(PROMPTS[:8], hanging, {}, group_size=4)
        assert len(started) == 2 and sum(alive(pid) for pid in started) == 1  # the stuck one is gone
        out = pool.score(PROMPTS[:8], COMPLETIONS[:8], {}, group_size=4)  # the next batch scores
        assert out[:, 1].tolist() == [0.0] * 8
        assert len(wait_for_workers(others, 2) - started) == 1  # a fresh worker in place of the stuck one
    finally:
        pool.close()


def test_a_worker_that_dies_is_replaced_and_close_stops_them_all():
    pool = RewardPool([worker_pid, exits], num_workers=2)
    others = worker_processes()
    try:
        crashing = COMPLETIONS[:4] + ["crash"] * 4
        with pytest.raises(
            RewardWorkerDied,
            match=r"^a reward worker process died \(exit code 3\) while reward function 'exits' ran on "
            r"completions 4..7; it was replaced$",
        ):
            pool.score(PROMPTS[:8], crashing, {}, group_size=4)
        out = pool.score(PROMPTS[:8], COMPLETIONS[:8], {}, group_size=4)
        assert out[:, 1].tolist() == [0.0] * 8
        mine = wait_for_workers(others, 2)
    finally:
        pool.close()
    assert not any(alive(pid) for pid in mine)


def test_a_call_waits_for_a_free_worker_at_most_wait_seconds():
    pool = RewardPool([sleepy], num_workers=1)
    try:
        pool.start()
        busy = threading.Thread(target=pool.score_values, args=(PROMPTS[:1], COMPLETIONS[:1], {}))
        busy.start()
        time.sleep(0.3)  # the one worker is now asleep for a second
        with pytest.raises(RewardPoolBusy, match=r"no reward worker became free within 0.2s"):
            pool.score_values(PROMPTS[:1], COMPLETIONS[:1], {}, wait=0.2)
        assert pool.score_values(PROMPTS[:1], COMPLETIONS[:1], {}, wait=30) == [[1.0]]  # waits its turn
        busy.join()
    finally:
        pool.close()


def test_a_worker_that_cannot_start_says_why(tmp_path):
    (tmp_path / "here.py").write_text(STARTS_ONLY_HERE)
    pool = RewardPool([f"{tmp_path / 'here.py'}:reward"], num_workers=1)  # resolves in this process
    message = (
        r"a reward worker process failed to start: RewardSpecError: .*no licence server from the workers"
    )
    try:
        with pytest.raises(RewardError, match=message):
            pool.start()
        with pytest.raises(RewardError, match=message):  # on first use too, and the pool is not left hanging
            pool.score(PROMPTS[:4], COMPLETIONS[:4], {})
    finally:
        pool.close()


def test_a_function_that_cannot_reach_a_worker_is_refused_up_front():
    def local(prompts, completions, **kwargs):  # a closure: pickle cannot name it
        return [0.0] * len(completions)

    with pytest.raises(RewardError, match=r"'local' cannot be sent to a worker process.*module:function"):
        RewardPool([local], num_workers=2)


@pytest.mark.parametrize(
    ("rewards", "message"),
    [
        ({"timeout": None}, "rewards.timeout must be float, got None"),  # was: no limit
        (
            {"timeout": 0, "num_workers": 2},
            r"rewards.timeout must be above 0 and at most 86400 seconds \(a day\)",
        ),
        ({"timeout": 1e6}, "rewards.timeout must be above 0 and at most 86400"),  # poll() cannot wait longer
        ({"num_workers": -1}, "rewards.num_workers must be >= 0"),
    ],
)
def test_worker_settings_are_checked_with_the_config(rewards, message):
    with pytest.raises(ConfigError, match=message):
        GRPOConfig.from_dict({"rewards": rewards})
