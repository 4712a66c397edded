"""The GRPO objective per token, and how per-token losses become one number (loss_type).

Pieces, each optional and off by default: the KL estimator and where the KL goes (loss or reward), the
importance-ratio level (token or sequence, GSPO), CISPO's clipped-weight objective, two-sided clipping
(INTELLECT-2), training on the highest-entropy tokens only, DeepSeek-V3.2's off-policy sequence masking, and
the sampler-mismatch weights (`sampling.py`) that multiply the policy loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlvr.algorithm.sampling import off_policy_sequence_mask


def kl_k3(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per-token KL(policy || ref) estimate, k3 = exp(ref - logp) - (ref - logp) - 1.

    k3 estimator (Schulman 2020, "Approximating KL divergence"): always >= 0, lower variance than k1. Its
    *value* is an unbiased estimate of KL(policy || ref) only for tokens sampled from the policy itself
    (on-policy); from an older policy (mu > 1) or another sampler it is biased unless importance-weighted
    (`use_bias_correction_kl`). Its *gradient* is not the KL's gradient in either case.
    """
    delta = ref_logps - logps
    return torch.exp(delta) - delta - 1


def kl_estimate(logps: torch.Tensor, ref_logps: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token KL(policy || ref) estimate [B, T] by Schulman's (2020) estimators, with log r = ref - logp:

    k1 = -log r = logp - ref (unbiased on-policy, can be negative, high variance);
    k2 = (log r)^2 / 2 (biased, >= 0; its gradient on-policy is the reverse KL's);
    k3 = r - 1 - log r (unbiased on-policy, >= 0, low variance; see `kl_k3`).

    >>> kl_estimate(torch.log(torch.tensor([0.5])), torch.log(torch.tensor([0.25])), "k1")
    tensor([0.6931])
    """
    if estimator == "k1":
        return logps - ref_logps
    if estimator == "k2":
        return 0.5 * (logps - ref_logps) ** 2
    if estimator == "k3":
        return kl_k3(logps, ref_logps)
    raise ValueError(f"kl_estimator must be k1, k2 or k3, got {estimator!r}")


def kl_penalized_advantages(
    advantages: torch.Tensor, per_token_kl: torch.Tensor, mask: torch.Tensor, beta: float
) -> torch.Tensor:
    """Per-token advantages [B, T] with the KL as a per-token reward penalty (`kl_in: reward`).

    The reward of token t becomes -beta * KL_t, plus the sequence's outcome reward at its end (InstructGPT,
    Ouyang et al. 2022, eq. 2, per token as in Ziegler et al. 2019); with no discount or critic the return
    from token t is A - beta * sum_{s >= t} KL_s (OpenRLHF's `compute_reward` + cumulative returns for
    group_norm). The penalty is a reward: no gradient flows through `per_token_kl`.
    advantages: [B] group advantages; per_token_kl, mask: [B, T].
    """
    kl = (per_token_kl.detach() * mask).flip(-1).cumsum(-1).flip(-1)  # sum over s >= t
    return advantages.unsqueeze(1) - beta * kl


def log_importance_weights(
    logps: torch.Tensor, old_logps: torch.Tensor, mask: torch.Tensor, level: str = "token"
) -> torch.Tensor:
    """log(pi / pi_old): per token [B, T] ("token", PPO/GRPO), or per sequence [B, 1] ("sequence").

    GSPO (Zheng et al. 2025, arXiv 2507.18071, the sequence ratio s_i): s_i = (pi(y_i) / pi_old(y_i))^(1/|y_i|)
    = exp(mean over y_i's tokens of log(pi / pi_old)): length-normalised so that one ratio covers the
    sequence its reward is about.
    """
    log_ratio = logps - old_logps
    if level == "token":
        return log_ratio
    if level == "sequence":
        mask = mask.to(log_ratio.dtype)
        return ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)
    raise ValueError(f"importance_sampling_level must be token or sequence, got {level!r}")


def _token_advantages(advantages: torch.Tensor) -> torch.Tensor:
    return advantages.unsqueeze(1) if advantages.dim() == 1 else advantages


def clipped_surrogate(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    epsilon: float,
    epsilon_high: float | None = None,
    delta: float | None = None,
    log_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped objective as a per-token loss: -min(ratio * A, clip(ratio, 1-eps, 1+eps_high) * A).

    logps, old_logps: [B, T]; advantages: [B] (one per sequence, broadcast over tokens) or [B, T].
    `log_weights` replaces log(ratio) (e.g. GSPO's sequence ratio [B, 1], `log_importance_weights`).
    `delta` (INTELLECT-2, arXiv 2505.07291, two-sided clipping): the unclipped ratio is capped at delta, so a
    token with A < 0 and a ratio far above 1 + eps_high no longer gets an unbounded loss; delta > 1 + eps_high.
    Returns (per_token_loss [B, T] or [B, 1], low_clipped, high_clipped) where the masks mark tokens whose
    gradient the clip removed.
    """
    epsilon_high = epsilon if epsilon_high is None else epsilon_high
    ratio = torch.exp(logps - old_logps if log_weights is None else log_weights)
    adv = _token_advantages(advantages)
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon_high) * adv
    capped = ratio if delta is None else torch.clamp(ratio, max=delta)
    per_token_loss = -torch.min(capped * adv, clipped)
    low_clipped = (ratio < 1 - epsilon) & (adv < 0)
    high_clipped = (ratio > 1 + epsilon_high) & (adv > 0)
    return per_token_loss, low_clipped, high_clipped


def cispo_surrogate(
    logps: torch.Tensor,
    log_weights: torch.Tensor,
    advantages: torch.Tensor,
    clip_min: float | None,
    clip_max: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CISPO's per-token loss -sg(clip(ratio, clip_min, clip_max)) * A * logp.

    MiniMax-M1 (arXiv 2506.13585, sec. 3.1, the CISPO objective): the importance weight is clipped and its
    gradient stopped, so every token keeps the REINFORCE gradient A * grad logp, scaled by the weight,
    where PPO's clip drops the token's gradient altogether. clip_max is the weight's cap (ScaleRL's
    eps_max, 5.0; TRL's `epsilon_high` under loss_type cispo); clip_min None leaves it unbounded below, as
    MiniMax-M1 and TRL do. log_weights: log ratio [B, T] or [B, 1]; advantages [B] or [B, T].
    Returns (per_token_loss, low_clipped, high_clipped): tokens whose weight sits at a bound.
    """
    ratio = torch.exp(log_weights)
    weight = torch.clamp(ratio, min=clip_min, max=clip_max).detach()
    adv = _token_advantages(advantages)
    per_token_loss = -weight * adv * logps
    low = ratio < clip_min if clip_min is not None else torch.zeros_like(ratio, dtype=torch.bool)
    return per_token_loss, low & (adv < 0), (ratio > clip_max) & (adv > 0)


def high_entropy_mask(
    entropy: torch.Tensor, mask: torch.Tensor, threshold: torch.Tensor | float
) -> torch.Tensor:
    """[B, T] bool: loss tokens whose entropy is at least `threshold` (see `entropy_threshold`)."""
    return ((entropy * mask) >= threshold) & mask.bool()


def entropy_threshold(entropies: torch.Tensor, top_entropy_quantile: float) -> torch.Tensor:
    """The entropy above which the top `top_entropy_quantile` of tokens lie: quantile(entropies, 1 - rho).

    "Beyond the 80/20 Rule" (Wang et al. 2025, arXiv 2506.01939): training on only the highest-entropy 20%
    of tokens ("forking tokens") matches or beats training on all. entropies: [M] of the loss tokens of
    the batch (over all processes). rho = 1 keeps every token; rho = 0 the highest only.

    >>> entropy_threshold(torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5]), 0.25)
    tensor(0.4000)
    """
    if entropies.numel() == 0:
        return torch.tensor(float("inf"))
    return torch.quantile(entropies.float(), 1 - top_entropy_quantile)


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
    dapo, cispo: sum / token count of the whole generation batch (`num_tokens`, over all micro-batches
    and processes), so every token weighs the same however the batch is split.
    `num_sequences` (grpo, dr_grpo) and `num_tokens` (dapo) default to this micro-batch's, and are
    passed as the whole batch's under gradient accumulation so the micro-batch losses sum to it.
    """
    mask = mask.to(per_token_loss.dtype)
    per_token_loss = per_token_loss.expand_as(mask)  # a sequence-level [B, 1] loss covers every token
    masked_sum = (per_token_loss * mask).sum()
    sequences = per_token_loss.shape[0] if num_sequences is None else num_sequences
    if loss_type == "grpo":
        per_seq = (per_token_loss * mask).sum(1) / mask.sum(1).clamp(min=1)
        return per_seq.sum() / sequences
    if loss_type == "bnpo":
        return masked_sum / mask.sum().clamp(min=1)
    if loss_type == "dr_grpo":
        return masked_sum / (sequences * max_completion_length)
    if loss_type in ("dapo", "cispo"):
        tokens = mask.sum() if num_tokens is None else num_tokens
        return masked_sum / max(float(tokens), 1.0)
    raise ValueError(f"loss_type must be grpo, bnpo, dr_grpo, dapo or cispo, got {loss_type!r}")


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar, differentiable
    kl: torch.Tensor  # mean per-token KL over masked tokens (0 when beta = 0)
    low_clip: torch.Tensor  # fraction of masked tokens clipped below
    high_clip: torch.Tensor  # fraction of masked tokens clipped above
    off_policy_masked: torch.Tensor | None = None  # fraction of sequences off_policy_mask_threshold dropped


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
    kl_estimator: str = "k3",
    kl_in: str = "loss",
    use_bias_correction_kl: bool = False,
    importance_sampling_level: str = "token",
    delta: float | None = None,
    cispo_clip_min: float | None = None,
    cispo_clip_max: float = 5.0,
    entropy_mask: torch.Tensor | None = None,
    is_weights: torch.Tensor | None = None,
    sampling_logps: torch.Tensor | None = None,
    off_policy_mask_threshold: float | None = None,
) -> LossOutput:
    """Clipped surrogate plus beta * KL(policy || ref), aggregated by loss_type (DeepSeekMath eq. 3).

    In TRL's order (GRPOTrainer._compute_loss): the importance ratio at `importance_sampling_level`; the
    policy loss (PPO clip with `delta`, or CISPO); times the off-policy sequence mask [B, 1] when
    `off_policy_mask_threshold` is set (from `sampling_logps`, the sampler's log-probs, or `old_logps` without
    them, as TRL), `entropy_mask` [B, T] (top_entropy_quantile) and `is_weights` [B, T] or [B, 1] (sampler
    correction, `sampling.py`); plus beta * KL in the loss, the KL
    optionally times the ratio (`use_bias_correction_kl`, DeepSeek-V3.2 arXiv 2512.02556, "Unbiased KL
    Estimate": with the ratio's gradient kept, the k3 term's gradient is the reverse KL's). With
    `kl_in: reward` the KL of the sampled tokens (old policy against ref) instead lowers the advantages.
    """
    log_weights = log_importance_weights(logps, old_logps, mask, importance_sampling_level)
    keep = off_policy_masked = None
    if off_policy_mask_threshold is not None:  # on the sequence's advantage, before any per-token KL penalty
        sampled = old_logps if sampling_logps is None else sampling_logps
        keep = off_policy_sequence_mask(advantages, logps, sampled, mask, off_policy_mask_threshold)
        off_policy_masked = 1.0 - keep.mean()
    per_token_kl = None
    if beta > 0:
        if ref_logps is None:
            raise ValueError("beta > 0 needs ref_logps")
        if kl_in == "reward":
            per_token_kl = kl_estimate(old_logps, ref_logps, kl_estimator).detach()
            advantages = kl_penalized_advantages(advantages, per_token_kl, mask, beta)
        elif kl_in == "loss":
            per_token_kl = kl_estimate(logps, ref_logps, kl_estimator)
            if use_bias_correction_kl:
                per_token_kl = per_token_kl * torch.exp(log_weights)
        else:
            raise ValueError(f"kl_in must be loss or reward, got {kl_in!r}")
    if loss_type == "cispo":
        per_token, low, high = cispo_surrogate(logps, log_weights, advantages, cispo_clip_min, cispo_clip_max)
    else:
        per_token, low, high = clipped_surrogate(
            logps, old_logps, advantages, epsilon, epsilon_high, delta, log_weights
        )
    if keep is not None:
        per_token = per_token * keep
    if entropy_mask is not None:
        per_token = per_token * entropy_mask
    if is_weights is not None:
        per_token = per_token * is_weights
    maskf = mask.float()
    denom = maskf.sum().clamp(min=1)
    kl = torch.zeros((), device=logps.device)
    if per_token_kl is not None:
        if kl_in == "loss":
            per_token = per_token + beta * per_token_kl
        kl = (per_token_kl.detach() * maskf).sum() / denom
    loss = aggregate_loss(per_token, mask, loss_type, max_completion_length, num_sequences, num_tokens)
    return LossOutput(
        loss=loss,
        kl=kl,
        low_clip=(low.expand_as(maskf).float() * maskf).sum() / denom,
        high_clip=(high.expand_as(maskf).float() * maskf).sum() / denom,
        off_policy_masked=off_policy_masked,
    )
