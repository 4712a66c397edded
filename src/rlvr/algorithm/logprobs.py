"""Per-token log-probabilities without a whole float32 [tokens, vocab] tensor.

Log-softmax over a 49k-token vocabulary in float32 is 200 KB per token; at 8 x 1024 completion
tokens the naive version holds 1.6 GB of logits, more again for its backward. Here the lm_head and
log-softmax run on row chunks of the hidden states, and backward recomputes each chunk's logits
instead of keeping them (`_ChunkedHeadLogps`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
from collections.abc import Iterator
from typing import Any

import torch

# transformers' switch for passing grouped key/value heads to SDPA as they are (read at every call)
_FORCE_GQA = "TRANSFORMERS_SDPA_FORCE_GQA"


def selective_log_softmax(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits)[..., index] in float32, for logits [..., V] and index [...].

    >>> selective_log_softmax(torch.zeros(1, 4), torch.tensor([2]))
    tensor([-1.3863])
    """
    logits = logits.float()
    picked = logits.gather(-1, index.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


class _ChunkedHeadLogps(torch.autograd.Function):
    """Log-probs of `targets` under lm_head(hidden), row chunk by row chunk, logits never all held.

    Forward keeps only the hidden states and each row's log-sum-exp; backward recomputes one chunk's
    logits at a time and turns them into the gradient in place: d logp / d logits = onehot - softmax.
    One exponential pass per chunk in each direction, where autograd through log_softmax (under
    activation checkpointing) needs several float32 [rows, vocab] temporaries and a second forward.
    The matmuls run in `compute_dtype` (autocast's) with float32 logits, as autocast would run them.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, temperature, chunk_size, compute_dtype, want_entropy):
        logps = hidden.new_empty(hidden.shape[0], dtype=torch.float32)
        entropy = torch.zeros_like(logps)
        lse = torch.empty_like(logps)
        head = _cast(weight, bias, compute_dtype)
        for start in range(0, hidden.shape[0], chunk_size):
            rows = slice(start, start + chunk_size)
            logits = _logits(hidden[rows], *head, temperature, compute_dtype)
            lse[rows] = torch.logsumexp(logits, dim=-1)
            logps[rows] = logits.gather(-1, targets[rows].unsqueeze(-1)).squeeze(-1) - lse[rows]
            if want_entropy:  # H = lse - sum(p * logits), a diagnostic: no gradient flows through it
                probs = torch.exp(logits - lse[rows].unsqueeze(-1))
                entropy[rows] = lse[rows] - probs.mul_(logits).sum(-1)
        ctx.save_for_backward(hidden, weight, bias, targets, lse)
        ctx.temperature, ctx.chunk_size, ctx.compute_dtype = temperature, chunk_size, compute_dtype
        ctx.mark_non_differentiable(entropy)
        return logps, entropy

    @staticmethod
    def backward(ctx, grad_logps, _grad_entropy):
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        dtype = ctx.compute_dtype or hidden.dtype
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if ctx.needs_input_grad[2] else None
        head_weight, head_bias = _cast(weight, bias, dtype)
        for start in range(0, hidden.shape[0], ctx.chunk_size):
            rows = slice(start, start + ctx.chunk_size)
            g = grad_logps[rows].unsqueeze(-1)
            logits = _logits(hidden[rows], head_weight, head_bias, ctx.temperature, dtype)
            # d logp / d logits = onehot(target) - softmax, times the incoming gradient, over the temperature
            grad_logits = logits.sub_(lse[rows].unsqueeze(-1)).exp_().mul_(-g)
            grad_logits.scatter_add_(-1, targets[rows].unsqueeze(-1), g)
            grad_logits = grad_logits.div_(ctx.temperature).to(dtype)
            if grad_hidden is not None:
                grad_hidden[rows] = grad_logits @ head_weight
            if grad_weight is not None:
                grad_weight += grad_logits.T @ hidden[rows].to(dtype)
            if grad_bias is not None:
                grad_bias += grad_logits.float().sum(0)
        return (
            grad_hidden,
            grad_weight.to(weight.dtype) if grad_weight is not None else None,
            grad_bias.to(bias.dtype) if grad_bias is not None else None,
            None,
            None,
            None,
            None,
            None,
        )


def _cast(
    weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    if dtype is None:
        return weight, bias
    return weight.to(dtype), bias.to(dtype) if bias is not None else None


def _logits(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    temperature: float,
    dtype: torch.dtype | None,
) -> torch.Tensor:
    """Float32 logits / temperature of one chunk; `weight` and `bias` are already in `dtype` (if given)."""
    if dtype is not None:
        hidden = hidden.to(dtype)
    logits = torch.nn.functional.linear(hidden, weight, bias).float()
    return logits.div_(temperature) if temperature != 1.0 else logits


def logps_from_hidden(
    hidden: torch.Tensor,
    lm_head: torch.nn.Module,
    targets: torch.Tensor,
    mask: torch.Tensor | None = None,
    temperature: float = 1.0,
    chunk_size: int = 256,
    entropy: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs and entropies of `targets` [B, T] given final hidden states [B, T, H].

    Only positions where `mask` is 1 are computed (the rest are 0), `chunk_size` rows at a time. Under
    autocast the output projection runs in autocast's dtype. Returns (logps [B, T] float32, entropy
    [B, T] float32, detached; zeros when `entropy` is False).
    """
    batch, length = targets.shape
    flat_hidden = hidden.reshape(batch * length, -1)
    flat_targets = targets.reshape(-1)
    rows = torch.arange(batch * length, device=targets.device)
    if mask is not None:
        rows = rows[mask.reshape(-1).bool()]
    weight, bias = _head_weights(lm_head)
    compute_dtype = (
        torch.get_autocast_dtype(hidden.device.type)
        if torch.is_autocast_enabled(hidden.device.type)
        else None
    )
    with torch.autocast(hidden.device.type, enabled=False):  # the function casts for itself
        picked_logps, picked_entropy = _ChunkedHeadLogps.apply(
            flat_hidden[rows],
            weight,
            bias,
            flat_targets[rows],
            temperature,
            chunk_size,
            compute_dtype,
            entropy,
        )
    logps = torch.zeros(batch * length, dtype=torch.float32, device=targets.device)
    logps = logps.index_put((rows,), picked_logps)
    full_entropy = torch.zeros_like(logps)
    full_entropy[rows] = picked_entropy
    return logps.view(batch, length), full_entropy.view(batch, length)


def _head_weights(lm_head: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weight and bias of the output projection; a LoRA-wrapped head is merged on the fly."""
    base = getattr(lm_head, "base_layer", None)
    if base is None:
        return lm_head.weight, getattr(lm_head, "bias", None)
    weight = base.weight
    if not getattr(lm_head, "disable_adapters", False) and not getattr(lm_head, "merged", False):
        for name in lm_head.active_adapters:
            if name in lm_head.lora_A:
                a, b = lm_head.lora_A[name].weight, lm_head.lora_B[name].weight
                weight = weight + (b @ a) * lm_head.scaling[name]
    return weight, base.bias


def completion_logps(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    temperature: float = 1.0,
    chunk_size: int = 256,
    group_size: int = 1,
    entropy: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs [B, C] (and entropies) of the last C tokens of `input_ids` [B, P + C] under `model`.

    Position ids follow the attention mask, as in generation, so left padding does not shift them.
    With `group_size` G > 1 and each run of G rows sharing one prompt (as GRPO batches do), the prompt
    is run once per group and its keys and values are repeated G times for the completions: the same
    numbers and gradients (the repeat is differentiable) for about (G - 1) / G less prompt compute.
    """
    completion_len = completion_mask.shape[1]
    prompt_len = input_ids.shape[1] - completion_len
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    decoder = model.get_decoder()
    with _grouped_query_sdpa(decoder, input_ids.device):
        if group_size > 1 and _can_share_prompts(decoder, input_ids, prompt_len, group_size):
            hidden = _shared_prompt_hidden(
                model, decoder, input_ids, attention_mask, position_ids, prompt_len, group_size
            )
        else:
            hidden = decoder(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
            ).last_hidden_state
            # hidden state at t predicts token t + 1: positions P - 1 .. P + C - 2 score the completion
            hidden = hidden[:, -completion_len - 1 : -1]
    targets = input_ids[:, -completion_len:]
    return logps_from_hidden(
        hidden, model.get_output_embeddings(), targets, completion_mask, temperature, chunk_size, entropy
    )


@contextlib.contextmanager
def _grouped_query_sdpa(decoder: Any, device: torch.device) -> Iterator[None]:
    """Let SDPA take a grouped-query model's key/value heads as they are, on a CPU.

    With an attention mask (always, here), transformers first repeats each key/value head to the number of
    query heads, and SDPA keeps those copies for backward: for SmolLM2 (9 query, 3 key/value heads) that
    is 2/3 of the saved keys and values, 330 MB of a GRPO step's peak in bfloat16. PyTorch's CPU kernel
    takes the groups directly (`enable_gqa`) with the same results; GPU kernels fall back to the slow
    math path with a mask, so they keep the copies. (Not for sampling either: the single-token decode
    step is slower that way.) Not under gradient checkpointing: its recompute runs in backward, after
    this block, and must save tensors of the same shapes as the forward did.
    """
    checkpointed = getattr(decoder, "gradient_checkpointing", False) and decoder.training
    if device.type != "cpu" or checkpointed or _FORCE_GQA in os.environ or torch.__version__ < (2, 5):
        yield
        return
    os.environ[_FORCE_GQA] = "1"
    try:
        yield
    finally:
        os.environ.pop(_FORCE_GQA, None)


def _can_share_prompts(decoder: Any, input_ids: torch.Tensor, prompt_len: int, group_size: int) -> bool:
    if prompt_len == 0:
        return False
    if getattr(decoder, "gradient_checkpointing", False) and decoder.training:
        return False  # checkpointed layers run without a KV cache
    return groups_share_prompts(input_ids[:, :prompt_len], group_size)


def groups_share_prompts(prompt_ids: torch.Tensor, group_size: int) -> bool:
    """Whether each run of `group_size` adjacent rows of `prompt_ids` [B, P] holds one prompt.

    >>> groups_share_prompts(torch.tensor([[1, 2], [1, 2], [3, 4], [3, 4]]), 2)
    True
    """
    if group_size <= 1 or prompt_ids.shape[0] % group_size:
        return False
    return torch.equal(prompt_ids[::group_size].repeat_interleave(group_size, dim=0), prompt_ids)


def cache_argument(model: Any) -> str:
    """The keyword that hands a KV cache to `model`'s forward.

    transformers 5.x renamed `past_key_values` to `cache` (the old name still works until 5.40 but warns on
    every call); earlier versions, and models with their own code that keep the old name, take only
    `past_key_values`. Decided once per model class; a peft wrapper passes the cache on to its base model.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return _cache_argument(type(base))


@functools.cache
def _cache_argument(model_class: type) -> str:
    parameters = inspect.signature(model_class.forward).parameters  # follows the deprecation decorator
    return "cache" if "cache" in parameters else "past_key_values"


def _shared_prompt_hidden(
    model: Any,
    decoder: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    prompt_len: int,
    group_size: int,
) -> torch.Tensor:
    """Hidden states [B, C, H] that score the completion, with each group's prompt run once."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    cache_arg = {cache_argument(decoder): cache}
    prompt = decoder(
        input_ids=input_ids[::group_size, :prompt_len],
        attention_mask=attention_mask[::group_size, :prompt_len],
        position_ids=position_ids[::group_size, :prompt_len],
        **cache_arg,
        use_cache=True,
    ).last_hidden_state
    cache.batch_repeat_interleave(group_size)
    total_len = input_ids.shape[1]
    completion = decoder(
        input_ids=input_ids[:, prompt_len:],
        attention_mask=attention_mask,
        position_ids=position_ids[:, prompt_len:],
        **cache_arg,
        use_cache=True,
        cache_position=torch.arange(prompt_len, total_len, device=input_ids.device),
    ).last_hidden_state
    # the prompt's last state predicts the first completion token; completion states predict the rest
    first = prompt[:, -1:].repeat_interleave(group_size, dim=0)
    return torch.cat([first, completion[:, :-1]], dim=1)
