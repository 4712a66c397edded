"""Where a run's numbers go: metrics.jsonl, completions.jsonl, TensorBoard, wandb, the console."""

from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch

from rlvr.algorithm import combine_rewards, unscorable
from rlvr.distributed import max_over_ranks, mean_over_ranks, sum_over_ranks
from rlvr.rollout import Rollout
from rlvr.rollout.episodes import record_stats
from rlvr.utils import append_jsonl


class RunLogger:
    """Writes one metrics line per logged step; only the main process writes anything."""

    def __init__(
        self,
        output_dir: Path,
        report_to: list[str],
        is_main: bool,
        config: dict[str, Any],
        first_step: int = 1,
    ) -> None:
        self.output_dir = output_dir
        self.is_main = is_main
        self.tensorboard = None
        self.wandb = None
        self.failed: set[str] = set()  # logs already warned about
        if not is_main:
            return
        if "tensorboard" in report_to:
            from torch.utils.tensorboard import SummaryWriter

            # A resumed run drops the events of the steps it runs again, as metrics.jsonl drops their lines.
            purge_step = first_step if first_step > 1 else None
            self.tensorboard = SummaryWriter(log_dir=str(output_dir / "tensorboard"), purge_step=purge_step)
        if "wandb" in report_to:
            try:
                import wandb
            except ImportError as exc:
                raise RuntimeError(
                    "training.report_to includes wandb but wandb is not installed: "
                    "pip install wandb, or drop it from report_to"
                ) from exc
            self.wandb = wandb.init(project="rlvr", dir=str(output_dir), config=config)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        if not self.is_main:
            return
        record = {"step": step, **{k: _finite(v) for k, v in metrics.items()}}
        self._append("metrics.jsonl", [record])
        if self.tensorboard is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.tensorboard.add_scalar(key, value, step)
            self.tensorboard.flush()
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def log_completions(self, records: list[dict[str, Any]]) -> None:
        if not self.is_main:
            return
        self._append("completions.jsonl", records)

    def _append(self, name: str, records: list[dict[str, Any]]) -> None:
        """Append to a log; a full or read-only disk costs these lines, not the run: training goes on (the
        model is worth more than its logs), with one warning per file, and the next save says what to do."""
        path = self.output_dir / name
        size = path.stat().st_size if path.exists() else 0
        try:
            for record in records:
                append_jsonl(path, record)
        except OSError as exc:
            with contextlib.suppress(OSError):  # no half line, which would join the next into invalid JSON
                os.truncate(path, size)
            if name not in self.failed:
                self.failed.add(name)
                print(
                    f"warning: could not append to {path} ({exc.strerror or exc}); training goes "
                    "on, and the lines it cannot write are missing from it",
                    file=sys.stderr,
                    flush=True,
                )

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()


def completion_records(
    rollout: Rollout,
    rewards_per_fn: torch.Tensor,
    advantages: torch.Tensor,
    step: int,
    reward_names: list[str],
    reward_weights: torch.Tensor,
) -> list[dict[str, Any]]:
    """One record per completion for completions.jsonl: the file to read when hunting reward hacking."""
    records = []
    lengths, truncated = rollout.episode_lengths, rollout.episode_truncated
    for i, completion in enumerate(rollout.completions):
        prompt = rollout.prompts[i]
        records.append(
            {
                "step": step,
                "prompt": prompt[-1]["content"] if isinstance(prompt, list) else prompt,
                "completion": completion,
                "answer": rollout.columns.get("answer", [None] * len(rollout))[i],
                "rewards": {
                    name: _none_if_nan(rewards_per_fn[i, j].item()) for j, name in enumerate(reward_names)
                },
                "reward": None
                if unscorable(rewards_per_fn[i : i + 1]).item()
                else combine_rewards(rewards_per_fn[i : i + 1], reward_weights).item(),
                "advantage": advantages[i].item(),
                "length": int(lengths[i]),
                "truncated": bool(truncated[i]),
                # an episode: its conversation after the prompt and how it went (`rlvr inspect` shows it)
                **({"episode": rollout.trajectories[i]} if rollout.trajectories is not None else {}),
            }
        )
    return records


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; a missing figure reads as null
    return value


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def rollout_metrics(
    rollout: Rollout, timings: dict[str, float], seconds: float, epoch: int, dist: Any
) -> dict[str, float]:
    """A step's lengths, truncation, cut prompts and throughput over all ranks; times are the slowest rank's."""
    lengths = rollout.episode_lengths  # sampled tokens: an episode's tool results are not its length
    total = sum_over_ranks(
        {
            "tokens": lengths.sum().item(),
            "completions": len(lengths),
            "truncated": rollout.episode_truncated.sum().item(),
            "prompts_cut": rollout.num_prompts_cut,
        },
        dist,
    )
    # The slowest rank sets the pace: times are maxima over ranks.
    slowest = max_over_ranks(
        {"completion_length/max": lengths.max().item(), "step_seconds": seconds, **timings}, dist
    )
    return {
        "completion_length/mean": total["tokens"] / total["completions"],
        "truncated_frac": total["truncated"] / total["completions"],
        "prompts_cut": total["prompts_cut"],
        "tokens_per_second": total["tokens"] / slowest["step_seconds"],
        "epoch": epoch,
        **slowest,
        **(
            mean_over_ranks(record_stats(rollout.trajectories), dist)
            if rollout.trajectories is not None
            else {}
        ),
    }
