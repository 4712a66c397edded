"""vLLM in this process (`vllm.mode: colocate`): paged KV cache and continuous batching, weights updated in place.

vLLM is imported only here and only when the engine is built. After every optimizer step `sync_weights` streams
the policy's weights (`policy_weights`: LoRA merged, FSDP gathered one parameter at a time) through the model
runner's `reload_weights`, the route that works on CPUs too: there vLLM repacks linear weights after loading,
and the older `model.load_weights` route fails with "'Parameter' object has no attribute 'weight_loader'".
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import torch

from rlvr.config import GenerationConfig, GRPOConfig
from rlvr.rollout.engine import EngineError, TokenEngine
from rlvr.rollout.generation import eos_token_ids
from rlvr.rollout.weights import policy_weights

log = logging.getLogger(__name__)


class VLLMEngine(TokenEngine):
    """A `vllm.LLM` on `model_path`; with `source` (the trained policy) `sync_weights` copies its weights in.

    On a CPU the engine uses this process's torch threads (vLLM would drop to one unless OMP_NUM_THREADS is
    set) and a KV cache of `cpu_kv_cache_gb` GiB. `enforce_eager` skips torch.compile and CUDA graphs: a start
    in seconds instead of one to three minutes (the compiled graph is cached under ~/.cache/vllm), slower
    generation.
    """

    name = "vllm"

    def __init__(
        self,
        model_path: str,
        tokenizer: Any,
        max_prompt_length: int,
        eos_ids: list[int],
        *,
        dtype: str = "float32",
        max_model_len: int = 2048,
        device: str = "cpu",
        gpu_memory_utilization: float = 0.3,
        cpu_kv_cache_gb: int = 1,
        enforce_eager: bool = False,
        enable_sleep_mode: bool = False,
        tensor_parallel_size: int = 1,
        external_launcher: bool = False,
        weight_transfer: str | None = None,
        seed: int = 0,
        source: Any = None,
        length_settings: str = "max_model_len",
    ) -> None:
        """`length_settings`: what sets `max_model_len`, in the caller's words, for the error when it is longer
        than the model's positions (`check_model_len`)."""
        super().__init__(tokenizer, max_prompt_length, eos_ids)
        if enable_sleep_mode and device != "cuda":
            raise EngineError("vllm.enable_sleep_mode needs GPUs; on a CPU set it to false")
        from rlvr.data.lengths import load_model_config

        check_model_len(load_model_config(model_path), max_model_len, length_settings)
        # The engine core in this process, so its model can be given tensors in place (no pickling).
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        # vLLM 0.32's ahead-of-time compile cache fails to load back ("'function' object has no attribute
        # 'finalize_loading'") and compiles again on every start; its plain compile cache loads (34 s vs 95 s).
        os.environ.setdefault("VLLM_USE_AOT_COMPILE", "0")
        if device == "cpu":
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(cpu_kv_cache_gb)
            os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
        from vllm import LLM

        options: dict[str, Any] = {}
        if device == "cuda":
            options["gpu_memory_utilization"] = gpu_memory_utilization
            options["enable_sleep_mode"] = enable_sleep_mode
        else:
            # vLLM 0.32 on a CPU crashes ("CPU Generator does not use offset") when it splits the prefill of a
            # seeded request over two steps (more prompt tokens at once than max_num_batched_tokens, 4096),
            # and rlvr seeds every request: each prompt is prefilled whole instead
            options["enable_chunked_prefill"] = False
            options["max_num_batched_tokens"] = max(max_model_len, 4096)
        if enforce_eager:
            options["compilation_config"] = {"mode": 0}
        if external_launcher:  # one engine per torchrun process (tensor-parallel groups among them)
            options["distributed_executor_backend"] = "external_launcher"
        if weight_transfer is not None:  # a rollout server: weights broadcast by a trainer (rollout.transfer)
            if weight_transfer == "gloo":
                from rlvr.rollout.transfer import register

                register()
            options["weight_transfer_config"] = {"backend": weight_transfer}
        started = time.perf_counter()
        self.llm = LLM(
            model=model_path,
            dtype=dtype,
            max_model_len=max_model_len,
            seed=seed,
            enforce_eager=enforce_eager,
            tensor_parallel_size=tensor_parallel_size,
            # the log-prob of each token under the distribution it was drawn from (after temperature,
            # penalties, top-k/p, min-p), which the Rollout's sampling_logps hold, as TRL asks
            logprobs_mode="processed_logprobs",
            **options,
        )
        self.start_seconds = time.perf_counter() - started
        self.source = source
        self.weight_transfer = weight_transfer
        self.sleep_mode = enable_sleep_mode
        self.asleep = False
        self.weight_versions = 0
        self.last_sync_seconds = 0.0

    @classmethod
    def for_training(
        cls, config: GRPOConfig, model: Any, tokenizer: Any, model_path: str | None, dist: Any = None
    ) -> VLLMEngine:
        """The colocated engine of a training process: its settings from `config.vllm`, its weights from
        `model` (pushed once now, so a resumed run or fresh LoRA adapters are already in)."""
        v = config.vllm
        if model_path is None:
            raise EngineError(
                "generation.engine=vllm needs the model's directory (vLLM loads the architecture from it): "
                "give model.name_or_path, or a model saved with save_pretrained"
            )
        world = dist.world_size if dist is not None and dist.enabled else 1
        if world % v.tensor_parallel_size:
            raise EngineError(
                f"vllm.tensor_parallel_size ({v.tensor_parallel_size}) must divide the number of "
                f"training processes ({world})"
            )
        longest = "data.max_prompt_length + generation.max_completion_length"
        if (
            v.max_model_len
            or config.max_sequence_length
            > config.data.max_prompt_length + config.generation.max_completion_length
        ):
            longest = "vllm.max_model_len" if v.max_model_len else "environment.max_total_tokens"
        device = next(model.parameters()).device.type
        engine = cls(
            model_path,
            tokenizer,
            config.data.max_prompt_length,
            eos_token_ids(tokenizer, model),
            dtype=engine_dtype(config),
            max_model_len=v.max_model_len or config.max_sequence_length,
            device=device,
            gpu_memory_utilization=v.gpu_memory_utilization,
            cpu_kv_cache_gb=v.cpu_kv_cache_gb,
            enforce_eager=v.enforce_eager,
            enable_sleep_mode=v.enable_sleep_mode,
            tensor_parallel_size=v.tensor_parallel_size,
            external_launcher=world > 1,
            seed=config.training.seed + (dist.rank if dist is not None else 0),
            source=model,
            length_settings=longest,
        )
        engine.sync_weights()
        return engine

    def generate_ids(
        self,
        prompts: list[list[int]],
        num_samples: int,
        config: GenerationConfig,
        seeds: list[int],
        greedy: bool,
        force_full_length: bool = False,
    ) -> list[tuple[list[int], list[float] | None]]:
        return self.sample_ids(prompts, num_samples, config, seeds, greedy, self.eos_ids, force_full_length)

    def sample_ids(
        self,
        prompts: list[list[int]],
        num_samples: int,
        config: GenerationConfig,
        seeds: list[int],
        greedy: bool,
        eos_ids: list[int],
        force_full_length: bool = False,
    ) -> list[tuple[list[int], list[float] | None]]:
        """`generate_ids` with the EOS ids of the caller (a rollout server's client sends its own)."""
        if self.asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self.asleep = False
        params = [
            sampling_params(config, num_samples, seed, greedy, eos_ids, force_full_length) for seed in seeds
        ]
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompts], params, use_tqdm=False)
        results = []
        for request in outputs:
            for completion in sorted(request.outputs, key=lambda c: c.index):
                ids = list(completion.token_ids)
                logps = None
                if not greedy:
                    logps = [step[token].logprob for step, token in zip(completion.logprobs, ids)]
                results.append((ids, logps))
        if self.sleep_mode:  # free the KV cache and weights for the update; sync_weights wakes the weights
            self.llm.sleep(level=2)
            self.asleep = True
        return results

    def sync_weights(self) -> None:
        if self.source is not None:
            self.load_weights(policy_weights(self.source))

    def load_weights(self, weights: Any = None, path: str | None = None) -> None:
        """Load (name, tensor) pairs, or the safetensors files of directory `path`, into the engine in place;
        cached prefixes computed with the old weights are dropped. Workers in other processes (tensor
        parallel) can only be given a path."""
        started = time.perf_counter()
        if self.asleep:
            self.llm.wake_up(tags=["weights"])
        if path is not None:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_path": path})
        else:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self._loaded(started)

    def join_weight_transfer(self, init_info: dict[str, Any]) -> None:
        """Join a trainer's weight-transfer group (`rollout.transfer`); returns once every rank has joined."""
        self.llm.collective_rpc("init_weight_transfer_engine", args=(init_info,))

    def receive_weights(self, update_info: dict[str, Any]) -> None:
        """Take the tensors `update_info` announces from the trainer's broadcast, in place. A failure part-way
        leaves the engine's weights incomplete: the caller must not sample from it again."""
        started = time.perf_counter()
        if self.asleep:
            self.llm.wake_up(tags=["weights"])
        self.llm.collective_rpc("start_weight_update")
        self.llm.collective_rpc("update_weights", args=(update_info,))
        self.llm.collective_rpc("finish_weight_update")
        self._loaded(started)

    def _loaded(self, started: float) -> None:
        self.llm.collective_rpc(_repack_tied_head)
        self.llm.reset_prefix_cache()
        self.weight_versions += 1
        self.last_sync_seconds = time.perf_counter() - started

    def close(self) -> None:
        """Drop the engine (its memory is freed once nothing else holds it); the object answers no more."""
        self.llm = None


def _repack_tied_head(worker: Any) -> None:
    """On a CPU vLLM multiplies by the output head through a packed copy made at load time. A head tied to
    the embeddings receives no weights of its own in a reload (the checkpoint's `lm_head.weight` is skipped),
    so its copy would keep the first weights while the embeddings move: pack it again from the weight it
    shares (an untied head was just packed from its new weight; packing it again changes nothing)."""
    head = getattr(worker.model_runner.model, "lm_head", None)
    if head is not None and hasattr(head, "cpu_linear") and getattr(head, "weight", None) is not None:
        from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

        dispatch_cpu_unquantized_gemm(head, remove_weight=False)


def check_model_len(model_config: Any, max_model_len: int, settings: str) -> None:
    """EngineError, before vLLM starts (a minute or more), when the engine would hold more tokens than the positions
    the model was built for: vLLM refuses that (unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1). Models whose RoPE is
    scaled are left to vLLM, which reckons their length from the scaling."""
    from rlvr.data.lengths import model_context

    if os.environ.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN") or _scaled_rope(model_config):
        return
    context = model_context(model_config)
    context = max(context or 0, getattr(model_config, "model_max_length", 0) or 0) or None
    if context is not None and max_model_len > context:
        raise EngineError(
            f"the vLLM engine would hold {max_model_len} tokens ({settings}), more than the {context} positions the "
            f"model was built for (max_position_embeddings), which vLLM refuses: lower {settings} to {context} "
            "or less"
        )


def _scaled_rope(model_config: Any) -> bool:
    """Whether the config scales its rotary positions (a rope_type other than default, per layer type or not)."""
    found = [getattr(model_config, key, None) for key in ("rope_scaling", "rope_parameters")]
    for params in found:
        if not isinstance(params, dict):
            continue
        layers = params.values() if all(isinstance(v, dict) for v in params.values()) and params else [params]
        if any(
            layer.get("rope_type", layer.get("type", "default")) not in (None, "default") for layer in layers
        ):
            return True
    return False


def engine_dtype(config: GRPOConfig) -> str:
    """vllm.dtype, with auto read as the policy's sampling dtype: bfloat16 under training.bf16, else
    model.dtype (the trainer has resolved `training.bf16: auto` to true or false before any engine starts)."""
    if config.vllm.dtype != "auto":
        return config.vllm.dtype
    return "bfloat16" if config.training.bf16 is True else config.model.dtype


def sampling_params(
    config: GenerationConfig,
    num_samples: int,
    seed: int,
    greedy: bool,
    eos_ids: list[int],
    force_full_length: bool = False,
) -> Any:
    """vLLM's SamplingParams with the meaning rlvr's loop gives `config`: the same processors (temperature,
    top_k with 0 as off, top_p, min_p, repetition penalty over prompt and completion), EOS ids from the
    tokenizer and the model's generation config, the EOS token kept in the completion; greedy decodes by
    argmax with no processor, as rlvr's loop does."""
    from vllm import SamplingParams

    return SamplingParams(
        n=num_samples,
        temperature=0.0 if greedy else config.temperature,
        top_p=1.0 if greedy else config.top_p,
        top_k=0 if greedy else config.top_k,
        min_p=0.0 if greedy else config.min_p,
        repetition_penalty=1.0 if greedy else config.repetition_penalty,
        max_tokens=config.max_completion_length,
        min_tokens=config.max_completion_length if force_full_length else 0,
        stop_token_ids=eos_ids,
        logprobs=None if greedy else 0,  # the sampled token's own log-prob
        seed=seed,
        detokenize=False,  # rlvr decodes the masked ids itself, as for its own loop
    )
