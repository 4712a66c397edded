"""The `training` section: the optimizer, precision, logging, checkpoints, evaluation and the run directory."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Literal

from rlvr.config.checks import MAX_SEED, ConfigError, above_zero, at_least, within


@dataclass
class TrainingConfig:
    output_dir: str = "runs/grpo"
    """Where config.yaml, metrics.jsonl, completions.jsonl, checkpoints and the final model go."""
    max_steps: int = 100
    """Generation batches to train on (each gives mu optimizer steps)."""
    batch_size: int = 8
    """Completions per generation batch on each process: prompts per step * num_generations."""
    gradient_accumulation_steps: int = 1
    """Micro-batches the batch is split into for each optimizer step (memory, not maths)."""
    learning_rate: float = 1e-6
    """AdamW peak learning rate."""
    adam_beta1: float = 0.9
    """AdamW beta1."""
    adam_beta2: float = 0.99
    """AdamW beta2."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    lr_scheduler_type: Literal["constant", "linear", "cosine"] = "constant"
    """Schedule after warmup."""
    warmup_ratio: float = 0.0
    """Fraction of optimizer steps spent warming up linearly from 0."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm (None: no clipping)."""
    bf16: bool | Literal["auto"] = "auto"
    """bfloat16 autocast for forward/backward and generation. auto: where the device runs it natively (a CUDA
    device with bf16, a CPU with AMX or AVX512-BF16), else float32; the run prints its choice and config.yaml
    records it. Elsewhere bf16 is emulated and several times slower than float32."""
    seed: int = 0
    """Seeds Python, NumPy and torch; the data order and sampling follow from it."""
    logging_steps: int = 1
    """Write metrics every N steps."""
    log_completions_steps: int = 10
    """Write sampled completions with rewards and advantages every N steps (0: never)."""
    save_steps: int = 0
    """Write a checkpoint every N steps (0: only the final model)."""
    save_total_limit: int | None = 2
    """Keep at most N checkpoints; the newest and the best are never deleted (so 1 with evaluation keeps 2)."""
    report_to: list[str] = field(default_factory=list)
    """Extra loggers: "tensorboard", "wandb"."""
    eval_steps: int = 0
    """Evaluate on eval_dataset every N steps (0: never)."""
    eval_dataset: str | None = None
    """Held-out dataset (same forms as data.dataset); None disables evaluation."""
    eval_split: str = "test"
    """Split of eval_dataset."""
    eval_limit: int | None = 100
    """Evaluate on the first N held-out problems."""
    eval_reward: str = "accuracy"
    """Reward that scores held-out answers (1.0 = correct)."""
    metric_for_best_model: str = "eval/accuracy"
    """Held-out figure that picks the best checkpoint (higher is better): eval/accuracy, eval/mean_reward or
    eval/format_rate; with a mix of reasoning-gym tasks also eval/accuracy/<task> and eval/mean_reward/<task>."""
    overwrite_output_dir: bool = False
    """Delete a previous run's checkpoints, logs and final model in output_dir (`rlvr train --overwrite`)."""
    resume_allow_changes: bool = False
    """Let --resume continue a checkpoint whose data, template, G or batch size differ from this config."""
    max_nonfinite_updates: int = 3
    """Optimizer steps in a row whose loss or gradient is NaN/inf that are skipped before the run stops."""

    def validate(self) -> None:
        at_least("training.max_steps", self.max_steps, 1)
        if not 0 <= self.seed <= MAX_SEED:  # NumPy refuses a negative seed or one past 32 bits
            raise ConfigError(f"training.seed must be from 0 to {MAX_SEED}, got {self.seed}")
        at_least("training.eval_limit", self.eval_limit, 1, " (null: every held-out problem)")
        at_least("training.save_total_limit", self.save_total_limit, 1, " (null: keep every checkpoint)")
        at_least("training.logging_steps", self.logging_steps, 1)
        at_least("training.log_completions_steps", self.log_completions_steps, 0)
        at_least("training.save_steps", self.save_steps, 0)
        at_least("training.eval_steps", self.eval_steps, 0)
        at_least("training.learning_rate", self.learning_rate, 0)
        at_least("training.weight_decay", self.weight_decay, 0)
        within("training.warmup_ratio", self.warmup_ratio, 0.0, 1.0)
        within("training.adam_beta1", self.adam_beta1, 0.0, 1.0, high_in=False)
        within("training.adam_beta2", self.adam_beta2, 0.0, 1.0, high_in=False)
        above_zero("training.max_grad_norm", self.max_grad_norm, " (null: no clipping)")
        if self.max_nonfinite_updates < 0:
            raise ConfigError(
                f"training.max_nonfinite_updates must be >= 0, got {self.max_nonfinite_updates}"
            )
        unknown_report = set(self.report_to) - {"tensorboard", "wandb"}
        if unknown_report:
            raise ConfigError(
                f"training.report_to has unknown loggers {sorted(unknown_report)}; use tensorboard, wandb"
            )


# The held-out figures that can pick the best checkpoint, higher being better (`evaluation.summarize` logs them as
# eval/<figure>); a mix of reasoning-gym tasks adds each task's accuracy and mean reward.
BEST_MODEL_METRICS = ("eval/accuracy", "eval/mean_reward", "eval/format_rate")


def check_best_model_metric(metric: str, tasks: list[str]) -> None:
    """Refuse a training.metric_for_best_model that the evaluation never logs: its best checkpoint would never
    be kept, without a word. `tasks`: the reasoning-gym tasks of training.eval_dataset (per-task figures need two).

    >>> check_best_model_metric("eval/acuracy", [])
    Traceback (most recent call last):
    ...
    rlvr.config.checks.ConfigError: training.metric_for_best_model 'eval/acuracy' is not a figure the evaluation logs, so no best checkpoint would ever be kept; did you mean 'eval/accuracy'? (it is one of eval/accuracy, eval/mean_reward, eval/format_rate)
    """
    per_task = [f"eval/{figure}/{task}" for task in tasks for figure in ("accuracy", "mean_reward")]
    choices = [*BEST_MODEL_METRICS, *(per_task if len(tasks) > 1 else [])]
    if metric in choices:
        return
    close = difflib.get_close_matches(metric, choices, n=1) or difflib.get_close_matches(
        f"eval/{metric}", choices, n=1
    )
    raise ConfigError(
        f"training.metric_for_best_model {metric!r} is not a figure the evaluation logs, so no best checkpoint "
        f"would ever be kept{f'; did you mean {close[0]!r}?' if close else ''} (it is one of {', '.join(choices)})"
    )
