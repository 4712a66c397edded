"""The `distributed` section: how training spreads over the processes torchrun launches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class DistributedConfig:
    strategy: Literal["ddp", "fsdp"] = "ddp"
    """How to spread training over processes launched by torchrun."""
    backend: str | None = None
    """torch.distributed backend (None: nccl on cuda, gloo on cpu)."""
