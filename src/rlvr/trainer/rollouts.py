"""Where each step's batch comes from: sampled and scored in turn (the synchronous loop), or made by a producer
thread up to rollout.max_staleness steps ahead of the trainer (`rollout.pipeline`).

`RolloutsMixin` is a part of `GRPOTrainer`, kept apart so the loop file reads as the loop. The producer samples
and scores with the trainer's own `generate_rollout`, `score_rollout` and `informative_batch`, on a shallow
copy of the trainer that has its own step (the batch it makes) and prompt sampler; the trainer takes each batch
with the data position after it, so a checkpoint records what was trained, not what was queued.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

from rlvr.data import build_messages
from rlvr.distributed import max_over_ranks, sum_over_ranks
from rlvr.rollout import Rollout
from rlvr.rollout.engine import EngineError
from rlvr.rollout.episodes import episode_rollout, run_episodes
from rlvr.rollout.pipeline import (
    PipelinedEngine,
    RolloutPipeline,
    episode_lags,
    policy_versions,
    token_versions,
)
from rlvr.trainer import TrainingError
from rlvr.trainer import checkpoint_files as ckpt
from rlvr.trainer.sampler import derived_seed

Batch = tuple[Rollout, torch.Tensor, dict[str, float], dict[str, float]]


class RolloutsMixin:
    """`GRPOTrainer`'s source of batches: `next_batch()` each step, `close_rollouts()` when the loop ends."""

    pipeline: RolloutPipeline | None = None
    rollout_mode: str | None = None  # "synchronous" or "pipelined", decided at the loop's first batch

    def next_batch(self) -> Batch:
        """The step's rollout, its rewards [N, F], figures to log (dynamic sampling's, the pipeline's) and
        timings."""
        if self.rollout_mode is None:
            self.rollout_mode = "pipelined" if self.overlaps_training() else "synchronous"
            if self.rollout_mode == "pipelined":
                self.start_pipeline()
        if self.pipeline is None:
            return self.scored_batch()
        started = time.perf_counter()
        try:
            batch = self.pipeline.take(self.step)
        except _EngineFailed as failed:  # said now, naming the checkpoints written since it happened
            raise self.engine_failed(failed.what, failed.cause) from failed.cause
        waited = time.perf_counter() - started
        rollout, rewards, stats, timings, sampler_state = batch.value
        # the data position after this batch: what a checkpoint saves, whatever is queued behind it
        self.sampler.load_state_dict(sampler_state)
        stats = {**stats, **self.pipeline_stats(rollout, waited, batch.weight_wait)}
        return rollout, rewards, stats, timings

    def scored_batch(self) -> Batch:
        """Sample and score this step's batch (drawing more with dynamic sampling): the synchronous loop's."""
        rollout, timings = self.generate_rollout()
        rewards_per_fn = self.score_rollout(rollout, timings)
        resampled: dict[str, float] = {}
        if self.config.algorithm.dynamic_sampling:
            rollout, rewards_per_fn, resampled = self.informative_batch(rollout, rewards_per_fn, timings)
        return rollout, rewards_per_fn, resampled, timings

    def overlaps_training(self) -> bool:
        """Whether this run samples ahead: rollout.max_staleness > 0 and an engine on devices of its own. An
        engine that shares the trainer's (rlvr's loop, colocated vLLM) runs synchronously, and says so."""
        staleness = self.config.rollout.max_staleness
        if staleness == 0:
            return False
        if not getattr(self.engine, "runs_apart", False):
            if self.dist.is_main:
                print(
                    f"rollout.max_staleness={staleness} has no effect with the {self.engine.name} engine: it samples "
                    "on the training devices, so generation and updates take turns (synchronous). Sampling ahead "
                    "needs an engine of its own: generation.engine=vllm vllm.mode=server (docs/rollouts.md)",
                    flush=True,
                )
            return False
        if self.dist.enabled and self.config.algorithm.dynamic_sampling:
            raise TrainingError(
                "rollout.max_staleness > 0 with algorithm.dynamic_sampling runs on one training process only: its "
                "extra draws agree over all ranks, which the producer thread cannot do beside the trainer's own "
                "collectives. Drop one of them, or train on one process"
            )
        a = self.config.algorithm
        if not a.importance_sampling_correction and a.old_logps_source == "trainer" and self.dist.is_main:
            print(
                f"rollout.max_staleness={staleness} without algorithm.importance_sampling_correction: samples up to "
                f"{staleness} steps old train uncorrected; set it to weight them by pi_old / pi_sampler, or "
                "algorithm.old_logps_source=sampler to clip against the sampler (docs/rollouts.md)",
                flush=True,
            )
        if self.config.rewards.num_workers == 0 and self.dist.is_main:
            # the producer thread scores: no signal reaches it (rlvr.rewards.deadline)
            print(
                f"rollout.max_staleness={staleness} with rewards.num_workers=0: rewards run in the producer thread, "
                "where a call past rewards.timeout stops only once it runs Python code; one waiting in C code or "
                "a system call for ever ends the process 30-60 s later with every thread's stack. Set "
                "rewards.num_workers >= 1 to have a stuck reward's worker killed and the run stop with a message "
                "instead",
                flush=True,
            )
        return True

    def start_pipeline(self) -> None:
        """Start the producer from this step; the trainer's engine becomes the pipeline's (calls and pushes
        under one lock)."""
        producer = copy.copy(self)
        producer.sampler = copy.deepcopy(self.sampler)
        sample = producer.generate_rollout

        def generate_rollout(draw: int = 0) -> tuple[Rollout, dict[str, float]]:
            with policy_versions() as versions:
                rollout, timings = sample(draw)
            rollout.policy_version = token_versions(rollout, versions)
            return rollout, timings

        producer.generate_rollout = generate_rollout  # each draw records its tokens' versions
        producer.engine_failed = _EngineFailed  # the trainer words it when it reaches the batch

        def produce(step: int) -> tuple[Any, ...]:
            producer.step = step  # seeds and error messages follow the step the batch is for
            return (*RolloutsMixin.scored_batch(producer), producer.sampler.state_dict())

        self.pipeline = RolloutPipeline(
            produce, self.step, self.config.training.max_steps, self.config.rollout.max_staleness
        )
        self.engine = producer.engine = PipelinedEngine(self.engine, self.pipeline)
        self.pipeline.start()

    def pipeline_stats(self, rollout: Rollout, waited: float, weight_wait: float) -> dict[str, float]:
        """`async/*`: how stale the step's samples are (episodes per lag, over all ranks), how long the trainer
        waited for the batch and its producer for weights, and the batches queued behind it."""
        lags = episode_lags(rollout, self.step)
        lags = lags[lags >= 0]
        counts = {f"lag_{j}": int((lags == j).sum()) for j in range(self.config.rollout.max_staleness + 1)}
        total = sum_over_ranks({**counts, "sum": int(lags.sum()), "count": len(lags)}, self.dist)
        slowest = max_over_ranks(
            {
                "max": int(lags.max()) if len(lags) else 0,
                "wait_for_data": waited,
                "wait_for_weights": weight_wait,
                "queue_depth": self.pipeline.depth,
            },
            self.dist,
        )
        return {
            "async/staleness_mean": total["sum"] / max(total["count"], 1.0),
            "async/staleness_max": slowest["max"],
            **{f"async/staleness/{key}": total[key] for key in counts},
            "async/wait_for_data": slowest["wait_for_data"],
            "async/wait_for_weights": slowest["wait_for_weights"],
            "async/queue_depth": slowest["queue_depth"],
        }

    def close_rollouts(self) -> None:
        """Stop the producer (its batches in progress and queued are dropped) and give the trainer its engine
        back; safe to call when nothing was started."""
        pipeline, self.pipeline, self.rollout_mode = self.pipeline, None, None
        if pipeline is None:
            return
        if isinstance(self.engine, PipelinedEngine):
            self.engine = self.engine.engine
        if not pipeline.close() and self.dist.is_main:
            print(
                f"the rollout producer is still in an engine call after {pipeline.join_timeout:.0f} s; it stops "
                "when the call returns",
                flush=True,
            )

    def generate_rollout(self, draw: int = 0) -> tuple[Rollout, dict[str, float]]:
        """Sample G completions for each of this rank's next prompts: the step's `draw`-th draw (dynamic
        sampling draws again while too few groups are informative)."""
        cfg = self.config
        started = time.perf_counter()
        rows = [self.problems[i] for i in self.sampler.next_indices()]
        messages = [
            build_messages(r["question"], cfg.data.template, cfg.data.system_prompt, cfg.data.few_shot)
            for r in rows
        ]
        seeds = None
        if cfg.generation.seed_per_prompt:
            first = self.sampler.first_position(draw)  # each prompt drawn in the step its own seed
            seeds = [derived_seed(cfg.training.seed, self.step, first + i) for i in range(len(rows))]
        g = cfg.generation.num_generations
        try:
            episodes = run_episodes(
                self.engine,
                self.chat,
                self.environments.take(len(rows) * g),
                rows,
                messages,
                g,
                cfg.generation,
                cfg.environment,
                self.eos_ids,
                cfg.data.max_prompt_length,
                seeds,
            )
        except EngineError as exc:
            raise self.engine_failed("did not generate", exc) from exc
        rollout = episode_rollout(episodes, rows, messages, g, self.tokenizer.pad_token_id, self.episodic)
        return rollout, {"timing/generate": time.perf_counter() - started}

    def sync_engine(self, timings: dict[str, float] | None = None) -> None:
        """Bring the rollout engine's weights up to the policy's (nothing to do for rlvr's own loop). An engine
        that cannot take them stops the run with the last checkpoint named; nothing saved is touched."""
        started = time.perf_counter()
        try:
            self.engine.sync_weights()
        except EngineError as exc:
            raise self.engine_failed("did not take the new weights", exc) from exc
        if timings is not None:
            timings["timing/sync_weights"] = time.perf_counter() - started

    def engine_failed(self, what: str, exc: EngineError) -> TrainingError:
        return TrainingError(
            f"step {self.step + 1}: the {self.engine.name} rollout engine {what}: {exc}. The run stopped; "
            f"saved checkpoints are untouched (last: {ckpt.last_checkpoint(self.output_dir)}); fix the engine and "
            "resume with --resume"
        )


class _EngineFailed(Exception):
    """The engine failed while the producer made a batch; the trainer raises its own error for it when it
    reaches that batch (`engine_failed`), after training on the batches made before."""

    def __init__(self, what: str, cause: Exception) -> None:
        super().__init__(what)
        self.what, self.cause = what, cause
