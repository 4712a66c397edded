"""A run directory belongs to one run: what a run leaves in it, who holds it, what an interrupted run left.

A new run refuses a directory that holds another run's work unless told to resume it or to overwrite it;
a lock file keeps two trainers out of one directory; temporary directories of an interrupted checkpoint
write are removed (or put back) on the next start; a resumed run drops the log lines of the steps it is
about to run again, so `metrics.jsonl` never holds a step twice. `--resume` on a finished run changes nothing;
a `config.yaml` the user keeps in the directory is never overwritten nor deleted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from rlvr.config import ConfigError, GRPOConfig
from rlvr.trainer.checkpoint_files import FINAL_STATE_FILE, list_checkpoints

# What a run writes besides checkpoint-N/ (config.yaml alone is not work: a run that died before its
# first step left nothing else).
RUN_OUTPUTS = ("metrics.jsonl", "completions.jsonl", "final", "final-merged", "tensorboard")
LOCK_FILE = ".rlvr-train.lock"
CONFIG_FILE = "config.yaml"
# Where the resolved config goes when config.yaml is the user's own (often the --config itself)
RESOLVED_CONFIG_FILE = "config.resolved.yaml"
# `utils.atomic_directory` writes `.NAME.tmp-<random suffix>` and moves the directory it replaces to `.NAME.old-PID`
INTERRUPTED_RE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-[^.]+$")


class RunDirError(ConfigError):
    """`training.output_dir` cannot be used as asked; the message says what is there and what to do."""


class RunComplete(Exception):
    """`--resume` on a run that already reached training.max_steps: nothing to do, nothing was changed."""


def run_outputs(output_dir: Path) -> list[str]:
    """Names of the run outputs in `output_dir`: checkpoints, oldest first, then RUN_OUTPUTS present."""
    if not output_dir.is_dir():
        return []
    return [p.name for p in list_checkpoints(output_dir)] + [
        name for name in RUN_OUTPUTS if (output_dir / name).exists()
    ]


def check_output_dir(output_dir: str | Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run in a directory holding another run's work; needs no model, so the command
    line calls it before loading one."""
    output_dir = Path(output_dir)
    _require_directory(output_dir)
    if resume and overwrite:
        raise RunDirError(
            "--resume continues the run in training.output_dir and training.overwrite_output_dir (--overwrite) "
            "deletes it: choose one"
        )
    found = run_outputs(output_dir)
    if found and not (resume or overwrite):
        shown = ", ".join(found[:6]) + (", ..." if len(found) > 6 else "")
        raise RunDirError(
            f"training.output_dir {output_dir} already holds a run ({shown}). Continue it with --resume, "
            "replace it with --overwrite (training.overwrite_output_dir=true), or choose another "
            "training.output_dir"
        )


def _require_directory(output_dir: Path) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise RunDirError(f"training.output_dir {output_dir} is a file, not a directory: choose another path")


def clear_run(output_dir: Path) -> list[str]:
    """Delete a previous run's outputs and the config it wrote (nothing else the user put there, not their own
    config.yaml); returns the names."""
    removed = []
    own_config = (output_dir / CONFIG_FILE).exists() and not written_by_rlvr(output_dir / CONFIG_FILE)
    configs = [RESOLVED_CONFIG_FILE] if own_config else [CONFIG_FILE, RESOLVED_CONFIG_FILE]
    for name in [*run_outputs(output_dir), *configs]:
        path = output_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


def recover_interrupted_writes(output_dir: Path) -> list[str]:
    """Clean up after a write that was killed part-way; returns what was done, one line each.

    A `.NAME.tmp-*` directory is a write that never finished: deleted. A `.NAME.old-*` directory is the
    previous NAME being replaced: deleted when the new NAME is in place, renamed back when the kill came
    between the two renames and NAME is missing.
    """
    done = []
    if not output_dir.is_dir():
        return done
    for path in sorted(output_dir.iterdir()):
        match = INTERRUPTED_RE.match(path.name)
        if not match or not path.is_dir():
            continue
        target = output_dir / match["name"]
        if match["kind"] == "old" and not target.exists():
            path.rename(target)
            done.append(
                f"put back {target.name} from {path.name}, moved aside by a write that was interrupted"
            )
            continue
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        shutil.rmtree(path)
        done.append(f"removed {path.name} ({size / 1e6:.0f} MB), left by a write that was interrupted")
    return done


@contextlib.contextmanager
def run_lock(output_dir: Path) -> Iterator[None]:
    """Hold `output_dir/.rlvr-train.lock` for the block; a second trainer on the directory is refused.

    An flock is released by the kernel when its process dies, so a killed run leaves no stale lock.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no flock; run without the guard
        yield
        return
    _require_directory(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(output_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            raise RunDirError(
                f"training.output_dir {output_dir} is in use by another training process (pid {holder}): "
                "wait for it to finish, or choose another training.output_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock


def written_by_rlvr(path: Path) -> bool:
    """Whether the config file `path` is one a run wrote (`GRPOConfig.to_yaml`: a whole config, as
    `yaml.safe_dump` lays it out), not the user's own: a comment, a section left out, another order or
    layout, or a symbolic link make it the user's, which rlvr never overwrites."""
    if path.is_symlink():
        return False
    try:
        text = path.read_text(encoding="utf-8")
        loaded = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    if not isinstance(loaded, dict) or not {"model", "data", "training"} <= set(loaded):
        return False
    # its sections in GRPOConfig's order (a run of an older rlvr may lack the newer ones)
    sections = [f.name for f in dataclasses.fields(GRPOConfig) if f.name in loaded]
    return list(loaded) == sections and text == yaml.safe_dump(loaded, sort_keys=False)


def write_config(output_dir: Path, text: str) -> Path:
    """Write the run's resolved config to output_dir/config.yaml, or, where config.yaml is the user's own
    (`written_by_rlvr`), to config.resolved.yaml beside it, saying so; returns the path written."""
    path = output_dir / CONFIG_FILE
    if path.exists() and not written_by_rlvr(path):
        path = output_dir / RESOLVED_CONFIG_FILE
        print(
            f"{output_dir / CONFIG_FILE} is a config of your own (rlvr did not write it): it is left as it is; "
            f"this run's resolved config, overrides included, is written to {path}"
        )
    path.write_text(text, encoding="utf-8")
    return path


def final_step(output_dir: Path) -> int | None:
    """The step of the model in output_dir/final, None when there is no final/ (the run has not finished).

    final/trainer_state.json records it; a final/ written before that file was is at the training.max_steps
    of the config.yaml beside it, the step on reaching which the run wrote it.
    """
    final = output_dir / "final"
    if not final.is_dir():
        return None
    try:
        step = json.loads((final / FINAL_STATE_FILE).read_text())["step"]
    except (OSError, ValueError, KeyError, TypeError):
        try:
            step = yaml.safe_load((output_dir / CONFIG_FILE).read_text())["training"]["max_steps"]
        except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError):
            return None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def check_resume(output_dir: Path, max_steps: int) -> None:
    """What `--resume` makes of a finished run (final/ written), before anything is changed: at
    training.max_steps it is complete (RunComplete); elsewhere it can only go on from a checkpoint, so
    without one it is refused, as past max_steps it is (final/ would be replaced by other weights)."""
    done = final_step(output_dir)
    if done is None:
        return
    checkpoints = list_checkpoints(output_dir)
    final = output_dir / "final"
    new_run = f"start a new run from its model (model.name_or_path={final}) in another training.output_dir"
    if done == max_steps:
        further = (
            f"raise training.max_steps to train on from {checkpoints[-1].name}"
            if checkpoints
            else f"{new_run} (it holds no checkpoint to continue from: training.save_steps: 0 saves none)"
        )
        raise RunComplete(
            f"--resume: {output_dir} is a finished run: {final} holds the model after step {done} of "
            f"training.max_steps={max_steps}. Nothing to do; nothing was changed. To train further, {further}; "
            "to start again, use --overwrite"
        )
    if done > max_steps:
        raise RunDirError(
            f"--resume: {output_dir} is a finished run at step {done} ({final}), past "
            f"training.max_steps={max_steps}; nothing was changed. Give training.max_steps={done} or more, or "
            f"{new_run}"
        )
    if not checkpoints:
        raise RunDirError(
            f"--resume: {output_dir} is a finished run ({final} holds the model after step {done}) without a "
            f"checkpoint to continue from (training.save_steps: 0 saves none), so it cannot go on to "
            f"training.max_steps={max_steps}; nothing was changed. {new_run[0].upper()}{new_run[1:]}, or start "
            "afresh with --overwrite"
        )


def drop_steps_after(path: Path, step: int) -> int:
    """Keep the records of `path` (JSONL with a `step` field) up to `step`; returns how many were dropped.

    A resumed run runs the steps after its checkpoint again: their old lines go, so no step is logged twice.
    A last line cut short by a kill is dropped too.
    """
    if not path.exists():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] > step:
            dropped += 1
        else:
            kept.append(line if line.endswith("\n") else line + "\n")
    if dropped:
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text("".join(kept), encoding="utf-8")
        tmp.replace(path)
    return dropped


def run_signature(config: Any, problems: list[dict[str, Any]], world_size: int = 1) -> dict[str, Any]:
    """What a checkpoint's run must share with the run that resumes it: the training problems (by content),
    the prompt template, G, full weights or LoRA, and the batch size over all processes (a checkpoint resumes on another number of
    processes with the same global batch). Other settings (learning rate, max_steps, ...) may change."""
    digest = hashlib.sha256(json.dumps(problems, sort_keys=True, default=str).encode()).hexdigest()
    return {
        "problems": f"{len(problems)} problems, sha256 {digest[:12]}",
        "data.template": config.data.template,
        "generation.num_generations": config.generation.num_generations,
        "training.batch_size x processes": config.training.batch_size * world_size,
        # a LoRA run's checkpoint holds an adapter, a full run's the whole model: neither loads as the other
        "model.lora.enabled": config.model.lora.enabled,
    }


def signature_changes(saved: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """`key: saved -> current` for each difference; keys a checkpoint does not record are not compared."""
    if not saved:
        return []
    return [
        f"{key}: {saved[key]!r} -> {value!r}"
        for key, value in current.items()
        if saved.get(key, value) != value
    ]


def prepare_output_dir(
    config: Any, problems: list[dict[str, Any]], resume: bool, world_size: int = 1
) -> Path | None:
    """Make `training.output_dir` ready for this run (call it holding `run_lock`); returns the checkpoint to
    resume from, or None to start at step 0. Raises RunDirError, naming what is wrong and what to do.

    In order: finish or remove interrupted writes; refuse another run's work (unless resuming or
    overwriting); with overwrite, delete it; with resume, stop at a finished run (RunComplete: nothing
    changed), else pick the newest complete checkpoint (saying which it skipped and why) and check that it
    belongs to this run's data, G and batch size; drop the log lines of the steps after it; write the
    resolved config (`write_config`).
    """
    t = config.training
    output_dir = Path(t.output_dir)
    for line in recover_interrupted_writes(output_dir):
        print(f"{output_dir}: {line}")
    check_output_dir(output_dir, resume, t.overwrite_output_dir)
    if resume:
        check_resume(output_dir, t.max_steps)
    if t.overwrite_output_dir:
        removed = clear_run(output_dir)
        if removed:
            print(f"overwrite_output_dir: removed {', '.join(removed)} from {output_dir}")
    checkpoint = pick_checkpoint(output_dir, t.max_steps) if resume else None
    step = 0
    if checkpoint is not None:
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        step = state["step"]
        changes = signature_changes(state.get("run"), run_signature(config, problems, world_size))
        if changes and not t.resume_allow_changes:
            raise RunDirError(
                f"--resume: {checkpoint.name} was trained with other settings ({'; '.join(changes)}): "
                "continuing it would mix two runs. Put the settings back, set "
                "training.resume_allow_changes=true to continue anyway, or start afresh with --overwrite"
            )
        if changes:
            print(f"--resume: continuing with changed settings ({'; '.join(changes)})")
        print(f"--resume: continuing from {checkpoint} (step {step} of {t.max_steps})")
    for name in ("metrics.jsonl", "completions.jsonl"):
        dropped = drop_steps_after(output_dir / name, step)
        if dropped:
            print(
                f"{output_dir / name}: dropped {dropped} lines after step {step}, which this run writes again"
            )
    output_dir.mkdir(parents=True, exist_ok=True)
    write_config(output_dir, config.to_yaml())
    return checkpoint


def pick_checkpoint(output_dir: Path, max_steps: int) -> Path | None:
    """The newest complete checkpoint in `output_dir` (None when there is none at all)."""
    from rlvr.trainer.checkpoint_files import checkpoint_problem

    checkpoints = list_checkpoints(output_dir)
    if not checkpoints:
        print(f"--resume: no checkpoint in {output_dir}, starting from step 0")
        return None
    skipped = []
    for path in reversed(checkpoints):
        problem = checkpoint_problem(path)
        if problem is None:
            break
        skipped.append(f"{path.name} ({problem})")
    else:
        raise RunDirError(
            f"--resume: no complete checkpoint in {output_dir}: {'; '.join(skipped)}. Move the damaged "
            "checkpoints away to start from step 0, or start afresh with --overwrite"
        )
    for line in skipped:
        print(f"--resume: skipping {line}")
    step = json.loads((path / "trainer_state.json").read_text())["step"]
    if step > max_steps:
        raise RunDirError(
            f"--resume: {path.name} is at step {step}, past training.max_steps={max_steps}: raise "
            "training.max_steps to train on, or start a new run in another training.output_dir"
        )
    return path
