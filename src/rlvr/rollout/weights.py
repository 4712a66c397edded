"""The policy's weights as an engine loads them: Hugging Face checkpoint names, one tensor at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch


def policy_weights(model: Any, dtype: torch.dtype | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """(checkpoint name, tensor) for every weight of `model`, lazily, so at most one extra tensor is alive:

    - LoRA (peft): each adapted layer's base weight with the active adapters merged in, W + scale * B @ A,
      computed aside; the trainer's adapters and base weights are untouched;
    - FSDP: each sharded parameter gathered whole on every rank when its turn comes (a collective: every rank
      must consume the iterator in the same order), never the whole model at once;
    - tied weights appear once, as `named_parameters` lists them.

    Names are those of the base model's checkpoint (`model.layers.0.self_attn.q_proj.weight`), which vLLM's
    `load_weights` reads.
    """
    for name, param, lora in _checkpoint_entries(model):
        value = _whole(param).detach()
        if lora is not None:
            value = value + _lora_delta(lora).to(value.dtype)
        yield name, value.to(dtype) if dtype is not None else value


def policy_weight_shapes(
    model: Any, dtype: torch.dtype | None = None
) -> list[tuple[str, torch.dtype, tuple[int, ...]]]:
    """(name, dtype, shape) of what `policy_weights` yields, in its order, without gathering or merging
    anything (an FSDP shard knows its whole shape)."""
    return [(name, dtype or param.dtype, tuple(param.shape)) for name, param, _ in _checkpoint_entries(model)]


def _checkpoint_entries(model: Any) -> Iterator[tuple[str, torch.Tensor, Any]]:
    """(checkpoint name, parameter, the LoRA layer whose delta it takes or None) for the base model's weights."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    adapted = {name: module for name, module in base.named_modules() if _is_lora_layer(module)}
    for name, param in base.named_parameters():
        if ".lora_" in name or ".modules_to_save." in name:
            continue
        module_name, _, leaf = name.rpartition(".")
        owner = module_name.removesuffix(".base_layer")
        lora = None
        if owner in adapted and module_name.endswith(".base_layer"):
            name = f"{owner}.{leaf}"
            lora = adapted[owner] if leaf == "weight" else None
        yield name, param, lora


def _is_lora_layer(module: Any) -> bool:
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return False
    return isinstance(module, LoraLayer)


def _lora_delta(layer: Any) -> torch.Tensor:
    """scale * B @ A summed over the layer's active adapters, in the base weight's layout."""
    if layer.merged or getattr(layer, "disable_adapters", False):
        return torch.zeros((), dtype=torch.float32)
    delta = None
    for adapter in layer.active_adapters:
        if adapter not in layer.lora_A:
            continue
        if layer.use_dora.get(adapter, False):
            from rlvr.rollout.engine import EngineError

            raise EngineError(
                "pushing DoRA adapters to a rollout engine is not supported: use plain LoRA "
                "(model.lora) or generation.engine=hf"
            )
        a = _whole(layer.lora_A[adapter].weight).detach().float()
        b = _whole(layer.lora_B[adapter].weight).detach().float()
        part = (b @ a) * layer.scaling[adapter]
        if getattr(layer, "fan_in_fan_out", False):
            part = part.T
        delta = part if delta is None else delta + part
    return delta if delta is not None else torch.zeros((), dtype=torch.float32)


def _whole(param: torch.Tensor) -> torch.Tensor:
    """The full tensor of an FSDP shard (a DTensor: gathered from every rank), else the tensor itself."""
    return param.full_tensor() if hasattr(param, "full_tensor") else param
