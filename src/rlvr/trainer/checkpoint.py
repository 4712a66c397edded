"""Checkpoints written atomically: weights, optimizer, scheduler, RNG, data position, trainer state."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlvr.models import is_peft
from rlvr.utils import atomic_directory

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: Path,
    model: Any,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    trainer_state: dict[str, Any],
    ref_model: Any | None = None,
) -> Path:
    """Write `path` (e.g. output_dir/checkpoint-20) through a temporary directory and a rename."""
    with atomic_directory(path) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt"
        )
        torch.save(rng_state(), tmp / "rng_state.pt")
        if ref_model is not None:
            from safetensors.torch import save_model

            save_model(ref_model, str(tmp / "ref_model.safetensors"))
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2))
    return path


def load_checkpoint(
    path: Path,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    ref_model: Any | None = None,
) -> dict[str, Any]:
    """Restore everything `save_checkpoint` wrote; returns the trainer state."""
    from safetensors.torch import load_file, load_model

    if is_peft(model):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(path / "adapter_model.safetensors")))
    else:
        state = {}
        for shard in sorted(path.glob("model*.safetensors")):
            state.update(load_file(str(shard)))
        missing, unexpected = model.load_state_dict(state, strict=False)
        tied = {k for k in missing if k.endswith("lm_head.weight")}
        if unexpected or set(missing) - tied:
            raise RuntimeError(
                f"checkpoint {path} does not match the model: missing {sorted(set(missing) - tied)}, "
                f"unexpected {sorted(unexpected)}"
            )
    blobs = torch.load(path / "optimizer.pt", weights_only=False)
    optimizer.load_state_dict(blobs["optimizer"])
    scheduler.load_state_dict(blobs["scheduler"])
    if ref_model is not None and (path / "ref_model.safetensors").exists():
        load_model(ref_model, str(path / "ref_model.safetensors"))
    set_rng_state(torch.load(path / "rng_state.pt", weights_only=False))
    return json.loads((path / "trainer_state.json").read_text())


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


def rotate_checkpoints(output_dir: Path, limit: int | None, keep: Path | None = None) -> None:
    """Delete the oldest checkpoints beyond `limit`, never `keep` (the best one)."""
    if limit is None:
        return
    checkpoints = list_checkpoints(output_dir)
    removable = [p for p in checkpoints if keep is None or p.resolve() != keep.resolve()]
    excess = len(checkpoints) - limit
    for path in removable[: max(excess, 0)]:
        shutil.rmtree(path, ignore_errors=True)
