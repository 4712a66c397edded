"""bfloat16 or float32: `bf16: auto` resolved against what the device computes natively.

bfloat16 autocast is several times faster where the hardware has it (a CUDA device of compute capability 8+, a
CPU with AMX or AVX512-BF16) and several times slower where it is emulated: on a CPU with AVX2 only, a
SmolLM2-sized linear layer took 14.1 ms in bfloat16 against 1.9 ms in float32, and a bfloat16 `make demo` did not
finish its first step in 9 minutes. So `auto` picks bfloat16 only where it is native.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch

BF16Setting = bool | Literal["auto"]


NATIVE_BF16_ENV = "RLVR_NATIVE_BF16"  # 1 or 0: overrides the detection (a CPU it misjudges; the test suite)


def native_bf16(device: torch.device) -> str | None:
    """What makes bfloat16 native on `device` (for the run's first lines), or None where it would be emulated."""
    forced = os.environ.get(NATIVE_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return f"{NATIVE_BF16_ENV}={forced}" if forced == "1" else None
    if device.type == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False):
            return f"{torch.cuda.get_device_name(device)} computes bfloat16"
        return None
    if device.type != "cpu":
        return None
    features = _cpu_bf16_features()
    return f"this CPU has {' and '.join(features)}" if features else None


def _cpu_bf16_features() -> list[str]:
    """The CPU's bfloat16 instructions, as torch's own dispatch sees them (oneDNN picks its kernels by the
    same checks); /proc/cpuinfo where this torch has no such check."""
    checks = {"AMX": "_is_amx_tile_supported", "AVX512-BF16": "_is_avx512_bf16_supported"}
    found = []
    for name, attribute in checks.items():
        check = getattr(torch.cpu, attribute, None)
        if check is not None:
            if check():
                found.append(name)
        elif _cpuinfo_flag({"AMX": "amx_bf16", "AVX512-BF16": "avx512_bf16"}[name]):
            found.append(name)
    return found


def _cpuinfo_flag(flag: str) -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(line.startswith("flags") and flag in line.split() for line in text.splitlines())


def resolve_bf16(setting: BF16Setting, device: torch.device) -> tuple[bool, str]:
    """(use bfloat16 autocast, one line saying why) for a `training.bf16` / `--bf16` setting on `device`.

    >>> resolve_bf16(False, torch.device("cpu"))
    (False, 'bf16: false -> float32 (as set)')
    """
    native = native_bf16(device)
    if setting == "auto":
        if native:
            return True, f"bf16: auto -> bfloat16 autocast ({native})"
        return False, (
            f"bf16: auto -> float32 ({device.type}: no native bfloat16, where emulated it is several times "
            "slower than float32)"
        )
    if not setting:
        return False, "bf16: false -> float32 (as set)"
    if native:
        return True, f"bf16: true -> bfloat16 autocast ({native})"
    return True, (
        f"bf16: true -> bfloat16 autocast, emulated on this {device.type}: expect it several times slower than "
        "float32 (bf16: auto would pick float32 here)"
    )
