"""Process-group facts the trainer needs: rank, world size, and reductions that are no-ops on one process.

Under `torchrun` (RANK/WORLD_SIZE set) the process group is initialised here; everything else in the
trainer asks this module instead of torch.distributed directly, so one process needs no special case.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistState:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(backend: str | None = None) -> DistState:
    """Join the process group when launched by torchrun / accelerate; a single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistState()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistState(rank=rank, world_size=world_size, local_rank=local_rank)


def all_reduce_sum(tensor: torch.Tensor, state: DistState) -> torch.Tensor:
    """Sum over ranks (a copy; the input is unchanged)."""
    out = tensor.detach().clone()
    if state.enabled:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_gather_cat(tensor: torch.Tensor, state: DistState) -> torch.Tensor:
    """Concatenate equal-shaped tensors from all ranks along dim 0, in rank order."""
    if not state.enabled:
        return tensor.detach()
    parts = [torch.empty_like(tensor) for _ in range(state.world_size)]
    dist.all_gather(parts, tensor.detach().contiguous())
    return torch.cat(parts, dim=0)


def barrier(state: DistState) -> None:
    if state.enabled:
        dist.barrier()
