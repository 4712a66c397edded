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
    logits = torch.nn.functional.linear(hidden, weight, bias).float() / temperature
    logsumexp = torch.logsumexp(logits, dim=-1)
    logps = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logsumexp
    with torch.no_grad():  # entropy is a diagnostic, never a loss term here
        entropy = logsumexp - (torch.softmax(logits, dim=-1) * logits).sum(-1)
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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs [B, C] (and entropies) of the last C tokens of `input_ids` [B, P + C] under `model`.

    Position ids follow the attention mask, as in generation, so left padding does not shift them.
    """
    completion_len = completion_mask.shape[1]
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    decoder = model.get_decoder()
    hidden = decoder(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
    ).last_hidden_state
    # hidden state at t predicts token t + 1: positions P - 1 .. P + C - 2 score the completion
    hidden = hidden[:, -completion_len - 1 : -1]
    targets = input_ids[:, -completion_len:]
    return logps_from_hidden(
        hidden, model.get_output_embeddings(), targets, completion_mask, temperature, chunk_size
    )
