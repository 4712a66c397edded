"""`vllm.mode: server`: sampling from a `rlvr serve-rollouts` process over HTTP, and sending it new weights.

Weights travel in the engine's dtype, by `vllm.weight_transfer`:
- http: one safetensors file per push, in the request body, or through `vllm.weights_dir` when both sides
  see one directory (the file is written there and its path sent); works anywhere;
- collective: tensor by tensor, broadcast from training rank 0 to the server's workers through vLLM's
  weight-transfer engines (`rollout.transfer`: NCCL between GPUs, gloo on CPUs); no copy of the whole model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import torch

from rlvr.config import GenerationConfig, GRPOConfig
from rlvr.rollout.engine import EngineError, TokenEngine
from rlvr.rollout.generation import eos_token_ids
from rlvr.rollout.server import model_fingerprint, sampling_fields
from rlvr.rollout.weights import policy_weights

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ServerEngine(TokenEngine):
    """A rollout server at `url`, checked on creation: it answers, and serves a model that fits `source`."""

    name = "vllm-server"
    runs_apart = (
        True  # on devices of its own: it may sample while the trainer updates (rollout.max_staleness)
    )

    def __init__(
        self,
        url: str,
        tokenizer: Any,
        max_prompt_length: int,
        eos_ids: list[int],
        source: Any = None,
        model_name: str = "",
        timeout: float = 600.0,
        weights_dir: str | None = None,
        dtype: torch.dtype | None = None,
        rank: int = 0,
        weight_transfer: str = "http",
        transfer_host: str | None = None,
        transfer_port: int = 0,
    ) -> None:
        super().__init__(tokenizer, max_prompt_length, eos_ids)
        self.url = url.rstrip("/")
        self.source = source
        self.weights_dir = Path(weights_dir) if weights_dir else None
        self.dtype = dtype
        self.rank = rank
        self.client = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0))
        health = self._healthy()
        self.served = health.get("model", "?")
        if source is not None:
            base = source.get_base_model() if hasattr(source, "get_base_model") else source
            mine, theirs = model_fingerprint(base.config), health.get("fingerprint", {})
            if mine != theirs:
                raise EngineError(
                    f"the rollout server at {self.url} serves {self.served} ({theirs}), which is not the model "
                    f"this run trains, {model_name or 'the policy'} ({mine}): restart it with "
                    f"`rlvr serve-rollouts --model {model_name or 'MODEL'}`"
                )
        self.weight_versions = 0
        self.transfer = None
        self.joined = health.get("instance")
        if weight_transfer == "collective" and source is not None:
            failure = None
            try:
                self.transfer = self._join_transfer(health, transfer_host, transfer_port, timeout)
            except EngineError as exc:
                failure = str(exc)
            failure = _agreed(failure)  # no rank goes on to gather weights for a push that cannot happen
            if failure is not None:
                raise EngineError(failure)

    def _healthy(self) -> dict[str, Any]:
        """The server's /health, refused when its weights are incomplete after a failed broadcast."""
        health = self._call("get", "/health", "did not answer its health check", timeout=10.0)
        if health.get("status") == "broken":
            raise EngineError(
                f"the rollout server at {self.url} says its weights are incomplete after a failed weight "
                "broadcast: restart `rlvr serve-rollouts`, then resume the run from its last checkpoint"
            )
        return health

    def _join_transfer(self, health: dict[str, Any], host: str | None, port: int, timeout: float) -> Any:
        """Join the server's workers in a weight-transfer group (every training rank calls this; rank 0 is the
        one the workers connect to)."""
        backend = health.get("weight_transfer")
        if backend is None:
            raise EngineError(
                f"the rollout server at {self.url} takes no broadcast weights (an rlvr without them?): "
                "set vllm.weight_transfer=http"
            )
        device = next(self.source.parameters()).device.type
        if backend == "nccl" and device != "cuda":
            raise EngineError(
                f"the rollout server at {self.url} runs on GPUs and takes weights by NCCL, but this trainer is on "
                f"{device}: set vllm.weight_transfer=http"
            )
        from rlvr.rollout.transfer import PolicySource, address_towards, trainer_transfer

        try:
            host = host or address_towards(urlparse(self.url).hostname or "127.0.0.1")
            return trainer_transfer(
                backend,
                _TransferClient(self),
                PolicySource(self.source, self.dtype),
                rank=self.rank,
                server_workers=int(health.get("workers", 1)),
                host=host,
                port=port,
                timeout_s=timeout,
            )
        except (RuntimeError, OSError) as exc:
            raise EngineError(
                f"the rollout server at {self.url} did not join the weight transfer on {host or '?'} "
                f"({type(exc).__name__}: {exc}): it connects back to this machine there; set "
                "vllm.weight_transfer_host to an address it reaches, open vllm.weight_transfer_port, or set "
                "vllm.weight_transfer=http"
            ) from exc

    @classmethod
    def for_training(
        cls, config: GRPOConfig, model: Any, tokenizer: Any, url: str | None = None, sync: bool = True
    ) -> ServerEngine:
        """The server at `url` (default: vllm.server_url, the only one) for training `model`; with `sync` it
        is sent the policy's weights at once."""
        from rlvr.rollout.vllm_engine import engine_dtype

        v = config.vllm
        rank = int(os.environ.get("RANK", "0"))
        engine = cls(
            url or v.server_urls[0],
            tokenizer,
            config.data.max_prompt_length,
            eos_token_ids(tokenizer, model),
            source=model,
            model_name=config.model.name_or_path,
            timeout=v.server_timeout,
            weights_dir=v.weights_dir,
            dtype=DTYPES[engine_dtype(config)],
            rank=rank,
            weight_transfer=v.weight_transfer,
            transfer_host=v.weight_transfer_host,
            transfer_port=v.weight_transfer_port,
        )
        if sync:
            engine.sync_weights()
        return engine

    def generate_ids(
        self,
        prompts: list[list[int]],
        num_samples: int,
        config: GenerationConfig,
        seeds: list[int],
        greedy: bool,
    ) -> list[tuple[list[int], list[float] | None]]:
        answer = self._call(
            "post",
            "/generate",
            "did not generate",
            json={
                "prompts": prompts,
                "num_samples": num_samples,
                "sampling": sampling_fields(config),
                "seeds": seeds,
                "greedy": greedy,
                "eos_ids": self.eos_ids,
            },
        )
        logps = answer["logprobs"] or [None] * len(answer["completions"])
        return list(zip(answer["completions"], logps, strict=True))

    def sync_weights(self) -> None:
        """Send the policy's weights: rank 0 sends (under FSDP every rank takes part in gathering them), and
        no rank samples again before the server holds them."""
        if self.source is None:
            return
        failure = None
        if self.transfer is not None:
            failure = self._broadcast()
        else:
            sharded = any(hasattr(p, "full_tensor") for p in self.source.parameters())
            if self.rank == 0 or sharded:
                weights = dict(policy_weights(self.source, self.dtype))
            if self.rank == 0:
                try:
                    self._push(weights)
                except EngineError as exc:
                    failure = str(exc)
        failure = _agreed(failure)  # every rank learns whether rank 0's push worked, and waits for it
        if failure is not None:
            raise EngineError(failure)
        self.weight_versions += 1

    def _broadcast(self) -> str | None:
        """One collective push (every rank: FSDP gathers each tensor, rank 0 sends it); what went wrong, if
        anything, in words."""
        source = self.transfer.source
        source.current = None
        try:
            self.transfer.send_weights()
        except (EngineError, RuntimeError, ValueError, OSError) as exc:
            source.complete()  # the gathers of ranks that went on must be matched
            if isinstance(exc, EngineError):
                return str(exc)
            try:
                self._healthy()
            except EngineError as down:
                return str(down)
            return (
                f"the rollout server at {self.url} did not take the broadcast weights "
                f"({type(exc).__name__}: {exc}); look at the server's log, and if it answers no more, restart "
                "`rlvr serve-rollouts`"
            )
        return None

    def _push(self, weights: dict[str, torch.Tensor]) -> None:
        self.send_weights(self.weights_request(weights))

    def weights_request(self, weights: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The /weights request for `weights`: the path of the safetensors file written to weights_dir, or the
        file itself in the body (made once, when several servers take the same weights)."""
        from safetensors.torch import save, save_file

        if self.weights_dir is not None:
            self.weights_dir.mkdir(parents=True, exist_ok=True)
            path = self.weights_dir / "rollout-weights.safetensors"
            tmp = path.with_suffix(".tmp")
            save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp))
            tmp.replace(path)
            return {"json": {"path": str(path)}}
        body = save({k: v.contiguous() for k, v in weights.items()})
        return {"content": body, "headers": {"content-type": "application/octet-stream"}}

    def send_weights(self, request: dict[str, Any]) -> None:
        self._call("post", "/weights", "did not take the new weights", **request)

    def _call(self, method: str, path: str, failed: str, **kwargs: Any) -> Any:
        """One request; a server that is down, times out or answers an error becomes an EngineError that
        says which and what to do."""
        try:
            response = getattr(self.client, method)(self.url + path, **kwargs)
        except httpx.TimeoutException as exc:
            raise EngineError(
                f"the rollout server at {self.url} {failed}: no answer within the time limit "
                f"({type(exc).__name__}); raise vllm.server_timeout or look at the server's log"
            ) from exc
        except httpx.TransportError as exc:
            raise EngineError(
                f"the rollout server at {self.url} {failed}: it cannot be reached ({type(exc).__name__}: {exc}); "
                "start it with `rlvr serve-rollouts --model MODEL --port PORT` or fix vllm.server_url"
            ) from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise EngineError(
                f"the rollout server at {self.url} {failed}: HTTP {response.status_code}: {detail}"
            )
        return response.json()

    def close(self) -> None:
        if self.transfer is not None:
            self.transfer.shutdown()
        self.client.close()


def _agreed(failure: str | None) -> str | None:
    """Rank 0's `failure` on every rank (each waits for it), or this process's own when it runs alone."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        shared = [failure]
        torch.distributed.broadcast_object_list(shared, src=0)
        return shared[0]
    return failure


class _TransferClient:
    """vLLM's `VLLMWeightSyncClient` over the rollout server's routes. The server starts and finishes each
    update inside the one `/weights/transfer` request, under the lock its generations take, so no request
    samples from half-loaded weights: start and finish have nothing left to ask of it."""

    def __init__(self, engine: ServerEngine) -> None:
        self.engine = engine

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None:
        self.engine._call(
            "post",
            "/weights/transfer/init",
            "did not join the weight transfer",
            json={"init_info": init_info},
        )

    def start_weight_update(self) -> None:
        """Before anything is broadcast: the server that joined still runs, and can take weights (on GPUs a
        broadcast nobody receives would wait forever)."""
        health = self.engine._healthy()
        if health.get("instance") != self.engine.joined:
            raise EngineError(
                f"the rollout server at {self.engine.url} was restarted since this run joined it: its weights "
                "are not this run's; resume the run from its last checkpoint (it joins the new server)"
            )

    def update_weights(self, update_info: dict[str, Any]) -> None:
        self.engine._call(
            "post",
            "/weights/transfer",
            "did not take the broadcast weights",
            json={"update_info": update_info},
        )

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        return None
