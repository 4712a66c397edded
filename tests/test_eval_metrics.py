"""pass@k, maj@k, intervals and paired tests against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from rlvr.evaluation.evaluate import problem_record, summarize
from rlvr.evaluation.metrics import (
    majority_vote,
    mcnemar_exact,
    mean_pass_at_k,
    paired_bootstrap,
    paired_difference_interval,
    paired_table,
    pass_at_k,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (4, 1, 1, 0.25),  # 1 - C(3,1)/C(4,1) = 1 - 3/4
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (10, 3, 5, 11 / 12),  # 1 - C(7,5)/C(10,5) = 1 - 21/252 = 1 - 1/12
        (4, 1, 4, 1.0),  # k = n: every draw holds the one correct sample
        (4, 0, 4, 0.0),  # k = n, all wrong
        (10, 0, 1, 0.0),  # all wrong
        (10, 0, 5, 0.0),  # all wrong, k > 1: C(10,5)/C(10,5) = 1
        (3, 3, 1, 1.0),  # all right
        (5, 3, 3, 1.0),  # n - c = 2 < k = 3: C(2,3) = 0
        (2000, 1, 1000, 0.5),  # C(1999,1000)/C(2000,1000) = 1000/2000; the binomials (~1e600) overflow floats
    ],
)
def test_pass_at_k(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(4, 5, 1), (4, 1, 5), (4, 1, 0), (4, -1, 1)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_mean_pass_at_k_averages_problems():
    # k=2 on n=4: (1 right) 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5; (0 right) 0; (4 right) 1; mean 1.5 / 3
    assert mean_pass_at_k([(4, 1), (4, 0), (4, 4)], 2) == pytest.approx(0.5)
    assert math.isnan(mean_pass_at_k([], 1))


def _math_equal(a: str, b: str) -> bool:
    from rlvr.rewards import math_equal

    return math_equal(a, b)


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (
            ["0.5", r"\frac{1}{2}", "1/3", "1/3", "1/2"],
            ("0.5", 3),
        ),  # three ways of writing one half outvote 1/3
        (["1,000", "1000", "999"], ("1,000", 2)),  # thousands comma
        (["$18", "18 dollars", "18.00", "17"], ("$18", 3)),
        (["7", "12"], ("7", 1)),  # a tie goes to the answer seen first
        ([None, "3", None], ("3", 1)),  # no answer does not vote
        ([None, None], (None, 0)),
    ],
)
def test_majority_vote_groups_equal_answers(answers, expected):
    assert majority_vote(answers, _math_equal) == expected


def test_majority_vote_without_equal_compares_text():
    # "0.5" and "1/2" are different strings: 0.5 wins on first appearance, 1 vote each
    assert majority_vote(["0.5", "1/2", " 0.5 "]) == ("0.5", 2)


def test_maj_at_k_with_equivalent_answers_written_differently():
    completions = [r"so \boxed{0.5}", r"\boxed{\frac{1}{2}}", r"\boxed{3}"]
    record = problem_record(
        0,
        {"question": "Half of 1?", "answer": "1/2"},
        completions,
        [1.0, 1.0, 0.0],
        [5, 9, 4],
        [False, False, False],
        "boxed",
        _math_equal,
    )
    assert (record["majority"], record["majority_votes"], record["maj_correct"]) == ("0.5", 2, True)
    assert record["num_correct"] == 2
    wrong = problem_record(
        1,
        {"question": "Half of 1?", "answer": "1/2"},
        [r"\boxed{3}", r"\boxed{3.0}", r"\boxed{0.5}"],
        [0.0, 0.0, 1.0],
        [4, 5, 5],
        [False, False, False],
        "boxed",
        _math_equal,
    )
    assert (wrong["majority"], wrong["maj_correct"]) == ("3", False)  # 3 and 3.0 outvote the right 0.5


def test_summarize_with_samples():
    def sample(correct: bool, length: int, formatted: bool = True) -> dict:
        return {
            "correct": correct,
            "reward": float(correct),
            "formatted": formatted,
            "truncated": length >= 8,
            "length": length,
        }

    # problem A: samples right, wrong (first right); problem B: wrong, wrong; 2 samples each
    a = {
        **sample(True, 4),
        "samples": [sample(True, 4), sample(False, 8, False)],
        "num_correct": 1,
        "maj_correct": True,
    }
    b = {
        **sample(False, 6),
        "samples": [sample(False, 6), sample(False, 8)],
        "num_correct": 0,
        "maj_correct": False,
    }
    s = summarize([a, b], num_samples=2, seconds=0.5)
    assert s["accuracy"] == 0.5  # first samples: right, wrong
    assert s["pass@1"] == pytest.approx(0.25)  # (1/2 + 0/2) / 2
    assert s["pass@2"] == pytest.approx(0.5)  # (1 + 0) / 2: k = n, any right sample counts
    assert s["maj@2"] == 0.5
    assert s["format_rate"] == 0.75  # 3 of 4 completions
    assert s["truncation_rate"] == 0.5  # the two of length 8
    assert s["mean_length"] == 6.5  # (4 + 8 + 6 + 8) / 4
    assert s["mean_reward"] == 0.25
    assert s["problems_per_second"] == 4.0  # 2 problems in 0.5 s


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        # z^2 = 3.8415; centre = (p + z^2/2n) / (1 + z^2/n); half = z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n)
        (0, 10, 0.0, 0.27753),  # centre = 0.19207 / 1.38415 = 0.13876 = half
        (5, 10, 0.23659, 0.76341),  # centre 0.5, half = 1.96 * sqrt(0.025 + 0.0096) / 1.38415 = 0.26341
        (10, 10, 0.72247, 1.0),  # mirror of 0/10
    ],
)
def test_wilson_interval(successes, n, low, high):
    assert wilson_interval(successes, n) == pytest.approx((low, high), abs=1e-5)


def test_mcnemar_on_constructed_table():
    before = [True] * 10 + [True] * 2 + [False] * 8 + [False] * 5
    after = [True] * 10 + [False] * 2 + [True] * 8 + [False] * 5
    table = paired_table(before, after)
    assert table == {"both_correct": 10, "lost": 2, "gained": 8, "both_wrong": 5}
    # 10 discordant, the smaller side 2: p = 2 (C(10,0) + C(10,1) + C(10,2)) / 2^10 = 2 (1 + 10 + 45) / 1024
    assert mcnemar_exact(table["lost"], table["gained"]) == pytest.approx(112 / 1024)


@pytest.mark.parametrize(
    ("lost", "gained", "expected"),
    [
        (0, 6, 2 / 64),  # 2 C(6,0) / 2^6
        (6, 0, 2 / 64),  # two-sided: symmetric
        (3, 3, 1.0),  # 2 (1 + 6 + 15 + 20) / 64 = 84/64, capped at 1
        (0, 0, 1.0),  # no discordant pair, no evidence
        (1, 5, 14 / 64),  # 2 (C(6,0) + C(6,1)) / 2^6
    ],
)
def test_mcnemar_exact(lost, gained, expected):
    assert mcnemar_exact(lost, gained) == pytest.approx(expected)


def test_paired_difference_interval_altman_example():
    # Altman et al. (2000), Statistics with Confidence, table 6.2: both right 14, only the second run 5, only
    # the first 0, neither 22 (n = 41). Accuracies 19/41 = 0.46341 (Wilson 0.32056-0.61254) and
    # 14/41 = 0.34146 (Wilson 0.21559-0.49450); phi = (14*22 - 0*5 - 41/2) / sqrt(19*22*14*27) = 287.5 / 397.497 = 0.72328.
    # down = sqrt(0.14285^2 - 2 phi 0.14285 0.15304 + 0.15304^2)
    #      = sqrt(0.020407 - 0.031624 + 0.023421) = 0.11047
    # up   = sqrt(0.14912^2 - 2 phi 0.14912 0.12588 + 0.12588^2)
    #      = sqrt(0.022237 - 0.027153 + 0.015845) = 0.10454
    # difference 5/41 = 0.12195: interval 0.12195 - 0.11047 = 0.01148 to 0.12195 + 0.10454 = 0.22650
    table = {"both_correct": 14, "lost": 0, "gained": 5, "both_wrong": 22}
    assert paired_difference_interval(table) == pytest.approx((0.01148, 0.22650), abs=1e-4)
    flipped = {"both_correct": 14, "lost": 5, "gained": 0, "both_wrong": 22}
    assert paired_difference_interval(flipped) == pytest.approx((-0.22650, -0.01148), abs=1e-4)


def test_paired_difference_interval_without_discordant_pairs_is_not_a_point():
    # Wald would give 0 +- 0. Wilson(5, 10) = 0.23659-0.76341, so both distances are 0.26341; Newcombe's phi =
    # (25 - 10/2) / sqrt(5^4) = 0.8; half width = 0.26341 sqrt(2 - 2 * 0.8) = 0.26341 * 0.63246 = 0.16660
    table = {"both_correct": 5, "lost": 0, "gained": 0, "both_wrong": 5}
    assert paired_difference_interval(table) == pytest.approx((-0.16660, 0.16660), abs=1e-4)


def test_paired_bootstrap():
    same = paired_bootstrap([True, False] * 10, [True, False] * 10, num_resamples=200)
    assert (same["low"], same["high"], same["p_value"]) == (0.0, 0.0, 1.0)
    all_gained = paired_bootstrap([False] * 20, [True] * 20, num_resamples=200)
    assert (all_gained["low"], all_gained["high"], all_gained["p_value"]) == (1.0, 1.0, 0.0)
    before, after = [True, False, True, False, False] * 4, [True, True, False, True, False] * 4
    first = paired_bootstrap(before, after, num_resamples=500, seed=3)
    assert first == paired_bootstrap(before, after, num_resamples=500, seed=3)  # seeded
    assert first["low"] < 0.2 < first["high"]  # the observed difference, (8 - 4) / 20, lies inside
