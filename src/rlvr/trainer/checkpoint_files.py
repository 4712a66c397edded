"""Checkpoints written atomically: weights, optimizer, scheduler, each rank's RNG, data position, trainer state.

Layout of `checkpoint-N/`: the model (or LoRA adapter) and tokenizer in Hugging Face format, `optimizer.pt`
(the optimizer state keyed by parameter name, whole even under FSDP, and the scheduler), `rng_state_{rank}.pt`
(one per process), `trainer_state.json`, and `ref_model.safetensors` when the reference model is refreshed.
Every rank calls `save_checkpoint` and `load_checkpoint`: the ranks' random states and, under FSDP, the shards
are gathered to rank 0, which writes all of it, so the rename that publishes the directory comes after every
file is in.
"""

from __future__ import annotations

import copy
import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlvr.distributed import (
    DistState,
    PolicyForward,
    full_model_state,
    full_optimizer_state,
    gather_objects,
    is_sharded,
    load_full_model_state,
    load_full_optimizer_state,
)
from rlvr.models import is_peft, load_policy
from rlvr.outputs import write_or_rescue
from rlvr.trainer.sampler import derived_seed

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
# In final/ beside the model: the step it is at, so `--resume` knows a finished run
FINAL_STATE_FILE = "trainer_state.json"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # this process's GPU only: the others belong to other ranks
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(
    path: Path,
    policy: PolicyForward,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    trainer_state: dict[str, Any],
    dist: DistState,
    ref_policy: PolicyForward | None = None,
) -> Path:
    """Write `path` (e.g. output_dir/checkpoint-20) through a temporary directory and a rename; every rank
    calls it. `ref_policy` is saved when given (a reference model that is refreshed during training)."""
    rng_states = gather_objects(rng_state(), dist)
    model_state = full_model_state(policy) if is_sharded(policy) else None  # None: the model's own
    optimizer_state = full_optimizer_state(policy, optimizer)
    ref_state = full_model_state(ref_policy) if ref_policy is not None else None
    if not dist.is_main:
        return path

    def write(tmp: Path) -> None:
        policy.policy.save_pretrained(tmp, state_dict=model_state)
        tokenizer.save_pretrained(tmp)
        torch.save({"optimizer": optimizer_state, "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
        for rank, state in enumerate(rng_states):
            torch.save(state, tmp / f"rng_state_{rank}.pt")
        if ref_state is not None:
            from safetensors.torch import save_file

            # tied weights share storage, which safetensors refuses: each gets its own copy
            save_file(
                {k: v.contiguous().clone() for k, v in ref_state.items()}, tmp / "ref_model.safetensors"
            )
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2))

    # a full or read-only disk: the checkpoint goes whole to a rescue directory, ResultNotWritten says where
    return write_or_rescue(path, write, path.parent.name)


def load_checkpoint(
    path: Path,
    policy: PolicyForward,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    dist: DistState,
    seed: int,
    ref_policy: PolicyForward | None = None,
) -> dict[str, Any]:
    """Restore what `save_checkpoint` wrote, on any number of ranks and either strategy; returns the trainer
    state. Each rank reads the whole tensors and keeps its shard.

    Rank r takes the random state rank r saved; a rank the writing run did not have (the run grew) seeds from
    (seed, step, rank), and the states of ranks the run no longer has are left unused.
    """
    model = policy.policy
    missing, unexpected = load_full_model_state(policy, read_model_weights(path, model))
    check_loaded_keys(path, model, missing, unexpected)
    # memory-mapped: the ranks of a node share the pages instead of each holding a copy
    blobs = torch.load(path / "optimizer.pt", weights_only=False, mmap=True)
    load_full_optimizer_state(policy, optimizer, blobs["optimizer"])
    scheduler.load_state_dict(blobs["scheduler"])
    if ref_policy is not None and (path / "ref_model.safetensors").exists():
        from safetensors.torch import load_file

        load_full_model_state(ref_policy, load_file(str(path / "ref_model.safetensors")))
    trainer_state = json.loads((path / "trainer_state.json").read_text())
    rng_file = path / f"rng_state_{dist.rank}.pt"
    if rng_file.exists():
        set_rng_state(torch.load(rng_file, weights_only=False))
    else:
        seed_everything(derived_seed(seed, trainer_state["step"], dist.rank))
    return trainer_state


def save_final(
    output_dir: Path,
    policy: PolicyForward,
    tokenizer: Any,
    dist: DistState,
    merge: bool,
    model_config: Any,
    step: int | None = None,
) -> Path:
    """`output_dir/final`, the model in Hugging Face format (LoRA: the adapter) and, given `step`, a
    trainer_state.json recording it; with `merge` also `final-merged`, the base weights with the adapters
    merged in. Every rank calls it, rank 0 writes."""
    model = policy.policy
    model_state = full_model_state(policy) if is_sharded(policy) else None
    final = output_dir / "final"
    if not dist.is_main:
        return final

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, state_dict=model_state)
        tokenizer.save_pretrained(tmp)
        if step is not None:
            (tmp / FINAL_STATE_FILE).write_text(json.dumps({"step": step}) + "\n")

    # as a checkpoint's: rescued elsewhere if it cannot be written
    write_or_rescue(final, write, output_dir.name)
    if merge:
        if model_state is None:  # merging in place would strip the live adapters: a copy
            merged = copy.deepcopy(model).merge_and_unload()
        else:  # sharded: a fresh CPU copy of the model, loaded with the gathered weights
            merged, _ = load_policy(model_config, torch.device("cpu"))
            merged.load_state_dict(model_state, strict=False)
            merged = merged.merge_and_unload()

        def write_merged(tmp: Path) -> None:
            merged.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)

        write_or_rescue(output_dir / "final-merged", write_merged, output_dir.name)
    return final


def read_model_weights(path: Path, model: Any) -> dict[str, torch.Tensor]:
    """The checkpoint's weights keyed as `model.state_dict()`: the full model's, or a LoRA adapter's (peft
    writes adapter keys without the adapter name; it is put back here)."""
    from safetensors.torch import load_file

    if is_peft(model):
        saved = load_file(str(path / "adapter_model.safetensors"))
        adapter = f".{model.active_adapter}."
        names = {k.replace(adapter, "."): k for k in model.state_dict() if adapter in k}
        unknown = sorted(set(saved) - set(names))
        if unknown:
            raise RuntimeError(f"checkpoint {path} has adapter weights the model lacks: {unknown[:5]}")
        return {names[k]: v for k, v in saved.items()}
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(path.glob("model*.safetensors")):
        state.update(load_file(str(shard)))
    return state


def check_loaded_keys(path: Path, model: Any, missing: list[str], unexpected: list[str]) -> None:
    """Raise when a checkpoint does not cover the model (a LoRA adapter covers only the adapter weights; a
    tied output head is written once, as the embeddings)."""
    if is_peft(model):
        adapter = f".{model.active_adapter}."
        missing = [k for k in missing if adapter in k]
    missing = [k for k in missing if not k.endswith("lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(
            f"checkpoint {path} does not match the model: missing {sorted(missing)[:10]}, "
            f"unexpected {sorted(unexpected)[:10]}"
        )


def checkpoint_problem(path: Path) -> str | None:
    """Why `path` cannot be resumed from (a file missing or unreadable), or None when it is complete.

    Reads headers, not tensors: the safetensors headers, optimizer.pt's zip index (memory-mapped),
    trainer_state.json. A checkpoint without model weights is never resumed from: that would train the base
    model on under the checkpoint's step.
    """
    from safetensors import safe_open

    state_file = path / "trainer_state.json"
    try:
        step = json.loads(state_file.read_text())["step"]
        if not isinstance(step, int):
            return f"trainer_state.json has step {step!r}, not a number"
    except FileNotFoundError:
        return "trainer_state.json is missing"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"trainer_state.json is unreadable ({exc.__class__.__name__}: {exc})"
    weights = sorted(path.glob("model*.safetensors")) or sorted(path.glob("adapter_model.safetensors"))
    index = path / "model.safetensors.index.json"
    if index.exists():
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            return f"{index.name} is unreadable ({exc.__class__.__name__}: {exc})"
        absent = sorted(shards - {w.name for w in weights})
        if absent:
            return f"model weight shards are missing: {', '.join(absent)}"
    if not weights:
        return "its model weights (model.safetensors or adapter_model.safetensors) are missing"
    for file in weights:
        try:
            with safe_open(str(file), framework="pt") as f:
                f.keys()
        except Exception as exc:  # safetensors raises its own SafetensorError for a cut or damaged file
            return f"{file.name} is unreadable ({exc})"
    for name in ("optimizer.pt", "rng_state_0.pt"):
        if not (path / name).exists():
            return f"{name} is missing"
        try:
            torch.load(path / name, weights_only=False, mmap=True)
        except Exception as exc:  # a cut zip, a pickle error: whatever torch.load raises
            return f"{name} is unreadable ({exc.__class__.__name__}: {exc})"
    return None


def last_checkpoint(output_dir: Path) -> str:
    """The newest checkpoint's path, or "none", for error messages that tell the user where to resume."""
    checkpoints = list_checkpoints(output_dir)
    return str(checkpoints[-1]) if checkpoints else "none"


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Checkpoints in `output_dir`, oldest first."""
    if not output_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in output_dir.iterdir()
        if (m := CHECKPOINT_RE.match(p.name)) and p.is_dir()
    ]
    return [p for _, p in sorted(found)]


def best_checkpoint_name(recorded: str | None) -> str | None:
    """The best checkpoint's directory name in output_dir, from what `trainer_state.json` recorded.

    Runs record `checkpoint-N`, relative to output_dir, so a run resumed from another working directory (or
    with output_dir given another way) still knows it. Older runs recorded `output_dir/checkpoint-N` as
    given, relative to the directory they ran in, or absolute: the last part is the name either way.

    >>> best_checkpoint_name("runs/x/checkpoint-20"), best_checkpoint_name("checkpoint-20")
    ('checkpoint-20', 'checkpoint-20')
    """
    if not recorded:
        return None
    name = Path(recorded).name
    return name if CHECKPOINT_RE.match(name) else None


def rotate_checkpoints(output_dir: Path, limit: int | None, best: str | None = None) -> list[str]:
    """Delete the oldest checkpoints beyond `limit`, never the newest (what --resume continues from) nor
    `best` (a name, checkpoint-N); returns the names deleted.

    As transformers' `rotate_checkpoints`: with both protected the limit is at least 2, so
    `save_total_limit: 1` with evaluation keeps the best and the newest.
    """
    checkpoints = list_checkpoints(output_dir)
    if limit is None or not checkpoints:
        return []
    protected = {checkpoints[-1].name} | ({best} & {p.name for p in checkpoints} if best else set())
    excess = len(checkpoints) - max(limit, len(protected))
    deleted = [p for p in checkpoints if p.name not in protected][: max(excess, 0)]
    for path in deleted:
        shutil.rmtree(path, ignore_errors=True)
    return [p.name for p in deleted]
