"""Rewards to advantages: weighted sum over reward functions, then group-relative normalisation."""

from __future__ import annotations

import torch


def combine_rewards(per_function: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted sum over reward functions, skipping NaN ("not applicable") entries.

    per_function: [N, F] with NaN where a function returned None; weights: [F]. Returns [N].

    >>> combine_rewards(torch.tensor([[1.0, float("nan")], [0.0, 0.2]]), torch.tensor([1.0, 2.0]))
    tensor([1.0000, 0.4000])
    """
    return torch.nansum(per_function * weights.unsqueeze(0), dim=1)


def group_advantages(
    rewards: torch.Tensor,
    num_generations: int,
    scale_rewards: str = "group",
    eps: float = 1e-4,
    batch_std: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group-relative advantages `(r - mean_group) / (std + eps)` (DeepSeekMath eq. 3, outcome supervision).

    rewards: [N] with the G completions of each prompt adjacent (N = prompts * G).
    scale_rewards: "group" divides by each group's std, "batch" by the whole batch's std (pass
    `batch_std` when the batch spans processes), "none" only centres (Dr. GRPO: std scaling biases
    towards questions that are too easy or too hard).
    Returns (advantages [N], zero_std [N // G] bool): groups whose rewards are all equal carry no
    signal; their advantages are exactly 0.
    """
    if rewards.numel() % num_generations != 0:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {num_generations}")
    grouped = rewards.view(-1, num_generations)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    group_std = grouped.std(dim=1, keepdim=True)  # unbiased, as the from-scratch tutorial's example
    zero_std = (grouped.max(dim=1).values - grouped.min(dim=1).values) == 0
    if scale_rewards == "group":
        advantages = centred / (group_std + eps)
    elif scale_rewards == "batch":
        std = rewards.std() if batch_std is None else batch_std
        advantages = centred / (std + eps)
    elif scale_rewards == "none":
        advantages = centred
    else:
        raise ValueError(f"scale_rewards must be group, batch or none, got {scale_rewards!r}")
    return advantages.reshape(-1), zero_std
