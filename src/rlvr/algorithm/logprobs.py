"""Per-token log-probabilities without a whole float32 [tokens, vocab] tensor.

Log-softmax over a 49k-token vocabulary in float32 is 200 KB per token; at 8 x 1024 completion
tokens the naive version holds 1.6 GB of logits, more again for its backward. Here the lm_head and
log-softmax run on row chunks of the hidden states, and under autograd each chunk is recomputed in
backward (activation checkpointing) instead of keeping its logits.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.checkpoint import checkpoint


def selective_log_softmax(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits)[..., index] in float32, for logits [..., V] and index [...].

    >>> selective_log_softmax(torch.zeros(1, 4), torch.tensor([2]))
    tensor([-1.3863])
    """
    logits = logits.float()
    picked = logits.gather(-1, index.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def _chunk_logps(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    # Two float32 [rows, vocab] tensors at most: the logits, and (no grad) the probabilities, which
    # are overwritten in place by p * logit for the entropy.
    logits = torch.nn.functional.linear(hidden, weight, bias).float()
    if temperature != 1.0:
        logits = logits / temperature
    logsumexp = torch.logsumexp(logits, dim=-1)
    logps = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logsumexp
    with torch.no_grad():  # entropy is a diagnostic, never a loss term here
        weighted = torch.exp(logits - logsumexp.unsqueeze(-1)).mul_(logits)
        entropy = logsumexp - weighted.sum(-1)
    return logps, entropy


def logps_from_hidden(
    hidden: torch.Tensor,
    lm_head: torch.nn.Module,
    targets: torch.Tensor,
    mask: torch.Tensor | None = None,
    temperature: float = 1.0,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs and entropies of `targets` [B, T] given final hidden states [B, T, H].

    Only positions where `mask` is 1 are computed (the rest are 0). Returns (logps [B, T] float32,
    entropy [B, T] float32, detached).
    """
    batch, length = targets.shape
    flat_hidden = hidden.reshape(batch * length, -1)
    flat_targets = targets.reshape(-1)
    rows = torch.arange(batch * length, device=targets.device)
    if mask is not None:
        rows = rows[mask.reshape(-1).bool()]
    weight, bias = _head_weights(lm_head)
    logps = torch.zeros(batch * length, dtype=torch.float32, device=targets.device)
    entropy = torch.zeros_like(logps)
    for start in range(0, rows.numel(), chunk_size):
        idx = rows[start : start + chunk_size]
        args = (flat_hidden[idx], weight, bias, flat_targets[idx], temperature)
        if torch.is_grad_enabled():
            chunk_logps, chunk_entropy = checkpoint(_chunk_logps, *args, use_reentrant=False)
        else:
            chunk_logps, chunk_entropy = _chunk_logps(*args)
        logps = logps.index_put((idx,), chunk_logps)
        entropy[idx] = chunk_entropy.detach()
    return logps.view(batch, length), entropy.view(batch, length)


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
    chunk_size: int = 1024,
    group_size: int = 1,
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
        hidden, model.get_output_embeddings(), targets, completion_mask, temperature, chunk_size
    )


def _can_share_prompts(decoder: Any, input_ids: torch.Tensor, prompt_len: int, group_size: int) -> bool:
    if input_ids.shape[0] % group_size or prompt_len == 0:
        return False
    if getattr(decoder, "gradient_checkpointing", False) and decoder.training:
        return False  # checkpointed layers run without a KV cache
    prompts = input_ids[:, :prompt_len]
    return torch.equal(prompts[::group_size].repeat_interleave(group_size, dim=0), prompts)


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
    prompt = decoder(
        input_ids=input_ids[::group_size, :prompt_len],
        attention_mask=attention_mask[::group_size, :prompt_len],
        position_ids=position_ids[::group_size, :prompt_len],
        past_key_values=cache,
        use_cache=True,
    ).last_hidden_state
    cache.batch_repeat_interleave(group_size)
    total_len = input_ids.shape[1]
    completion = decoder(
        input_ids=input_ids[:, prompt_len:],
        attention_mask=attention_mask,
        position_ids=position_ids[:, prompt_len:],
        past_key_values=cache,
        use_cache=True,
        cache_position=torch.arange(prompt_len, total_len, device=input_ids.device),
    ).last_hidden_state
    # the prompt's last state predicts the first completion token; completion states predict the rest
    first = prompt[:, -1:].repeat_interleave(group_size, dim=0)
    return torch.cat([first, completion[:, :-1]], dim=1)
