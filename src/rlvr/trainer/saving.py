"""The trainer's saving and resuming: claim output_dir, write and load checkpoints, save the final model.

`CheckpointingMixin` is a part of `GRPOTrainer`, kept apart so the loop file reads as the loop: its methods
use the trainer's state (step, sampler, optimizer, ...) and hand the files to `checkpoint_files`, which knows what
a checkpoint holds.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from rlvr.distributed import all_gather_objects, sum_over_ranks
from rlvr.models import is_peft
from rlvr.outputs import ResultNotWritten, free_bytes, write_problem
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

    def check_output_writable(self) -> None:
        """Refuse an output_dir that cannot be written (full, read-only, no permission) before the data and the
        model load; rank 0 writes, so rank 0 checks."""
        problem = write_problem(self.output_dir) if self.dist.is_main else None
        if problem is not None:
            raise RunDirError(
                f"training.output_dir {self.output_dir} cannot be written: {problem}. Free space there, make it "
                "writable, or choose another training.output_dir"
            )

    def warn_if_disk_small(self) -> None:
        """Say so at the start when a save of this run would not fit in output_dir's free space."""
        free = free_bytes(self.output_dir) if self.dist.is_main else None
        trainable = sum(p.numel() * p.element_size() for p in self.model.parameters() if p.requires_grad)
        weights = sum(p.numel() * p.element_size() for p in self.model.parameters())
        saved = trainable if is_peft(self.model) else weights  # a LoRA run saves its adapter
        checkpoints = bool(self.config.training.save_steps)
        need = saved + 2 * trainable if checkpoints else saved  # AdamW keeps two moments per weight
        if free is not None and free < need:
            what = "checkpoint" if checkpoints else "final model"
            print(
                f"warning: training.output_dir {self.output_dir} has {free / 1e6:.1f} MB free, and a {what} of this "
                f"run takes about {need / 1e6:.1f} MB: free space before the first save, or what it saves goes to "
                "a rescue directory elsewhere and the run stops",
                file=sys.stderr,
                flush=True,
            )

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
        failure = None
        try:
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
        except ResultNotWritten as exc:  # rank 0, which writes
            failure = self.not_written(exc)
        else:
            if self.dist.is_main:
                ckpt.rotate_checkpoints(
                    self.output_dir, self.config.training.save_total_limit, best=self.best_checkpoint
                )
        self.stop_if_not_written(failure)
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
        failure = None
        try:
            final = ckpt.save_final(
                self.output_dir, self.policy, self.tokenizer, self.dist, merge, self.config.model, self.step
            )
        except ResultNotWritten as exc:
            failure = self.not_written(exc)
        self.stop_if_not_written(failure)
        return final

    def stop_if_not_written(self, failure: str | None) -> None:
        """Stop every rank alike when rank 0 could not write (its `failure`); a barrier otherwise."""
        failure = all_gather_objects(failure, self.dist)[0]
        if failure is not None:
            raise TrainingError(failure)

    def not_written(self, exc: ResultNotWritten) -> str:
        """What a save that failed (a full or read-only disk) means for the run, and what to do."""
        name, last = exc.target.name, ckpt.last_checkpoint(self.output_dir)
        head = f"step {self.step}: {name} could not be written in {self.output_dir} ({exc.reason}); nothing of it was left there"
        if name.startswith("checkpoint-"):
            head += f", and the checkpoints before it are whole (last: {last})"
            if exc.rescued is not None:
                return (
                    f"{head}. The run's state at step {self.step} was written to {exc.rescued} instead: free space "
                    f"in {self.output_dir} (or make it writable), move it there and continue with --resume"
                )
            return f"{head}. {exc.outcome()}: the steps since {last} are lost. Free space and continue with --resume"
        if name == "final-merged":  # final/ (the adapter) was written before it
            where = (
                f"it was written to {exc.rescued} instead" if exc.rescued is not None else "it is not saved"
            )
            return (
                f"{head}. The adapter in {self.output_dir / 'final'} is whole; only the merged copy is missing: "
                f"{where}. Merge the adapter yourself (peft: PeftModel.from_pretrained(base, final)"
                ".merge_and_unload().save_pretrained(...)) once there is space"
            )
        if exc.rescued is not None:
            return f"{head}. The trained model was written to {exc.rescued} instead: move it to {exc.target}"
        again = f"continue with --resume from {last}" if last != "none" else "train again"
        return f"{head}. {exc.outcome()}: the trained model is lost. Free space and {again}"

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
