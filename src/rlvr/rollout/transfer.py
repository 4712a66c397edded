"""`vllm.weight_transfer: collective`: the policy's weights broadcast tensor by tensor from training rank 0 to a
rollout server's workers, through vLLM's weight-transfer engines.

Between GPUs this is vLLM's own NCCL engine (`weight_transfer_config={"backend": "nccl"}` on the server,
`NCCLTrainerWeightTransferEngine` here). On CPUs, where NCCL does not exist, the same engines run over a gloo
group: `GlooWeightTransferEngine` and `GlooTrainerWeightTransferEngine` change only how the group is made and how
a tensor is broadcast, and are registered with vLLM's factory as "gloo" (`register`, also a vLLM plugin so
the server's worker processes know it too). Either way the trainer is rank 0 and listens; the server's workers
connect to it; a push sends each tensor once, never a file of the whole model.

The server runs the update under its generation lock (`rollout.server`): start, receive every tensor, finish,
so no request samples from half-loaded weights.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

import torch
from vllm.distributed.utils import stateless_init_torch_distributed_process_group
from vllm.distributed.weight_transfer import ParamMeta, WeightSource, WeightTransferEngineFactory
from vllm.distributed.weight_transfer.base import TrainerInitInfo
from vllm.distributed.weight_transfer.nccl_engine import (
    NCCLTrainerInitInfo,
    NCCLTrainerWeightTransferEngine,
    NCCLWeightTransferEngine,
    NCCLWeightTransferUpdateInfo,
)

from rlvr.rollout.weights import policy_weight_shapes, policy_weights

BACKEND = "gloo"


def register() -> None:
    """Make "gloo" a weight-transfer backend of vLLM in this process (a vLLM general plugin; idempotent)."""
    if BACKEND not in WeightTransferEngineFactory._registry:
        WeightTransferEngineFactory.register_engine(BACKEND, GlooWeightTransferEngine)


@dataclass
class GlooInitInfo:
    """What a server worker needs to join the trainer's group: the trainer's address (rank 0, listening),
    this worker's rank offset and the group's size."""

    master_address: str
    master_port: int
    rank_offset: int
    world_size: int
    timeout_s: float = 600.0


class GlooWeightTransferEngine(NCCLWeightTransferEngine):
    """The server side on CPUs: vLLM's NCCL engine (its layerwise reload at start and finish) over gloo."""

    init_info_cls = GlooInitInfo  # type: ignore[assignment]
    update_info_cls = NCCLWeightTransferUpdateInfo

    def init_transfer_engine(self, init_info: GlooInitInfo) -> None:  # type: ignore[override]
        parallel = self.parallel_config
        rank = parallel.data_parallel_index * parallel.world_size + parallel.rank + init_info.rank_offset
        self.model_update_group = stateless_init_torch_distributed_process_group(
            init_info.master_address,
            init_info.master_port,
            rank,
            init_info.world_size,
            BACKEND,
            timeout=timedelta(seconds=init_info.timeout_s),
        )

    def update_weights(self, update_info: dict[str, Any]) -> None:
        # the base class also synchronizes an accelerator, which a CPU does not have
        self.receive_weights(self.parse_update_info(update_info))

    def receive_weights(self, update_info: NCCLWeightTransferUpdateInfo) -> None:
        if self.model_update_group is None:
            raise RuntimeError("the weight transfer group is not set up: call init_transfer_engine first")
        for name, dtype_name, shape in zip(
            update_info.names, update_info.dtype_names, update_info.shapes, strict=True
        ):
            weight = torch.empty(shape, dtype=getattr(torch, dtype_name))
            self.model_update_group.broadcast(weight, 0).wait()
            self.model.load_weights([(name, weight)])

    def shutdown(self) -> None:
        self.model_update_group = None


@dataclass
class GlooTrainerInitInfo(TrainerInitInfo):
    backend: ClassVar[str] = BACKEND

    master_address: str
    master_port: int
    world_size: int
    timeout_s: float = 600.0


class GlooTrainerWeightTransferEngine(NCCLTrainerWeightTransferEngine):
    """The trainer side on CPUs: vLLM's NCCL trainer engine (its handshake, its checks that what is sent is
    what was announced, its surfacing of the server's errors) over gloo, one tensor per broadcast."""

    init_info_cls = GlooTrainerInitInfo  # type: ignore[assignment]

    @classmethod
    def trainer_init(  # type: ignore[override]
        cls, init_info: GlooTrainerInitInfo, *, client: Any, source: WeightSource | None = None
    ) -> GlooTrainerWeightTransferEngine:
        engine = cls(client=client, source=source, is_sender=init_info.is_sender, packed=False)
        if not engine.is_sender:
            return engine
        worker_info = GlooInitInfo(
            init_info.master_address,
            init_info.master_port,
            rank_offset=1,
            world_size=init_info.world_size,
            timeout_s=init_info.timeout_s,
        )
        # the workers wait inside init_weight_transfer_engine until every rank has joined, this one too
        with ThreadPoolExecutor(max_workers=1) as pool:
            joined = pool.submit(client.init_weight_transfer_engine, vars(worker_info))
            engine.model_update_group = stateless_init_torch_distributed_process_group(
                init_info.master_address,
                init_info.master_port,
                0,
                init_info.world_size,
                BACKEND,
                timeout=timedelta(seconds=init_info.timeout_s),
            )
            joined.result()
        return engine

    def _broadcast(self, source: WeightSource, meta: list[ParamMeta]) -> None:
        if not self.is_sender:
            for _ in source:  # only the gathering collectives (FSDP)
                pass
            return
        for _, tensor in self._checked_iter(source, meta):
            self.model_update_group.broadcast(tensor.contiguous(), 0).wait()

    def shutdown(self) -> None:
        self.model_update_group = None


class PolicySource(WeightSource):
    """The policy's weights as `policy_weights` gives them (LoRA merged, FSDP gathered one at a time, in the
    engine's dtype), announced without gathering by `policy_weight_shapes`."""

    def __init__(self, model: Any, dtype: torch.dtype | None = None) -> None:
        self.model = model
        self.dtype = dtype
        self.current: Iterator[tuple[str, torch.Tensor]] | None = None

    def metadata(self) -> list[ParamMeta]:
        return [ParamMeta(*entry) for entry in policy_weight_shapes(self.model, self.dtype)]

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
        self.current = policy_weights(self.model, self.dtype)
        return self.current

    def complete(self) -> None:
        """After a push failed on this rank: take the weights its pass did not (or a whole pass, if it never
        began), so the other ranks' gathers (FSDP) are matched and nobody waits for this rank forever."""
        for _ in self.current if self.current is not None else policy_weights(self.model, self.dtype):
            pass
        self.current = None


def trainer_transfer(
    backend: str,
    client: Any,
    source: WeightSource,
    *,
    rank: int,
    server_workers: int,
    host: str,
    port: int,
    timeout_s: float,
) -> Any:
    """The trainer's side of a collective transfer, joined with the server's `server_workers` workers: vLLM's
    NCCL engine or the gloo one. Every training rank calls this; rank 0 listens on `host`:`port` (0: a free
    port) and is the only one that sends."""
    if rank == 0 and port == 0:
        port = free_port()
    world_size = server_workers + 1
    if backend == "nccl":
        from vllm.distributed.weight_transfer import WeightTransferTrainerFactory

        info = NCCLTrainerInitInfo(host, port, world_size, rank=rank)
        return WeightTransferTrainerFactory.trainer_init(info, client=client, source=source)
    info = GlooTrainerInitInfo(host, port, world_size, timeout_s, rank=rank)
    return GlooTrainerWeightTransferEngine.trainer_init(info, client=client, source=source)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def address_towards(host: str) -> str:
    """This machine's address on the route to `host` (what a server there connects back to)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, 9))  # no packet is sent: a UDP connect only picks the route
        return s.getsockname()[0]
