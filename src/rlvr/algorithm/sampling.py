"""The sampler is not the trainer: importance weights for the gap between the two.

The engine that sampled a completion (rlvr's bfloat16 decode loop, vLLM) scores its tokens with slightly
different probabilities than the trainer's forward pass does. The policy gradient is an expectation under
the trainer's old policy, so each token's loss is weighted by pi_old / pi_sampler, truncated or masked to
bound the variance (Yao et al. 2025, "Your efficient RL framework secretly brings you off-policy RL
training": truncated importance sampling, TIS; Liu et al. 2025, "When speed kills stability": masked
importance sampling, MIS, token- or sequence-level; TRL's `vllm_importance_sampling_mode`).
"""

from __future__ import annotations

import math

import torch

MODES = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")


def sampling_log_ratio(
    old_logps: torch.Tensor, sampling_logps: torch.Tensor, mask: torch.Tensor, sequence: bool
) -> torch.Tensor:
    """log(pi_old / pi_sampler): per token [B, T], or summed over each sequence's tokens [B, 1].

    Tokens the sampler could not score (NaN) count as no difference, as TRL does.
    """
    diff = torch.nan_to_num((old_logps - sampling_logps) * mask, nan=0.0)
    return diff.sum(-1, keepdim=True) if sequence else diff


def sampling_importance_weights(
    old_logps: torch.Tensor,
    sampling_logps: torch.Tensor,
    mask: torch.Tensor,
    mode: str = "token_truncate",
    clip_min: float | None = None,
    clip_max: float | None = 3.0,
) -> torch.Tensor:
    """Weights pi_old / pi_sampler [B, T] (token modes) or [B, 1] (sequence modes), no gradient.

    *_truncate: the ratio clipped to [clip_min, clip_max] (TIS); *_mask: ratios outside the bounds set to 0
    (MIS: the token, or the whole sequence, leaves the loss). A bound of None is no bound. The sequence
    ratio is the product of the token ratios (sum of log differences), not GSPO's length-normalised mean.

    >>> sampling_importance_weights(torch.tensor([[0.0]]), torch.tensor([[-2.0]]), torch.ones(1, 1))  # e^2 > 3
    tensor([[3.]])
    """
    if mode not in MODES:
        raise ValueError(f"importance_sampling_mode must be one of {', '.join(MODES)}, got {mode!r}")
    sequence = mode.startswith("sequence")
    ratio = torch.exp(sampling_log_ratio(old_logps.detach(), sampling_logps, mask, sequence))
    if mode.endswith("truncate"):
        return torch.clamp(ratio, min=clip_min, max=clip_max)
    return ratio.masked_fill(_outside(ratio, clip_min, clip_max), 0.0)


def sampler_terms(
    old_logps: torch.Tensor,
    sampling_logps: torch.Tensor,
    mask: torch.Tensor,
    source: str = "trainer",
    correction: bool = False,
    mode: str = "sequence_mask",
    clip_min: float | None = None,
    clip_max: float | None = 3.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(pi_old for the PPO ratio, importance weights or None) for a batch the sampler scored.

    `source` "trainer": pi_old is `old_logps`, and with `correction` the loss is weighted by pi_old /
    pi_sampler (`sampling_importance_weights`). "sampler": pi_old is the sampler's log-probs (the trainer's
    where the sampler gave none, NaN), and no weight: the ratio pi_theta / pi_sampler is the correction.
    """
    if source == "sampler":
        return torch.where(torch.isnan(sampling_logps), old_logps, sampling_logps), None
    if not correction:
        return old_logps, None
    return old_logps, sampling_importance_weights(old_logps, sampling_logps, mask, mode, clip_min, clip_max)


def off_policy_sequence_mask(
    advantages: torch.Tensor,
    logps: torch.Tensor,
    sampling_logps: torch.Tensor,
    mask: torch.Tensor,
    threshold: float,
) -> torch.Tensor:
    """[B, 1] 1.0 to keep a sequence, 0.0 to drop it: DeepSeek-V3.2's off-policy sequence masking (arXiv
    2512.02556, eq. 9; TRL's `off_policy_mask_threshold`). A sequence with a negative advantage whose mean
    per-token log(pi_sampler / pi_theta) over its loss tokens exceeds `threshold` leaves the loss: a sample the
    policy has moved far from teaches little from its mistakes and destabilises the update. Tokens the sampler
    could not score (NaN) count as no divergence.

    >>> off_policy_sequence_mask(torch.tensor([-1.0, -1.0, 1.0]), torch.full((3, 2), -2.0),
    ...                          torch.tensor([[-1.0, -1.0], [-1.8, -2.0], [-1.0, -1.0]]), torch.ones(3, 2), 0.5)
    tensor([[0.],
            [1.],
            [1.]])
    """
    maskf = mask.to(logps.dtype)
    divergence = torch.nan_to_num(sampling_logps - logps.detach(), nan=0.0)
    mean = (divergence * maskf).sum(-1, keepdim=True) / maskf.sum(-1, keepdim=True).clamp(min=1.0)
    keep = (advantages.reshape(-1, 1) >= 0) | (mean <= threshold)
    return keep.to(maskf.dtype)


def _outside(ratio: torch.Tensor, clip_min: float | None, clip_max: float | None) -> torch.Tensor:
    """Where `ratio` lies outside [clip_min, clip_max] (a bound of None is no bound): masked, or truncated."""
    low = -math.inf if clip_min is None else clip_min
    high = math.inf if clip_max is None else clip_max
    return (ratio < low) | (ratio > high)


def sampling_stats(
    old_logps: torch.Tensor,
    sampling_logps: torch.Tensor,
    mask: torch.Tensor,
    sequence: bool,
    clip_min: float | None = None,
    clip_max: float | None = None,
) -> dict[str, torch.Tensor]:
    """Sums and extremes for the `sampling/*` metrics over the scored loss tokens (or sequences).

    Returns logp_diff_sum, logp_diff_max, logp_diff_count (|pi_old - pi_sampler| in log space, per token) and
    is_ratio_sum, is_ratio_min, is_ratio_max, is_ratio_count: the untruncated ratio per token, or per
    sequence with `sequence`, so a metric shows how far the sampler drifted before any cap; is_ratio_outside:
    how many of those ratios lie outside [clip_min, clip_max] (masked or truncated, as the mode says).
    """
    valid = mask.bool() & ~torch.isnan(sampling_logps)
    diff = (old_logps.detach() - sampling_logps).abs()[valid]
    ratio = torch.exp(sampling_log_ratio(old_logps.detach(), sampling_logps, mask, sequence))
    ratio = ratio.flatten() if sequence else ratio[valid]
    return {
        "logp_diff_sum": diff.sum(),
        "logp_diff_max": diff.max() if diff.numel() else torch.tensor(0.0),
        "logp_diff_count": torch.tensor(float(diff.numel())),
        "is_ratio_sum": ratio.sum(),
        "is_ratio_min": ratio.min() if ratio.numel() else torch.tensor(math.inf),
        "is_ratio_max": ratio.max() if ratio.numel() else torch.tensor(-math.inf),
        "is_ratio_count": torch.tensor(float(ratio.numel())),
        "is_ratio_outside": _outside(ratio, clip_min, clip_max).sum().float(),
    }
