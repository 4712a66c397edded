"""Evaluation during training: held-out accuracy every training.eval_steps, and the best checkpoint kept.

`EvaluationMixin` is a part of `GRPOTrainer`, kept apart so the loop file reads as the loop; the scoring
itself is `rlvr.evaluation`'s, the same as `rlvr evaluate`.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch

from rlvr.config import ConfigError
from rlvr.data import DataError, load_problems
from rlvr.data.lengths import TRAIN_LIMITS, counted, length_warnings, model_context, prompt_lengths
from rlvr.distributed import all_gather_objects
from rlvr.flags import TRAIN_EVAL_KEYS, in_command_terms


class EvaluationMixin:
    """`GRPOTrainer`'s evaluation on training.eval_dataset (or the eval_dataset it was given)."""

    def evaluate(self) -> dict[str, float]:
        """Held-out accuracy with the evaluation module; names this step's checkpoint the best when
        metric_for_best_model improved (the loop then writes it, once, with the step's training figures).

        Each rank evaluates every world_size-th problem; the records are gathered to all ranks, so every rank
        computes the same figures and takes the same best-checkpoint decision (saving is collective).
        """
        from rlvr.evaluation.evaluate import summarize

        t = self.config.training
        if self.eval_problems is None:
            return {}
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
        return metrics

    def load_eval_problems(self) -> list[dict[str, Any]] | None:
        """training.eval_dataset's problems, or None when nothing is evaluated. Loaded with the training data,
        before the model, so a wrong name or a broken file fails in seconds rather than at the first evaluation,
        after steps whose work would be lost. The data section's fields apply when it is the training dataset
        (another split); another dataset's are found as `rlvr eval` finds them."""
        from rlvr.evaluation.evaluate import EvaluationError, check_settings
        from rlvr.rewards import RemoteReward, RemoteRewardError, RewardSpecError, get_reward

        t, d = self.config.training, self.config.data
        if t.eval_dataset is None or t.eval_steps == 0:
            return None
        try:  # `rlvr eval`'s checks, in config terms
            check_settings(d.template, t.eval_reward, 1, 0.0, 1, self.config.generation.max_completion_length)
        except EvaluationError as exc:
            raise ConfigError(
                f"training.eval_reward: {in_command_terms(str(exc), TRAIN_EVAL_KEYS)}"
            ) from None
        try:  # an unknown name fails now, not at the first evaluation
            reward = get_reward(t.eval_reward)
        except RewardSpecError as exc:
            raise RewardSpecError(f"training.eval_reward: {exc}") from None
        if isinstance(reward, RemoteReward):
            try:
                reward.check_reachable()
            except RemoteRewardError as exc:
                raise RemoteRewardError(in_command_terms(str(exc), TRAIN_EVAL_KEYS)) from None
        same = t.eval_dataset == d.dataset
        try:
            return load_problems(
                t.eval_dataset,
                t.eval_split,
                d.data_dir,
                d.hub_config if same else None,
                d.question_field if same else None,
                d.answer_field if same else None,
                d.answer_format if same else "auto",
                limit=t.eval_limit,
                reasoning_gym=d.reasoning_gym,
                field_keys=("data.question_field", "data.answer_field") if same else (None, None),
            )
        except DataError as exc:  # said of the held-out set, in its settings' names (training.eval_split)
            raise DataError(f"training.eval_dataset: {in_command_terms(str(exc), TRAIN_EVAL_KEYS)}") from None

    def warn_prompt_lengths(self) -> None:
        """Say, once before training, how many training and held-out prompts are cut to data.max_prompt_length or
        leave a completion too few of the model's positions (`rlvr.data.lengths`)."""
        cfg, d = self.config, self.config.data
        context = model_context(getattr(self.model, "config", None))
        limits = (d.max_prompt_length, cfg.generation.max_completion_length, context, TRAIN_LIMITS)
        for what, rows in (
            ("training prompts", self.problems),
            ("held-out prompts", self.eval_problems or []),
        ):
            lengths = prompt_lengths(self.tokenizer, rows, d.template, d.system_prompt, d.few_shot)
            for line in length_warnings(lengths, *limits, what=counted(what, len(rows))):
                print(f"warning: {line}", file=sys.stderr, flush=True)

    def eval_reward_function(self) -> Any:
        """training.eval_reward, bound to its rewards.options when it is one of the rewards that has some (so
        held-out figures use the settings training does)."""
        from rlvr.rewards.options import bind_options
        from rlvr.rewards.registry import get_reward, reward_name

        spec = self.config.training.eval_reward
        options = {k: v for k, v in self.config.rewards.options.items() if k in (spec, reward_name(spec))}
        if not options:
            return spec
        _, fns = bind_options([spec], [spec], [get_reward(spec)], options, "rewards.options")
        return fns[0]

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
            reward=self.eval_reward_function(),
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
