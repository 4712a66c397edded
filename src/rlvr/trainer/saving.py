"""The trainer's saving and resuming: claim output_dir, write and load checkpoints, save the final model.

`CheckpointingMixin` is a part of `GRPOTrainer`, kept apart so the loop file reads as the loop: its methods
use the trainer's state (step, sampler, optimizer, ...) and hand the files to `checkpoint_files`, which knows what
a checkpoint holds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from rlvr.distributed import all_gather_objects, barrier, sum_over_ranks
from rlvr.models import is_peft
from rlvr.trainer import TrainingError
from rlvr.trainer import checkpoint_files as ckpt
from rlvr.trainer.rundir import RunComplete, RunDirError, prepare_output_dir, run_lock, run_signature


class CheckpointingMixin:
    """`GRPOTrainer`'s saving and resuming; every method is called on every rank."""

    @contextlib.contextmanager
    def claimed_output_dir(self, resume: bool) -> Iterator[Path | None]:
        """Hold output_dir for this run (rank 0 takes the lock and readies it; see `rundir`) and yield the
        checkpoint to resume from; every rank gets the same checkpoint, or the same error (RunComplete when
        --resume finds the run finished)."""
        with contextlib.ExitStack() as stack:
            outcome: tuple[str, Any] | None = None
            if self.dist.is_main:
                try:
                    stack.enter_context(run_lock(self.output_dir))
                    outcome = (
                        "ok",
                        prepare_output_dir(self.config, self.problems, resume, self.dist.world_size),
                    )
                except RunDirError as exc:
                    outcome = ("error", str(exc))
                except RunComplete as exc:
                    outcome = ("complete", str(exc))
            kind, value = all_gather_objects(outcome, self.dist)[0]
            if kind == "error":
                raise RunDirError(value)
            if kind == "complete":
                if self.dist.is_main:
                    print(value, flush=True)
                raise RunComplete(value)
            yield value

    def trainer_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "sampler": self.sampler.state_dict(),
            "best_metric": self.best_metric,
            "best_checkpoint": self.best_checkpoint,
            "world_size": self.dist.world_size,
            "nonfinite_in_a_row": self.nonfinite_in_a_row,
            "nonfinite_total": self.nonfinite_total,
            "run": run_signature(
                self.config, self.problems, self.dist.world_size
            ),  # what a resuming run must share
        }

    def save_checkpoint(self, metrics: dict[str, float] | None = None) -> Path:
        """Write checkpoint-{step}; every rank calls it (the state of all ranks is gathered to rank 0)."""
        a = self.config.algorithm
        refreshed = a.ref_model_refresh_steps or a.sync_ref_model
        self.check_weights_finite(f"checkpoint-{self.step}")
        path = ckpt.save_checkpoint(
            self.output_dir / f"checkpoint-{self.step}",
            self.policy,
            self.tokenizer,
            self.optimizer,
            self.scheduler,
            {**self.trainer_state(), "metrics": metrics or {}},
            self.dist,
            ref_policy=self.ref_policy if refreshed else None,
        )
        if self.dist.is_main:
            ckpt.rotate_checkpoints(
                self.output_dir, self.config.training.save_total_limit, best=self.best_checkpoint
            )
        barrier(self.dist)
        return path

    def resume_from(self, path: Path) -> None:
        """Load checkpoint `path` (chosen and checked by `rundir.prepare_output_dir`); every rank calls it.

        A checkpoint resumes on any number of processes and either strategy (see `checkpoint.load_checkpoint`
        for the random states). With `generation.seed_per_prompt` sampling does not read those, so a resumed
        run repeats the uninterrupted one on any number of processes.
        """
        state = ckpt.load_checkpoint(
            path,
            self.policy,
            self.optimizer,
            self.scheduler,
            self.dist,
            self.config.training.seed,
            self.ref_policy,
        )
        self.step = state["step"]
        self.sampler.load_state_dict(state["sampler"])
        self.best_metric = state.get("best_metric")
        self.best_checkpoint = ckpt.best_checkpoint_name(state.get("best_checkpoint"))
        self.nonfinite_in_a_row = state.get("nonfinite_in_a_row", 0)
        self.nonfinite_total = state.get("nonfinite_total", 0)
        self.sync_engine()

    def save_final(self) -> Path:
        """The final model in Hugging Face format (LoRA: the adapter, plus a merged copy when lora.merge)."""
        merge = is_peft(self.model) and self.config.model.lora.merge
        self.check_weights_finite("final")
        final = ckpt.save_final(
            self.output_dir, self.policy, self.tokenizer, self.dist, merge, self.config.model, self.step
        )
        barrier(self.dist)
        return final

    def check_weights_finite(self, name: str) -> None:
        """Refuse to save NaN or infinite weights as `name` (on every rank: each checks its own shards)."""
        bad = [n for n, p in self.model.named_parameters() if not torch.isfinite(_local(p)).all()]
        if sum_over_ranks({"bad": len(bad)}, self.dist)["bad"]:
            raise TrainingError(
                f"step {self.step}: the model's weights are not finite ({', '.join(bad[:3]) or 'on another rank'}"
                f"{', ...' if len(bad) > 3 else ''}); {name} was not written. Last checkpoint: "
                f"{ckpt.last_checkpoint(self.output_dir)}"
            )


def _local(param: torch.Tensor) -> torch.Tensor:
    return param.to_local() if hasattr(param, "to_local") else param  # an FSDP shard is a DTensor
