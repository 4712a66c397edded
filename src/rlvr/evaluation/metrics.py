"""The figures of an evaluation and the statistics of comparing two: pass@k, maj@k, Wilson and Newcombe
intervals, the exact McNemar test and a paired bootstrap. Pure functions of counts and lists, no model."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

# 97.5th percentile of the standard normal: two-sided 95% intervals.
Z_95 = 1.959963984540054


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chance that at least one of k samples drawn without replacement from n (c of them correct) is correct.

    The unbiased estimator of Chen et al. (2021), 1 - C(n-c, k) / C(n, k), computed as the product
    1 - prod_{i=n-c+1}^{n} (1 - k / i): the binomials overflow floats for n past about 1000, the product
    does not.

    >>> pass_at_k(4, 1, 1)
    0.25
    >>> pass_at_k(4, 0, 4), pass_at_k(4, 1, 4)
    (0.0, 1.0)
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:  # every draw of k samples holds a correct one
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """pass@k averaged over problems, from (samples, correct samples) per problem.

    >>> mean_pass_at_k([(2, 1), (2, 0)], 1)  # (1/2 + 0) / 2
    0.25
    """
    if not counts:
        return math.nan
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def majority_vote(
    answers: Sequence[str | None], equal: Callable[[str, str], bool] | None = None
) -> tuple[str | None, int]:
    """The most common answer among `answers` and how many votes it got; None answers do not vote.

    Answers are grouped when `equal(a, b)` (e.g. `math_equal`, so "0.5" and "\\frac{1}{2}" vote together);
    without it, when their stripped text is the same. Each group is represented by its first answer, and a tie
    goes to the group seen first.

    >>> majority_vote(["7", "12", " 12", None, "7", "12"])
    ('12', 3)
    >>> majority_vote([None, None])
    (None, 0)
    """
    groups: list[tuple[str, int]] = []  # (representative, votes), in order of first appearance
    by_text: dict[str, int] = {}  # exact text -> group index, so equal() runs once per distinct text
    for answer in answers:
        if answer is None:
            continue
        text = answer.strip()
        index = by_text.get(text)
        if index is None and equal is not None:
            index = next((i for i, (rep, _) in enumerate(groups) if equal(text, rep)), None)
        if index is None:
            groups.append((text, 0))
            index = len(groups) - 1
        by_text[text] = index
        rep, votes = groups[index]
        groups[index] = (rep, votes + 1)
    if not groups:
        return None, 0
    best = max(range(len(groups)), key=lambda i: (groups[i][1], -i))
    return groups[best]


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a proportion: unlike p +- z*SE it stays inside [0, 1] and is not of zero
    width at 0/n or n/n.

    >>> lo, hi = wilson_interval(0, 10)
    >>> round(lo, 4), round(hi, 4)
    (0.0, 0.2775)
    """
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def paired_table(before: Sequence[bool], after: Sequence[bool]) -> dict[str, int]:
    """The 2x2 table of two paired runs: both right, right only before (lost), right only after (gained), both
    wrong.

    >>> paired_table([True, True, False, False], [True, False, True, True])
    {'both_correct': 1, 'lost': 1, 'gained': 2, 'both_wrong': 0}
    """
    if len(before) != len(after):
        raise ValueError(f"paired runs need the same problems, got {len(before)} and {len(after)}")
    pairs = list(zip(map(bool, before), map(bool, after), strict=True))
    return {
        "both_correct": pairs.count((True, True)),
        "lost": pairs.count((True, False)),
        "gained": pairs.count((False, True)),
        "both_wrong": pairs.count((False, False)),
    }


def mcnemar_exact(lost: int, gained: int) -> float:
    """Two-sided exact McNemar p-value: only discordant problems carry information, and if the two models
    were equally good each would fall either way with probability 1/2: lost ~ Binomial(lost + gained, 1/2).

    >>> mcnemar_exact(1, 5)  # 2 * (C(6,0) + C(6,1)) / 2^6 = 2 * 7 / 64
    0.21875
    >>> mcnemar_exact(0, 0)
    1.0
    """
    n = lost + gained
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(lost, gained) + 1))
    # Python's int / int division is correctly rounded even when 2^n is far beyond the float range.
    return min(1.0, 2 * tail / 2**n)


def paired_difference_interval(table: dict[str, int], z: float = Z_95) -> tuple[float, float]:
    """95% interval for accuracy(after) - accuracy(before) on the same problems: Newcombe's (1998) method 10,
    Wilson intervals of the two accuracies combined with the correlation of the paired outcomes.

    It keeps its coverage with few discordant pairs, where the Wald interval (b - c)/n +- z*SE collapses to a
    point. `table` is `paired_table`'s output.

    >>> lo, hi = paired_difference_interval({"both_correct": 5, "lost": 0, "gained": 0, "both_wrong": 5})
    >>> round(lo, 4), round(hi, 4)
    (-0.1666, 0.1666)
    """
    a, lost, gained, d = table["both_correct"], table["lost"], table["gained"], table["both_wrong"]
    n = a + lost + gained + d
    if n == 0:
        return (math.nan, math.nan)
    p_after, p_before = (a + gained) / n, (a + lost) / n
    lo_after, hi_after = wilson_interval(a + gained, n, z)
    lo_before, hi_before = wilson_interval(a + lost, n, z)
    phi = _newcombe_phi(a, lost, gained, d)
    diff = p_after - p_before
    down = math.sqrt(
        max(
            0.0,
            (p_after - lo_after) ** 2
            - 2 * phi * (p_after - lo_after) * (hi_before - p_before)
            + (hi_before - p_before) ** 2,
        )
    )
    up = math.sqrt(
        max(
            0.0,
            (hi_after - p_after) ** 2
            - 2 * phi * (hi_after - p_after) * (p_before - lo_before)
            + (p_before - lo_before) ** 2,
        )
    )
    return (max(-1.0, diff - down), min(1.0, diff + up))


def _newcombe_phi(a: int, b: int, c: int, d: int) -> float:
    """Correlation of the two runs' outcomes with Newcombe's correction: ad - bc is moved n/2 towards 0 when
    positive (0 when within n/2), and phi is 0 when a margin is empty."""
    n = a + b + c + d
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    if margins == 0:
        return 0.0
    cross = a * d - b * c
    corrected = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0.0)
    return corrected / math.sqrt(margins)


def paired_bootstrap(
    before: Sequence[bool], after: Sequence[bool], num_resamples: int = 10_000, seed: int = 0
) -> dict[str, float]:
    """Resample problems with replacement; the 2.5/97.5 percentiles of the accuracy difference are a 95%
    interval, and twice the smaller share of resamples on either side of 0 is a two-sided p-value.

    >>> paired_bootstrap([True] * 4, [True] * 4, num_resamples=100)["p_value"]  # no difference ever
    1.0
    """
    import numpy as np

    if len(before) != len(after) or not before:
        raise ValueError("the bootstrap needs two equally long, non-empty lists of outcomes")
    rng = np.random.default_rng(seed)
    diff = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    picks = rng.integers(0, len(diff), size=(num_resamples, len(diff)))
    means = diff[picks].mean(axis=1)
    below, above = float((means <= 0).mean()), float((means >= 0).mean())
    return {
        "low": float(np.percentile(means, 2.5)),
        "high": float(np.percentile(means, 97.5)),
        "p_value": min(1.0, 2 * min(below, above)),
        "num_resamples": num_resamples,
    }
