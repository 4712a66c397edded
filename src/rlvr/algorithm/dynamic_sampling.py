"""DAPO's dynamic sampling: train on groups whose rewards differ, drawing more prompts to fill the batch.

DAPO (Yu et al. 2025, arXiv:2503.14476, sec. 3.2 "Dynamic Sampling") over-samples and filters the batch to
prompts whose G outputs are neither all right nor all wrong, eq. 11's constraint
`0 < |{o_i : is_equivalent(a, o_i)}| < G`. A group whose rewards are all equal has advantage 0 everywhere:
it adds no gradient but takes a place in the batch. For any reward, not only a 0/1 one, a group is
*informative* when its scorable rewards are not all equal (`zero_range_groups` is False).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class GroupSelection:
    """Which drawn groups a step trains on, and the counts the trainer logs."""

    groups: list[int]  # indices into the drawn groups, in draw order
    kept: int  # informative groups trained on
    filled: int  # zero-variance groups trained on because too few were informative
    dropped: int  # drawn groups not trained on: zero-variance ones, and informative ones past the quota


def select_groups(informative: torch.Tensor, quota: int) -> GroupSelection:
    """The first `quota` informative groups in draw order; when fewer were drawn, all of them plus the first
    zero-variance groups as filler (their advantage is 0), so the batch keeps its size.

    informative: [groups drawn] bool, at least `quota` of them.

    >>> select_groups(torch.tensor([False, True, False, True, True]), quota=2)
    GroupSelection(groups=[1, 3], kept=2, filled=0, dropped=3)
    >>> select_groups(torch.tensor([False, True, False]), quota=2)  # short: group 0 fills the gap
    GroupSelection(groups=[0, 1], kept=1, filled=1, dropped=1)
    """
    if informative.numel() < quota:
        raise ValueError(f"{informative.numel()} groups drawn, fewer than the quota of {quota}")
    chosen = torch.nonzero(informative).flatten().tolist()[:quota]
    filler = torch.nonzero(~informative).flatten().tolist()[: quota - len(chosen)]
    return GroupSelection(
        groups=sorted(chosen + filler),
        kept=len(chosen),
        filled=len(filler),
        dropped=informative.numel() - quota,
    )
