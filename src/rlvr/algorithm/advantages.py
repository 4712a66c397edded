"""Rewards to advantages: weighted sum over reward functions, then group-relative normalisation.

A reward of None ("not applicable") is NaN here. A completion whose every reward is None is *unscorable*: its
combined reward is NaN, it is left out of its group's and the batch's statistics, and its advantage is 0
(as TRL does), rather than being scored 0 and pulling its group's baseline down.
"""

from __future__ import annotations

import torch


def combine_rewards(per_function: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted sum over reward functions, skipping NaN ("not applicable") entries.

    per_function: [N, F] with NaN where a function returned None; weights: [F]. Returns [N].

    >>> combine_rewards(torch.tensor([[1.0, float("nan")], [0.0, 0.2]]), torch.tensor([1.0, 2.0]))
    tensor([1.0000, 0.4000])
    """
    return torch.nansum(per_function * weights.unsqueeze(0), dim=1)


def unscorable(per_function: torch.Tensor) -> torch.Tensor:
    """[N] bool: completions for which every reward function returned None (NaN in `per_function` [N, F]).

    >>> unscorable(torch.tensor([[float("nan"), float("nan")], [float("nan"), 0.0]]))
    tensor([ True, False])
    """
    return torch.isnan(per_function).all(dim=1)


def nanstd(values: torch.Tensor, dim: int | None = None, keepdim: bool = False) -> torch.Tensor:
    """Unbiased standard deviation over the non-NaN entries; NaN where fewer than two (as TRL's `nanstd`).

    >>> nanstd(torch.tensor([1.0, float("nan"), 3.0]))
    tensor(1.4142)
    """
    dims = dim if dim is not None else tuple(range(values.dim()))
    mean = torch.nanmean(values, dim=dims, keepdim=True)
    count = (~torch.isnan(values)).sum(dim=dims, keepdim=keepdim)
    squares = torch.nansum((values - mean) ** 2, dim=dims, keepdim=keepdim)
    return torch.where(
        count > 1, squares / (count - 1).clamp(min=1), torch.full_like(squares, float("nan"))
    ).sqrt()


def zero_range_groups(rewards: torch.Tensor, num_generations: int) -> torch.Tensor:
    """[N // G] bool: groups whose scorable rewards (non-NaN) are all equal, or that hold fewer than two.

    Such a group carries no learning signal: every advantage in it is 0 (DAPO drops them, sec. 3.2).
    """
    grouped = rewards.view(-1, num_generations)
    highest = grouped.nan_to_num(nan=-torch.inf).max(dim=1).values
    lowest = grouped.nan_to_num(nan=torch.inf).min(dim=1).values
    return ~(highest > lowest)


def group_advantages(
    rewards: torch.Tensor,
    num_generations: int,
    scale_rewards: str = "group",
    eps: float = 1e-4,
    batch_std: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group-relative advantages `(r - mean_group) / (std + eps)` (DeepSeekMath eq. 3, outcome supervision).

    rewards: [N] with the G completions of each prompt adjacent (N = prompts * G); NaN marks an
    unscorable completion, left out of the mean and std and given advantage 0.
    scale_rewards: "group" divides by each group's std, "batch" by the whole batch's std (pass
    `batch_std` when the batch spans processes), "none" only centres (Dr. GRPO: std scaling biases
    towards questions that are too easy or too hard).
    Returns (advantages [N], zero_std [N // G] bool): groups whose rewards are all equal carry no
    signal; their advantages are exactly 0.
    """
    if rewards.numel() % num_generations != 0:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {num_generations}")
    grouped = rewards.view(-1, num_generations)
    centred = grouped - torch.nanmean(grouped, dim=1, keepdim=True)
    zero_std = zero_range_groups(rewards, num_generations)
    if scale_rewards == "group":
        advantages = centred / (nanstd(grouped, dim=1, keepdim=True) + eps)  # unbiased, as the tutorial's
    elif scale_rewards == "batch":
        std = nanstd(rewards) if batch_std is None else batch_std
        advantages = centred / (std + eps)
    elif scale_rewards == "none":
        advantages = centred
    else:
        raise ValueError(f"scale_rewards must be group, batch or none, got {scale_rewards!r}")
    # unscorable completions, and a group's only scorable one (its std is NaN), carry no signal
    advantages = torch.where(zero_std.unsqueeze(1) | torch.isnan(grouped), 0.0, advantages)
    return advantages.reshape(-1), zero_std


def normalize_then_sum(
    per_function: torch.Tensor, weights: torch.Tensor, num_generations: int, eps: float = 1e-4
) -> torch.Tensor:
    """GDPO's decoupled rewards [N]: each function's rewards normalised within their group, then weighted and summed.

    GDPO (Liu et al. 2026, arXiv 2601.05242, eq. 4): `sum_k w_k (r_k - mean_group(r_k)) / (std_group(r_k) + eps)`.
    Summing first lets different reward combinations collapse to one advantage (rewards [1, 0] and [0, 1]
    both sum to 1); normalising each first keeps them apart. Entries that are None (NaN) are left out of
    their function's group statistics; unscorable completions are NaN. The result is then normalised over
    the batch by `batch_advantages`. A group whose rewards are all equal gets 0 from every function.
    """
    grouped = per_function.view(-1, num_generations, per_function.shape[1])
    mean = torch.nanmean(grouped, dim=1, keepdim=True)
    # a function with a single scorable completion in a group has NaN std: nansum counts it as 0
    normalised = ((grouped - mean) / (nanstd(grouped, dim=1, keepdim=True) + eps)).view_as(per_function)
    summed = torch.nansum(normalised * weights.unsqueeze(0), dim=1)
    return torch.where(unscorable(per_function), torch.nan, summed)


def batch_advantages(
    rewards: torch.Tensor,
    eps: float = 1e-4,
    batch_mean: torch.Tensor | float | None = None,
    batch_std: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """`(r - mean_batch) / (std_batch + eps)` [N] over scorable (non-NaN) rewards; unscorable ones get 0.

    GDPO's last step (arXiv 2601.05242, eq. 5). Pass `batch_mean` and `batch_std` when the batch spans processes.
    """
    mean = torch.nanmean(rewards) if batch_mean is None else batch_mean
    std = nanstd(rewards) if batch_std is None else batch_std
    std = torch.nan_to_num(torch.as_tensor(std, dtype=rewards.dtype), nan=0.0)
    return torch.nan_to_num((rewards - mean) / (std + eps), nan=0.0)
