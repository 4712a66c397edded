"""The GRPO objective per token, and how per-token losses become one number (loss_type)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def kl_k3(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per-token KL(policy || ref) estimate, k3 = exp(ref - logp) - (ref - logp) - 1.

    k3 estimator (Schulman 2020): unbiased, always >= 0, lower variance than log(p/ref).
    """
    delta = ref_logps - logps
    return torch.exp(delta) - delta - 1


def clipped_surrogate(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    epsilon: float,
    epsilon_high: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped objective as a per-token loss: -min(ratio * A, clip(ratio, 1-eps, 1+eps_high) * A).

    logps, old_logps: [B, T]; advantages: [B] (one per sequence, broadcast over tokens).
    Returns (per_token_loss [B, T], low_clipped [B, T], high_clipped [B, T]) where the masks mark
    tokens whose gradient the clip removed.
    """
    epsilon_high = epsilon if epsilon_high is None else epsilon_high
    ratio = torch.exp(logps - old_logps)
    adv = advantages.unsqueeze(1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon_high) * adv
    per_token_loss = -torch.min(unclipped, clipped)
    low_clipped = (ratio < 1 - epsilon) & (adv < 0)
    high_clipped = (ratio > 1 + epsilon_high) & (adv > 0)
    return per_token_loss, low_clipped, high_clipped


def aggregate_loss(
    per_token_loss: torch.Tensor,
    mask: torch.Tensor,
    loss_type: str,
    max_completion_length: int,
    num_sequences: int | float | None = None,
    num_tokens: int | float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Reduce a [B, T] per-token loss to a scalar.

    grpo: mean over each sequence's tokens, then over sequences (long answers weigh less per token).
    bnpo: mean over all tokens of this micro-batch.
    dr_grpo: sum / (sequences * max_completion_length): a constant normaliser, no length bias.
    dapo: sum / token count of the whole generation batch (`num_tokens`, over all micro-batches
    and processes), so every token weighs the same however the batch is split.
    `num_sequences` (grpo, dr_grpo) and `num_tokens` (dapo) default to this micro-batch's, and are
    passed as the whole batch's under gradient accumulation so the micro-batch losses sum to it.
    """
    mask = mask.to(per_token_loss.dtype)
    masked_sum = (per_token_loss * mask).sum()
    sequences = per_token_loss.shape[0] if num_sequences is None else num_sequences
    if loss_type == "grpo":
        per_seq = (per_token_loss * mask).sum(1) / mask.sum(1).clamp(min=1)
        return per_seq.sum() / sequences
    if loss_type == "bnpo":
        return masked_sum / mask.sum().clamp(min=1)
    if loss_type == "dr_grpo":
        return masked_sum / (sequences * max_completion_length)
    if loss_type == "dapo":
        tokens = mask.sum() if num_tokens is None else num_tokens
        return masked_sum / max(float(tokens), 1.0)
    raise ValueError(f"loss_type must be grpo, bnpo, dr_grpo or dapo, got {loss_type!r}")


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar, differentiable
    kl: torch.Tensor  # mean per-token KL over masked tokens (0 when beta = 0)
    low_clip: torch.Tensor  # fraction of masked tokens clipped below
    high_clip: torch.Tensor  # fraction of masked tokens clipped above


def grpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    loss_type: str,
    max_completion_length: int,
    epsilon: float,
    epsilon_high: float | None = None,
    beta: float = 0.0,
    ref_logps: torch.Tensor | None = None,
    num_sequences: int | float | None = None,
    num_tokens: int | float | torch.Tensor | None = None,
) -> LossOutput:
    """Clipped surrogate plus beta * KL(policy || ref), aggregated by loss_type (DeepSeekMath eq. 3)."""
    per_token, low, high = clipped_surrogate(logps, old_logps, advantages, epsilon, epsilon_high)
    maskf = mask.float()
    denom = maskf.sum().clamp(min=1)
    kl = torch.zeros((), device=logps.device)
    if beta > 0:
        if ref_logps is None:
            raise ValueError("beta > 0 needs ref_logps")
        per_token_kl = kl_k3(logps, ref_logps)
        per_token = per_token + beta * per_token_kl
        kl = (per_token_kl.detach() * maskf).sum() / denom
    loss = aggregate_loss(per_token, mask, loss_type, max_completion_length, num_sequences, num_tokens)
    return LossOutput(
        loss=loss,
        kl=kl,
        low_clip=(low.float() * maskf).sum() / denom,
        high_clip=(high.float() * maskf).sum() / denom,
    )
