"""Evaluation during training: held-out accuracy every training.eval_steps, and the best checkpoint kept.

`EvaluationMixin` is a part of `GRPOTrainer`, kept apart so the loop file reads as the loop; the scoring
itself is `rlvr.evaluation`'s, the same as `rlvr evaluate`.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from rlvr.data import load_problems
from rlvr.distributed import all_gather_objects


class EvaluationMixin:
    """`GRPOTrainer`'s evaluation on training.eval_dataset (or the eval_dataset it was given)."""

    def evaluate(self) -> dict[str, float]:
        """Held-out accuracy with the evaluation module; keeps the best checkpoint by metric_for_best_model.

        Each rank evaluates every world_size-th problem; the records are gathered to all ranks, so every rank
        computes the same figures and takes the same best-checkpoint decision (saving is collective).
        """
        from rlvr.evaluation.evaluate import summarize

        t = self.config.training
        if t.eval_dataset is None and self.eval_problems is None:
            return {}
        if self.eval_problems is None:
            d = self.config.data
            self.eval_problems = load_problems(
                t.eval_dataset, t.eval_split, d.data_dir, limit=t.eval_limit, reasoning_gym=d.reasoning_gym
            )
        problems = self.eval_problems[: t.eval_limit]
        with torch.no_grad():
            mine = self.policy.run(self._evaluate_shard, problems[self.dist.rank :: self.dist.world_size])
        parts = all_gather_objects(mine, self.dist)
        summary = summarize(
            [record for part in parts for record in part["predictions"]],
            num_samples=1,
            seconds=max(part["seconds"] for part in parts),
            prompts_cut=sum(part["prompts_cut"] for part in parts),
        )
        metrics = {f"eval/{k}": v for k, v in summary.items() if isinstance(v, (int, float))}
        value = metrics.get(t.metric_for_best_model)
        if value is not None and (self.best_metric is None or value > self.best_metric):
            self.best_metric = value
            # set first: rotation keeps it. A name, relative to output_dir: a run resumed from another
            # working directory finds it still
            self.best_checkpoint = f"checkpoint-{self.step}"
            self.save_checkpoint(metrics)
        return metrics

    def _evaluate_shard(self, model: Any, problems: list[dict[str, Any]]) -> dict[str, Any]:
        """Evaluate `problems` with the run's engine (`model`: the whole policy, inside `policy.run`)."""
        from rlvr.evaluation import evaluate_model

        if not problems:  # more ranks than problems
            return {"predictions": [], "seconds": 0.0, "prompts_cut": 0}
        started = time.perf_counter()
        summary = evaluate_model(
            model,
            self.tokenizer,
            problems,
            template=self.config.data.template,
            reward=self.config.training.eval_reward,
            max_new_tokens=self.config.generation.max_completion_length,
            system_prompt=self.config.data.system_prompt,
            few_shot=self.config.data.few_shot,
            autocast_dtype=self.autocast_dtype,
            show_progress=False,
            max_prompt_length=self.config.data.max_prompt_length,
            engine=self.engine.for_model(model),
            reward_timeout=self.config.rewards.timeout,
            timeout_setting="rewards.timeout",
        )
        return {
            "predictions": summary["predictions"],
            "seconds": time.perf_counter() - started,
            "prompts_cut": summary["prompts_cut"],
        }
