"""The `vllm` section: the vLLM rollout engine, colocated or as a server, and how weights reach it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlvr.config.checks import ConfigError, above_zero, seconds


@dataclass
class VLLMConfig:
    mode: Literal["colocate", "server"] = "colocate"
    """colocate: an engine inside each training process, its weights updated in place after every optimizer
    step; server: `rlvr serve-rollouts` on its own devices, new weights sent to it after every step."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """The engine's weights and activations (auto: bfloat16 with training.bf16, else model.dtype)."""
    max_model_len: int | None = None
    """Longest prompt + completion the engine holds (None: data.max_prompt_length +
    generation.max_completion_length)."""
    gpu_memory_utilization: float = 0.3
    """Share of each GPU's memory the colocated engine may take for weights and KV cache (GPU only)."""
    cpu_kv_cache_gb: int = 1
    """KV cache of an engine on a CPU, in whole GiB (vLLM's VLLM_CPU_KVCACHE_SPACE)."""
    tensor_parallel_size: int = 1
    """Colocate: ranks that share one engine, its weights split over them (must divide the world size)."""
    enable_sleep_mode: bool = False
    """Colocate on GPUs: free the engine's KV cache and weights while the policy is updated (slower start of
    each generation, more memory for training)."""
    enforce_eager: bool = False
    """Run the engine without torch.compile / CUDA graphs: starts in seconds instead of minutes, generates
    more slowly."""
    server_url: str | list[str] = "http://127.0.0.1:8000"
    """Server mode: where `rlvr serve-rollouts` listens; a list: several servers, each step's prompts spread over
    them (a prompt's G samples on one), every one sent the new weights before any samples from them."""
    server_failure: Literal["stop", "continue"] = "stop"
    """Several servers: a server that fails (dies, times out, refuses new weights) stops the run, naming it
    (stop), or leaves it while the others go on with its prompts (continue); the last one failing always stops."""
    server_timeout: float = 600.0
    """Server mode: seconds one generation or weight push may take."""
    weights_dir: str | None = None
    """Server mode with weight_transfer=http: a directory both sides see; new weights are written there as
    safetensors and the server reads them (None: they are sent in the HTTP request)."""
    weight_transfer: Literal["http", "collective"] = "http"
    """Server mode: how new weights reach the server. http: one safetensors file per push (works anywhere);
    collective: tensor by tensor through vLLM's weight-transfer engine, a broadcast from training rank 0 to
    the server's workers (NCCL between GPUs, gloo on CPUs); the server connects back to the trainer, on
    weight_transfer_host:weight_transfer_port, and the trainer needs vLLM installed."""
    weight_transfer_host: str | None = None
    """Collective transfer: this machine's address as the server reaches it (None: the address this machine
    reaches the server from)."""
    weight_transfer_port: int = 0
    """Collective transfer: the port training rank 0 listens on for the server's workers (0: a free one)."""

    @property
    def server_urls(self) -> list[str]:
        """vllm.server_url as a list."""
        return [self.server_url] if isinstance(self.server_url, str) else list(self.server_url)

    def validate(self, max_sequence_length: int, longest: str) -> None:
        """Checks of this section; the longest sample of the run (`GRPOConfig.max_sequence_length`, which
        settings make it: `longest`) must fit."""
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(
                f"vllm.gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}"
            )
        above_zero("vllm.cpu_kv_cache_gb", self.cpu_kv_cache_gb)
        seconds("vllm.server_timeout", self.server_timeout)
        above_zero("vllm.tensor_parallel_size", self.tensor_parallel_size)
        above_zero("vllm.max_model_len", self.max_model_len)
        if self.max_model_len is not None and self.max_model_len < max_sequence_length:
            raise ConfigError(
                f"vllm.max_model_len ({self.max_model_len}) is shorter than {longest} ({max_sequence_length}): "
                "raise it or leave it null"
            )
        urls = self.server_urls
        if not urls:
            raise ConfigError("vllm.server_url is an empty list: give at least one server's URL")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"vllm.server_url must start with http:// or https://, got {url!r}")
        if len({url.rstrip("/") for url in urls}) < len(urls):
            raise ConfigError(f"vllm.server_url names a server twice: {urls}")
        if len(urls) > 1 and self.weight_transfer == "collective":
            raise ConfigError(
                "vllm.weight_transfer=collective broadcasts to one server; with several vllm.server_url use "
                "weight_transfer=http (each server is sent the weights, or reads them from vllm.weights_dir)"
            )
        if self.weight_transfer == "collective" and self.weights_dir is not None:
            raise ConfigError(
                "vllm.weights_dir is where weight_transfer=http writes its files; with weight_transfer=collective "
                "the weights are broadcast: drop one of the two"
            )
        if not 0 <= self.weight_transfer_port <= 65535:
            raise ConfigError(
                f"vllm.weight_transfer_port must be 0 (a free one) to 65535, got {self.weight_transfer_port}"
            )
