"""The trainer with rollout.max_staleness: S = 0 through the pipeline is the synchronous trainer bit for bit; S > 0
trains within the bound on an engine of random latency, records each turn's policy version, logs the pipeline,
stops cleanly from any failure, and a checkpoint and --resume lose no prompt and train none twice."""

from __future__ import annotations

import copy
import json
import multiprocessing
import random
import threading
import time

import pytest
import torch
from safetensors.torch import load_file
from test_trainer import make_config as trainer_config

from rlvr import GRPOTrainer
from rlvr.environments import Step
from rlvr.environments.registry import register_environment
from rlvr.rewards.scoring import RewardTimeout
from rlvr.rollout.engine import EngineError, HFEngine
from rlvr.trainer import TrainingError
from rlvr.trainer.checkpoint_files import list_checkpoints
from rlvr.trainer.rollouts import RolloutsMixin
from rlvr.utils import read_jsonl

pytestmark = pytest.mark.timeout(300)
ROWS = [{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(24)]


def length_reward(prompts, completions, **kwargs):
    return [len(c[-1]["content"]) / 10 for c in completions]


class CopyEngine:
    """A rollout engine on its own copy of the policy, as a rollout server holds one: `sync_weights` copies the
    trainer's weights in, and each call first waits a random (seeded) time, as a server's latency varies. Calls
    after `fail_after` calls raise, as a server that died."""

    name = "copy"
    runs_apart = True

    def __init__(self, trainer, latency=0.03, seed=0, fail_after=None):
        self.source = trainer.model
        self.model = copy.deepcopy(trainer.model)
        g = trainer.config.generation
        self.inner = HFEngine(
            self.model,
            trainer.tokenizer,
            trainer.config.data.max_prompt_length,
            trainer.autocast_dtype,
            per_prompt_seeds=g.seed_per_prompt,
        )
        self.random = random.Random(seed)
        self.latency = latency
        self.fail_after = fail_after
        self.calls = 0
        self.closed = False

    def _call(self, fn, *args, **kwargs):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise EngineError("the copy engine stopped answering")
        time.sleep(self.random.uniform(0, self.latency))
        return fn(*args, **kwargs)

    def generate(self, *args, **kwargs):
        return self._call(self.inner.generate, *args, **kwargs)

    def generate_ids(self, *args, **kwargs):
        return self._call(self.inner.generate_ids, *args, **kwargs)

    def sync_weights(self):
        with torch.no_grad():
            for mine, theirs in zip(self.model.parameters(), self.source.parameters(), strict=True):
                mine.copy_(theirs)

    def for_model(self, model):
        return self

    def close(self):
        self.closed = True


def make_trainer(
    model_dir,
    output_dir,
    staleness,
    engine=True,
    model=None,
    tokenizer=None,
    reward=length_reward,
    **sections,
):
    sections = {
        "generation": {"num_generations": 4, "max_completion_length": 8},
        "rollout": {"max_staleness": staleness},
        **sections,
    }
    sections["training"] = {"max_steps": 4, **sections.get("training", {})}
    config = trainer_config(model_dir, output_dir, **sections)
    trainer = GRPOTrainer(config, model=model, tokenizer=tokenizer, reward_funcs=[reward], train_dataset=ROWS)
    if engine:
        trainer.engine.close()
        trainer.engine = CopyEngine(trainer, **(engine if isinstance(engine, dict) else {}))
    return trainer


def run_outputs(output_dir, final):
    metrics = [
        {k: v for k, v in m.items() if not k.startswith(("timing", "async/")) and "second" not in k}
        for m in read_jsonl(output_dir / "metrics.jsonl")
    ]
    return metrics, read_jsonl(output_dir / "completions.jsonl"), load_file(final / "model.safetensors")


def producer_threads():
    return [t for t in threading.enumerate() if t.name == "rlvr-rollout-producer" and t.is_alive()]


# ------------------------------------------------------------------------------- S = 0 is the synchronous loop
@pytest.mark.parametrize(
    "sections",
    [
        {},
        {"generation": {"num_generations": 4, "max_completion_length": 8, "seed_per_prompt": True}},
        {"algorithm": {"beta": 0.04, "mu": 2, "dynamic_sampling": True, "max_resample_rounds": 1}},
    ],
    ids=["plain", "seed_per_prompt", "reference-mu2-dynamic"],
)
def test_s0_through_the_pipeline_is_the_synchronous_hf_trainer_bit_for_bit(
    tiny_model_dir, tmp_path, monkeypatch, sections
):
    runs = {}
    for name in ("synchronous", "pipelined"):
        with monkeypatch.context() as patch:
            if name == "pipelined":  # S = 0 normally skips the pipeline: force it, on a copy of the weights
                patch.setattr(RolloutsMixin, "overlaps_training", lambda self: True)
            trainer = make_trainer(tiny_model_dir, tmp_path / name, 0, engine=name == "pipelined", **sections)
            final = trainer.train()
            assert (trainer.pipeline, trainer.rollout_mode) == (None, None)
        runs[name] = run_outputs(tmp_path / name, final)
    (metrics, completions, weights), (metrics0, completions0, weights0) = (
        runs["pipelined"],
        runs["synchronous"],
    )
    assert metrics == metrics0
    assert completions == completions0
    assert all(torch.equal(weights[k], weights0[k]) for k in weights0)
    logged = read_jsonl(tmp_path / "pipelined" / "metrics.jsonl")
    assert [m["async/staleness_max"] for m in logged] == [0, 0, 0, 0]


def test_a_colocated_engine_says_it_runs_synchronously_and_does(tiny_model_dir, tmp_path, capsys):
    outputs = []
    for staleness in (0, 2):
        trainer = make_trainer(tiny_model_dir, tmp_path / str(staleness), staleness, engine=False)
        outputs.append(run_outputs(tmp_path / str(staleness), trainer.train()))
    assert "rollout.max_staleness=2 has no effect with the hf engine" in capsys.readouterr().out
    assert outputs[0][:2] == outputs[1][:2]


# ------------------------------------------------------------------------------- S > 0
def capture_rollouts(trainer):
    """Record (step, rollout) of every update."""
    seen = []
    update = trainer.policy_updates

    def recorded(rollout, *args, **kwargs):
        seen.append((trainer.step, rollout))
        return update(rollout, *args, **kwargs)

    trainer.policy_updates = recorded
    return seen


@pytest.mark.parametrize("staleness", [1, 2])
def test_s_steps_ahead_trains_within_the_bound_and_logs_the_pipeline(tiny_model_dir, tmp_path, staleness):
    trainer = make_trainer(
        tiny_model_dir,
        tmp_path / "run",
        staleness,
        engine={"latency": 0.05, "seed": staleness},
        training={"max_steps": 6},
        algorithm={"importance_sampling_correction": True},
    )
    seen = capture_rollouts(trainer)
    trainer.train()
    assert [step for step, _ in seen] == list(range(6))
    lags = []
    for step, rollout in seen:
        sampled = rollout.loss_mask.bool()
        versions = rollout.policy_version[sampled]
        assert (rollout.policy_version[~sampled] == -1).all()
        assert ((step - versions >= 0) & (step - versions <= staleness)).all()
        lags.append(int((step - versions).max()))
    assert lags[0] == 0 and max(lags) >= 1  # the first batch is fresh; later ones were sampled during updates
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    for m, lag in zip(metrics, lags):
        assert m["async/staleness_max"] == lag
        counts = [m[f"async/staleness/lag_{j}"] for j in range(staleness + 1)]
        assert sum(counts) == 8  # every episode of the step counted once
        assert m["async/staleness_mean"] == sum(j * c for j, c in enumerate(counts)) / 8
        assert 0 <= m["async/queue_depth"] <= staleness
        assert m["async/wait_for_data"] >= 0 and m["async/wait_for_weights"] >= 0
        assert "sampling/logp_diff/mean" in m and "clip_ratio/low" in m
    # a stale batch's sampler log-probs are an older policy's: the gap shows, as the correction needs it
    stale = [m["sampling/logp_diff/mean"] for m, lag in zip(metrics, lags) if lag > 0]
    fresh = [m["sampling/logp_diff/mean"] for m, lag in zip(metrics, lags) if lag == 0]
    assert min(stale) > max(fresh)
    assert producer_threads() == [] and trainer.engine.closed


@register_environment("wait_for_push")
class WaitForPush:
    """Asks again after every reply; while its batch is sampled ahead of the trainer it answers only once the
    trainer has pushed new weights, so the episode's next turn is sampled from a newer policy."""

    trainer = None  # the trainer whose pipeline it watches, set by the test

    def reset(self, **row):
        return None

    def step(self, message):
        pipeline = WaitForPush.trainer.pipeline
        if pipeline is not None and pipeline.running is not None:
            deadline = time.monotonic() + 30
            while pipeline.version < pipeline.running and time.monotonic() < deadline:
                time.sleep(0.005)
        return Step([{"role": "user", "content": "Say it again."}], done=False, reward=0.25)


def test_an_episode_that_crosses_a_push_records_each_turns_version(tiny_model_dir, tmp_path):
    from test_episodes import eos_prone_model
    from transformers import AutoTokenizer

    from rlvr.data import build_messages

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = tokenizer.apply_chat_template(
        build_messages(ROWS[0]["question"], "boxed"), add_generation_prompt=True
    )
    model = eos_prone_model(tiny_model_dir, tokenizer, prompt["input_ids"])
    trainer = make_trainer(
        tiny_model_dir,
        tmp_path / "run",
        1,
        model=model,
        tokenizer=tokenizer,
        environment={"name": "wait_for_push", "max_turns": 2, "max_total_tokens": 400},
        training={"max_steps": 3},
    )
    WaitForPush.trainer = trainer
    seen = capture_rollouts(trainer)
    trainer.train()
    crossed = 0
    for step, rollout in seen:
        versions, turns = rollout.policy_version, rollout.turn_index
        for turn in turns[turns >= 0].unique().tolist():  # one call per turn: one version per turn
            assert versions[turns == turn].unique().numel() == 1
        first, second = versions[turns == 0].unique().item(), versions[turns == 1]
        if second.numel():
            assert second.unique().item() == first + (step > first)  # the push between the turns
            crossed += step > first
    assert crossed >= 1  # batches sampled ahead had their second turn sampled after the trainer's push
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert all(m["async/staleness_max"] <= 1 for m in metrics)


# ------------------------------------------------------------------------------- stopping
class Stop(Exception):
    pass


@pytest.mark.parametrize("how", ["trainer raises", "Ctrl-C", "engine fails", "reward raises"])
def test_a_failure_anywhere_stops_everything_and_keeps_the_checkpoints(tiny_model_dir, tmp_path, how):
    engine = {"fail_after": 5 if how == "engine fails" else None}  # one call a batch: the 6th batch fails
    trainer = make_trainer(
        tiny_model_dir,
        tmp_path / "run",
        2,
        engine=engine,
        training={"max_steps": 8, "save_steps": 2},
        rewards={"num_workers": 1},
    )
    update, score = trainer.policy_updates, trainer.score_rollout

    def failing_update(*args, **kwargs):
        if trainer.step == 4:
            raise {"trainer raises": Stop, "Ctrl-C": KeyboardInterrupt}[how]
        return update(*args, **kwargs)

    scored = []

    def failing_score(rollout, timings):  # in the producer: the batch of step 6 fails to score
        scored.append(rollout)
        if len(scored) == 6:
            raise Stop("reward raised")
        return score(rollout, timings)

    if how in ("trainer raises", "Ctrl-C"):
        trainer.policy_updates = failing_update
    if how == "reward raises":
        trainer.score_rollout = failing_score
    expected = {"trainer raises": Stop, "Ctrl-C": KeyboardInterrupt, "engine fails": TrainingError}
    with pytest.raises(expected.get(how, Stop)) as failure:
        trainer.train()
    if how == "engine fails":
        assert "step 6: the copy rollout engine did not generate" in str(failure.value)
        assert "checkpoint-4" in str(failure.value)
    assert producer_threads() == []
    assert multiprocessing.active_children() == []  # the reward worker was stopped too
    assert trainer.engine.closed
    names = [p.name for p in list_checkpoints(tmp_path / "run")]
    assert names == ["checkpoint-2", "checkpoint-4"]


def test_a_reward_busy_in_python_in_the_producer_thread_stops_the_run_at_its_limit(tiny_model_dir, tmp_path):
    calls = []

    def spins_on_the_sixth_batch(prompts, completions, **kwargs):
        calls.append(len(completions))
        while len(calls) == 6:  # busy in Python, and deaf to errors
            try:
                sum(range(1000))
            except Exception:
                pass
        return length_reward(prompts, completions)

    trainer = make_trainer(
        tiny_model_dir,
        tmp_path / "run",
        2,
        reward=spins_on_the_sixth_batch,
        training={"max_steps": 8, "save_steps": 2},
        rewards={"num_workers": 0, "timeout": 1.0},
    )
    started = time.monotonic()
    with pytest.raises(RewardTimeout, match="took longer than rewards.timeout=1s on completions 0..7"):
        trainer.train()  # before: the process ended 30-60 s later with every thread's stack
    assert time.monotonic() - started < 60
    assert producer_threads() == []
    names = [p.name for p in list_checkpoints(tmp_path / "run")]
    assert names == ["checkpoint-2", "checkpoint-4"]


# ------------------------------------------------------------------------------- checkpoints and resume
def trained_prompts(output_dir):
    """{step: the prompts it trained on, in order}, from completions.jsonl."""
    steps = {}
    for record in read_jsonl(output_dir / "completions.jsonl"):
        steps.setdefault(record["step"], []).append(record["prompt"])
    return steps


def test_resume_loses_no_prompt_and_trains_none_twice(tiny_model_dir, tmp_path):
    sync = make_trainer(tiny_model_dir, tmp_path / "sync", 0, engine=False, training={"max_steps": 6})
    sync.train()
    trainer = make_trainer(tiny_model_dir, tmp_path / "async", 2, training={"max_steps": 6, "save_steps": 2})
    update = trainer.policy_updates

    def interrupted(*args, **kwargs):  # stop in step 4, with the batches of steps 5 and 6 made or under way
        if trainer.step == 3:
            raise KeyboardInterrupt
        return update(*args, **kwargs)

    trainer.policy_updates = interrupted
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    state = json.loads((tmp_path / "async" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["sampler"] == {"epoch": 0, "position": 4}  # two steps of two prompts: what was trained
    resumed = make_trainer(tiny_model_dir, tmp_path / "async", 2, training={"max_steps": 6, "save_steps": 2})
    resumed.train(resume=True)
    assert trained_prompts(tmp_path / "async") == trained_prompts(tmp_path / "sync")
    assert [m["step"] for m in read_jsonl(tmp_path / "async" / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]


def test_dynamic_sampling_and_reward_workers_work_ahead(tiny_model_dir, tmp_path):
    trainer = make_trainer(
        tiny_model_dir,
        tmp_path / "run",
        2,
        engine={"latency": 0.02},
        algorithm={"dynamic_sampling": True, "max_resample_rounds": 2},
        rewards={"num_workers": 2},
    )
    seen = capture_rollouts(trainer)
    trainer.train()
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert all("dynamic_sampling/rounds" in m and m["async/staleness_max"] <= 2 for m in metrics)
    for step, rollout in seen:  # the kept groups of every draw carry their versions
        versions = rollout.policy_version[rollout.loss_mask.bool()]
        assert ((versions >= step - 2) & (versions <= step)).all()
    assert producer_threads() == [] and multiprocessing.active_children() == []


@pytest.mark.parametrize(("workers", "warned"), [(0, True), (1, False)])
def test_sampling_ahead_with_rewards_in_the_producer_thread_says_how_they_are_bounded(
    tiny_model_dir, tmp_path, capsys, workers, warned
):
    trainer = make_trainer(tiny_model_dir, tmp_path, 1, rewards={"num_workers": workers})
    assert trainer.overlaps_training()
    said = "rollout.max_staleness=1 with rewards.num_workers=0" in capsys.readouterr().out
    assert said == warned
    trainer.rewards.close()
