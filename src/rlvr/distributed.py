"""Process-group facts the trainer needs, reductions that are no-ops on one process (and the statistics the
trainer builds from them), and the policy as DDP or FSDP see it.

Under `torchrun` or `accelerate launch` (RANK/WORLD_SIZE set) the process group is initialised here; everything
else in the trainer asks this module instead of torch.distributed directly, so one process needs no special case.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from rlvr.algorithm import completion_logps


@dataclass(frozen=True)
class DistState:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    """Where collectives run: this rank's GPU under NCCL, the CPU under gloo."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(backend: str | None = None, device_type: str = "cpu") -> DistState:
    """Join the process group when launched by torchrun / accelerate; a single process otherwise.

    The backend defaults to nccl when the model trains on cuda and gloo when it trains on the CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistState()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    backend = backend or ("nccl" if device_type == "cuda" else "gloo")
    device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        # device_id binds NCCL to this rank's GPU up front (no guessing in barrier, eager communicator)
        dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None)
        atexit.register(_destroy_process_group)
    return DistState(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def exit_rank(code: int = 0) -> None:
    """End of a run that every rank finished: wait for all, leave the group, and end this process now.

    Returns only when no process group was joined (one process). The process ends with `os._exit`, without
    finalizing the interpreter: torch keeps the gloo group referenced after destroy_process_group, so its
    worker threads live on, and one may still hold the last collective's work (a barrier holds the works
    queued before it) whose tensors have Python objects. Releasing those takes the GIL; once the main thread
    is finalizing, CPython ends a thread that asks for the GIL with pthread_exit, whose unwinding through
    the tensor's noexcept destructor is std::terminate: "terminate called without an active exception",
    SIGABRT after a finished run (core: ProcessGroupGloo::runLoop -> ~AsyncBarrierWork -> ~AsyncAllgatherWork
    -> TensorImpl::decref_pyobject -> take_gil -> pthread_exit). Without finalization nothing is left to
    race; everything the run writes is closed before this is called. A rank that fails leaves through the
    atexit hook instead, not waiting for the others.
    """
    if not dist.is_initialized():
        return
    dist.barrier()  # no rank leaves while another still needs it for a collective
    dist.destroy_process_group()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# ------------------------------------------------------------------------------------------ reductions
def all_reduce_sum(tensor: torch.Tensor, state: DistState) -> torch.Tensor:
    """Sum over ranks (a copy on the input's device; the input is unchanged)."""
    return _all_reduce(tensor, state, dist.ReduceOp.SUM)


def all_reduce_max(tensor: torch.Tensor, state: DistState) -> torch.Tensor:
    """Element-wise max over ranks (a copy on the input's device)."""
    return _all_reduce(tensor, state, dist.ReduceOp.MAX)


def _all_reduce(tensor: torch.Tensor, state: DistState, op: Any) -> torch.Tensor:
    out = tensor.detach().clone()
    if not state.enabled:
        return out
    # NCCL reduces only CUDA tensors; reward and length statistics live on the CPU.
    moved = out.to(state.device)
    dist.all_reduce(moved, op=op)
    return moved.to(tensor.device)


def sum_over_ranks(values: dict[str, float], state: DistState) -> dict[str, float]:
    """Each value summed over ranks, in one collective (every rank passes the same keys, in the same order).

    >>> sum_over_ranks({"tokens": 12, "truncated": 3}, DistState())
    {'tokens': 12.0, 'truncated': 3.0}
    """
    totals = all_reduce_sum(torch.tensor([float(v) for v in values.values()], dtype=torch.float64), state)
    return dict(zip(values, totals.tolist()))


def mean_over_ranks(values: dict[str, float], state: DistState) -> dict[str, float]:
    """Each value averaged over ranks, in one collective."""
    return {key: total / state.world_size for key, total in sum_over_ranks(values, state).items()}


def max_over_ranks(values: dict[str, float], state: DistState) -> dict[str, float]:
    """Each value's maximum over ranks, in one collective (every rank passes the same keys)."""
    maxima = all_reduce_max(torch.tensor([float(v) for v in values.values()], dtype=torch.float64), state)
    return dict(zip(values, maxima.tolist()))


def all_gather_cat(tensor: torch.Tensor, state: DistState) -> torch.Tensor:
    """Concatenate equal-shaped tensors from all ranks along dim 0, in rank order."""
    if not state.enabled:
        return tensor.detach()
    local = tensor.detach().contiguous().to(state.device)
    parts = [torch.empty_like(local) for _ in range(state.world_size)]
    dist.all_gather(parts, local)
    return torch.cat(parts, dim=0).to(tensor.device)


def all_gather_objects(obj: Any, state: DistState) -> list[Any]:
    """Every rank's (picklable) `obj`, in rank order, on every rank."""
    if not state.enabled:
        return [obj]
    out: list[Any] = [None] * state.world_size
    dist.all_gather_object(out, obj)
    return out


def gather_objects(obj: Any, state: DistState) -> list[Any] | None:
    """Every rank's `obj` in rank order on rank 0; None on the other ranks."""
    if not state.enabled:
        return [obj]
    out: list[Any] | None = [None] * state.world_size if state.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def barrier(state: DistState) -> None:
    if state.enabled:
        dist.barrier()


# ------------------------------------------------------------------------------- statistics over ranks
def moment_sums(values: torch.Tensor) -> dict[str, float]:
    """Sum, sum of squares and count of the non-NaN entries of `values`, to be summed over ranks."""
    scored = values[~torch.isnan(values)].double()
    return {"sum": scored.sum().item(), "sum_sq": (scored**2).sum().item(), "count": scored.numel()}


def moments(total: dict[str, float]) -> tuple[float, float]:
    """Mean and unbiased std (as torch.std on one process) from `moment_sums` summed over ranks; NaN when
    there are too few values."""
    n = total["count"]
    mean = total["sum"] / n if n else math.nan
    std = math.sqrt(max((total["sum_sq"] - n * mean**2) / (n - 1), 0.0)) if n > 1 else math.nan
    return mean, std


def sampling_metrics(parts: list[dict[str, torch.Tensor]], state: DistState) -> dict[str, float]:
    """`sampling/logp_diff/mean|max`, `sampling/is_ratio/min|mean|max` and `sampling/is_ratio/outside` (the
    share outside the correction's bounds) from `sampling_stats` of every micro-batch on every rank."""
    sums = sum_over_ranks(
        {
            key: sum(p[key].item() for p in parts)
            for key in (
                "logp_diff_sum",
                "logp_diff_count",
                "is_ratio_sum",
                "is_ratio_count",
                "is_ratio_outside",
            )
        },
        state,
    )
    top = max_over_ranks(
        {
            "logp_diff_max": max(p["logp_diff_max"].item() for p in parts),
            "is_ratio_max": max(p["is_ratio_max"].item() for p in parts),
            "neg_is_ratio_min": max(-p["is_ratio_min"].item() for p in parts),
        },
        state,
    )
    return {
        "sampling/logp_diff/mean": sums["logp_diff_sum"] / max(sums["logp_diff_count"], 1.0),
        "sampling/logp_diff/max": top["logp_diff_max"],
        "sampling/is_ratio/min": -top["neg_is_ratio_min"],
        "sampling/is_ratio/mean": sums["is_ratio_sum"] / max(sums["is_ratio_count"], 1.0),
        "sampling/is_ratio/max": top["is_ratio_max"],
        "sampling/is_ratio/outside": sums["is_ratio_outside"] / max(sums["is_ratio_count"], 1.0),
    }


# ------------------------------------------------------------------------------- the policy under DDP/FSDP
class PolicyForward(nn.Module):
    """The policy behind one forward: the log-probs of completions, `completion_logps(policy, ...)`.

    `completion_logps` calls the decoder and the output head directly, past the model's own forward. DDP and
    FSDP act only on calls of the forward of the module they wrap (DDP prepares its gradient all-reduce there,
    FSDP gathers the root's parameters there), so they wrap this module, whose forward is that computation.
    Generation and evaluation go through `run`, which gives them the plain model with every parameter whole.
    """

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """`completion_logps(policy, *args, **kwargs)`."""
        logps, entropies = completion_logps(self.policy, *args, **kwargs)
        # FSDP hooks the backward on this output; a view of it (logps is one) could lose the hook to an
        # in-place op. A [B, C] copy is cheap.
        return logps.clone(), entropies

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`fn(policy, *args, **kwargs)` with every parameter gathered; under FSDP every rank must call it.

        Under FSDP this is registered as a forward of the root, so the root's parameters are gathered on entry;
        the layers' are gathered here once and kept until the end. Ranks then generate different numbers of
        tokens without a collective per token, which would leave a rank that finished early waiting forever.
        """
        with _whole_layers(self), _detached_parameters(self.policy):
            return fn(self.policy, *args, **kwargs)


@contextlib.contextmanager
def _whole_layers(root: nn.Module) -> Iterator[None]:
    from torch.distributed.fsdp import FSDPModule

    layers = [m for m in root.modules() if m is not root and isinstance(m, FSDPModule)]
    for layer in layers:  # the same order on every rank: the all-gathers pair up
        layer.set_reshard_after_forward(False, recurse=False)
        layer.unshard()
    try:
        yield
    finally:
        for layer in layers:
            layer.reshard()
            layer.set_reshard_after_forward(True, recurse=False)


@contextlib.contextmanager
def _detached_parameters(model: nn.Module) -> Iterator[None]:
    """Give `model` detached aliases of its parameters (same storage) for the block.

    Sampling may swap a parameter's `.data` for a bfloat16 copy and back (rollout's `weights_in`); torch
    then gives the parameter a new gradient accumulator, and DDP's all-reduce hooks, registered on the old
    one when DDP was built, never fire again: every rank would keep its own gradients, silently. The
    aliases take such swaps instead; gradients are never taken through them.
    """
    swapped = []
    aliases: dict[int, nn.Parameter] = {}  # tied weights keep one alias
    for module in model.modules():
        for name, param in module._parameters.items():
            if param is not None:
                alias = aliases.setdefault(id(param), nn.Parameter(param.detach(), requires_grad=False))
                swapped.append((module, name, param))
                module._parameters[name] = alias
    try:
        yield
    finally:
        for module, name, param in swapped:
            module._parameters[name] = param


def wrap_policy(
    model: nn.Module, strategy: str, state: DistState, device: torch.device
) -> tuple[PolicyForward, nn.Module]:
    """(policy, trained): `policy` for generation and no-grad log-probs, `trained` for forward + backward.

    One process: both are the same PolicyForward. DDP: `trained` is DistributedDataParallel(policy) and
    `policy` the module inside it, so generation never touches DDP. FSDP: the policy is sharded in place
    (`fully_shard` on each decoder layer, then on the root) and is both.
    """
    policy = PolicyForward(model)
    if not state.enabled:
        return policy, policy
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(
            policy, device_ids=[device.index] if device.type == "cuda" else None
        )
        return policy, trained
    if strategy == "fsdp":
        shard(policy, device)
        return policy, policy
    raise ValueError(f"distributed.strategy must be ddp or fsdp, got {strategy!r}")


def shard(policy: PolicyForward, device: torch.device, frozen: bool = False) -> None:
    """FSDP2: each decoder layer is a unit (its parameters gathered just for its forward and backward), the
    root holds the rest (embeddings, final norm, output head: tied weights must share a unit).

    FSDP keeps the root gathered after a forward, for the backward that follows; a `frozen` model (the
    reference) has no backward, so its root is sharded again at once."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    # the mesh on the model's device type: FSDP would otherwise pick cuda whenever a GPU is visible
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for layer in decoder_layers(policy.policy):
        fully_shard(layer, mesh=mesh)
    fully_shard(policy, mesh=mesh, reshard_after_forward=True if frozen else None)
    register_fsdp_forward_method(policy, "run")


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a Hugging Face causal LM (peft-wrapped or not), by its `_no_split_modules`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or [])
    layers = [m for m in base.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(
            f"cannot find the decoder layers of {type(base).__name__} for FSDP (no _no_split_modules); "
            "use distributed.strategy=ddp"
        )
    return layers


def gradient_sync(trained: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """DDP: skip the all-reduce on all but the last micro-batch of an optimizer step (gradients add up
    locally). FSDP reduce-scatters every micro-batch: skipping it would keep whole unsharded gradients on
    each rank, the memory FSDP is there to save."""
    if not sync and hasattr(trained, "no_sync"):
        return trained.no_sync()
    return contextlib.nullcontext()


def is_sharded(module: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def global_norm(norm: torch.Tensor) -> float:
    """clip_grad_norm_'s result as a number; under FSDP it is a DTensor that already holds the global norm."""
    full = getattr(norm, "full_tensor", None)
    return float(full() if full is not None else norm)


# ------------------------------------------------------------------------------------------ state dicts
def full_model_state(policy: PolicyForward) -> dict[str, torch.Tensor]:
    """The policy's whole state dict on the CPU of rank 0 (empty elsewhere), keyed as the plain model's.

    A collective under FSDP: every rank must call it.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(policy, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    # Tied weights (output head = embeddings) come back as separate copies; sharing them again lets
    # save_pretrained write them once, as it does for the live model.
    names_of: dict[int, list[str]] = {}
    for name, param in policy.named_parameters(remove_duplicate=False):
        names_of.setdefault(id(param), []).append(name)
    for first, *tied in names_of.values():
        for name in tied:
            if first in state and name in state:
                state[name] = state[first]
    return _strip_prefix(state, "policy.")


def load_full_model_state(policy: PolicyForward, state: dict[str, torch.Tensor]) -> tuple[list, list]:
    """Load a whole state dict keyed as the plain model's (each FSDP rank keeps its shard); returns
    (missing, unexpected) keys."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    result = set_model_state_dict(
        policy,
        {f"policy.{k}": v for k, v in state.items()},
        options=StateDictOptions(full_state_dict=True, strict=False),
    )
    return _strip_prefix_list(result.missing_keys), _strip_prefix_list(result.unexpected_keys)


def full_optimizer_state(policy: PolicyForward, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's whole state keyed by parameter name, on rank 0 (empty elsewhere): the same form for one
    process, DDP and FSDP, so a checkpoint resumes under another strategy or number of processes."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(
        policy, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )


def load_full_optimizer_state(
    policy: PolicyForward, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Load `state` into `optimizer`, keeping the optimizer's own kernel (fused / foreach): loading would
    otherwise take the saving run's choice from its param groups."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    kernels = [(group.get("fused"), group.get("foreach")) for group in optimizer.param_groups]
    set_optimizer_state_dict(policy, optimizer, state, options=StateDictOptions(full_state_dict=True))
    for group, (fused, foreach) in zip(optimizer.param_groups, kernels):
        group["fused"], group["foreach"] = fused, foreach


def _strip_prefix(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state.items()}


def _strip_prefix_list(keys: list[str]) -> list[str]:
    return [k[len("policy.") :] if k.startswith("policy.") else k for k in keys]
