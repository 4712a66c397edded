"""The built-in rewards: the seeds' exact scores, both completion shapes, missing gold, unknown columns."""

from __future__ import annotations

import functools

import pytest

from rlvr.rewards import (
    accuracy,
    answer_content,
    answer_tag_accuracy,
    answer_tag_loose,
    answer_tag_strict,
    boxed_exact,
    gsm8k_correctness,
    length_penalty,
    math_verifier,
    overlong_penalty,
    xml_format,
)
from rlvr.rewards.functions import think_answer_format


def call(fn, completion, **columns):
    """Score one completion twice, as a string and as chat messages, and check both agree."""
    as_text = fn(prompts=["q"], completions=[completion], **columns)
    as_chat = fn(
        prompts=[[{"role": "user", "content": "q"}]],
        completions=[[{"role": "assistant", "content": completion}]],
        **columns,
    )
    assert as_text == as_chat
    return as_text[0]


@pytest.mark.parametrize(
    ("completion", "gold", "expected"),
    [
        (r"...Calculating the answer. \boxed{72}", "72", 1.0),  # seed 002's positive example
        (r"...Calculating the answer \boxed{71}", "72", 0.0),  # and its negative one
        (r"\boxed{72.0}", "72", 0.0),  # exact string match, as in the seed
        (r"\boxed{1} no, \boxed{72}", "72", 1.0),  # the last box
        (r"\boxed{ 72 }", "72", 1.0),
        ("72", "72", 0.0),  # no box
        (r"\boxed{72}", "#### 72", 1.0),  # a raw GSM8K gold is parsed
    ],
)
def test_boxed_exact(completion, gold, expected):
    assert call(boxed_exact, completion, ground_truth=[gold]) == expected


@pytest.mark.parametrize(
    ("completion", "loose", "strict"),
    [
        ("<answer>4个0</answer>", 5.0, 10.0),  # seed 001's few-shot answer
        ("I count: <answer>4</answer> zeros", 5.0, 0.0),
        ("<answer>4</answer>\n", 5.0, 10.0),  # trailing newline before EOS is allowed
        ("<answer>line one\nline two</answer>", 5.0, 10.0),  # content over lines
        ("<answer></answer>", 0.0, 0.0),  # nothing inside
        ("<answer>4", 0.0, 0.0),
        ("4", 0.0, 0.0),
    ],
)
def test_answer_tag_loose_and_strict(completion, loose, strict):
    assert call(answer_tag_loose, completion) == loose
    assert call(answer_tag_strict, completion) == strict


def test_answer_tags_take_another_tag_name():
    assert call(answer_tag_loose, "<label>x</label>", tag="label") == 5.0
    assert call(answer_tag_strict, "<label>x</label>", tag="label") == 10.0
    assert call(answer_tag_loose, "<answer>x</answer>", tag="label") == 0.0
    # Bound with functools.partial, as a trainer config would.
    assert functools.partial(answer_tag_strict, tag="label")(
        prompts=["q"], completions=["<label>x</label>"]
    ) == [10.0]
    # Or as a dataset column, one tag per row.
    assert answer_tag_loose(prompts=["q", "q"], completions=["<a>1</a>", "<b>1</b>"], tag=["a", "a"]) == [
        5.0,
        0.0,
    ]


@pytest.mark.parametrize(
    ("completion", "gold", "expected"),
    [
        ("<answer>short</answer>", "a reference summary", 5.0),  # shorter than the gold: seed 001's rule
        ("<answer>a much longer summary than that</answer>", "a reference summary", 0.0),
        ("<answer>same length here</answer>", "same length here", 0.0),  # equal is not shorter
        ("no tags at all", "a reference summary", 0.0),
        ("<answer>...</answer>", "a reference summary", 0.0),  # a placeholder is no content
    ],
)
def test_answer_content(completion, gold, expected):
    assert call(answer_content, completion, answer=[gold]) == expected


@pytest.mark.parametrize(
    ("completion", "gold", "expected"),
    [
        ("<reasoning>48+24</reasoning><answer>72</answer>", "72", 2.0),  # exact
        ("<answer> 72 </answer>", "72", 2.0),  # stripped, as in the seed
        ("<answer>72.0</answer>", "72", 1.5),  # numerically equal
        ("<answer>72 clips</answer>", "72", 1.5),
        ("<answer>$1,000</answer>", "1000", 1.5),
        ("<answer>She sold 72 clips</answer>", "72", 1.5),  # one number in the text
        ("<answer>48 + 24 = 72</answer>", "72", 0.0),  # three numbers: not a single answer
        ("<answer>71</answer>", "72", 0.0),
        ("<answer>...</answer>", "72", 0.0),
        ("72", "72", 0.0),  # no tag
        ("<answer>72</answer>", "#### 72", 2.0),
    ],
)
def test_gsm8k_correctness(completion, gold, expected):
    assert call(gsm8k_correctness, completion, answer=[gold]) == expected


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("<reasoning>r</reasoning>\n<answer>a</answer>", 0.8),
        ("<reasoning>r</reasoning>", 0.4),
        ("<reasoning>r<answer>a", 0.4),
        ("<reasoning>r</reasoning><answer>a", 0.6),  # 3 / 5, not 0.6000000000000001
        ("<answer>a</answer><answer>b</answer>", 0.4),  # presence, not count
        ("nothing", 0.0),
    ],
)
def test_xml_format(completion, expected):
    assert call(xml_format, completion) == expected


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("<think>x</think><answer>y</answer>", True),
        ("<think>a\nb</think><answer>c\nd</answer>", True),
        ("<think>x</think> <answer>y</answer>", False),  # nothing between the tags
        (" <think>x</think><answer>y</answer>", False),  # nor before
        ("<think>x</think><answer>y</answer>\n", False),  # nor after
        ("<think>x</think><think>x</think><answer>y</answer>", False),
        ("<think>x</think><answer>y</answer><answer>z</answer>", False),
        ("<answer>y</answer>", False),
    ],
)
def test_think_answer_format(completion, expected):
    assert think_answer_format(completion) is expected


@pytest.mark.parametrize(
    ("completion", "gold", "expected"),
    [
        ("<think>sqrt(400) = 20</think><answer>400</answer>", "400", 1.5),  # format and accuracy
        ("<think>t</think><answer>$400$</answer>", "$400$", 1.5),  # align-anything golds are $-wrapped
        ("<think>t</think><answer>\\boxed{\\frac{1}{2}}</answer>", "0.5", 1.5),
        ("<think>t</think><answer>The answer is \\boxed{400}</answer>", "400", 1.5),  # the box inside the tag
        ("Thinking... <answer>400</answer>", "400", 1.0),  # accuracy only
        ("<think>t</think><answer>20</answer>", "400", 0.5),  # format only
        (r"<think>t</think><answer>So $x = \frac13$</answer>", r"$\frac{1}{3}$", 1.5),  # formula in the tag
        ("400", "400", 0.0),  # no answer tag, no accuracy
    ],
)
def test_math_verifier(completion, gold, expected):
    assert call(math_verifier, completion, answer=[gold]) == expected


@pytest.mark.parametrize(
    ("completion", "gold", "expected"),
    [
        (r"so \boxed{\frac{1}{2}}", "0.5", 1.0),
        (r"\boxed{72.00}", "72", 1.0),
        ("<answer>1,000</answer>", "1000", 1.0),
        ("48/2 = 24\n#### 72", "72", 1.0),
        ("The answer is 18 dollars.", "18", 1.0),
        ("First 3 then 4", "4", 1.0),  # the last number
        (r"\boxed{-3}", "3", 0.0),
        (r"\boxed{(1, 2]}", "(1,2]", 1.0),
        (r"The answer is $\frac13$.", r"$\frac{1}{3}$", 1.0),  # math mode on both sides, no box
        (r"\boxed{1}, \boxed{2}", r"\{1,2\}", 1.0),  # boxes in a row are one answer
        ("The code is AZYUK2A", "2", 0.0),  # a digit inside a word is no answer
        ("no answer", "5", 0.0),
    ],
)
def test_accuracy(completion, gold, expected):
    assert call(accuracy, completion, answer=[gold]) == expected


@pytest.mark.parametrize(
    ("completion", "gold", "expected"),
    [
        ("<answer>12</answer>", "12", 1.0),
        ("7 + 5 = 12, <answer>12.0</answer>", "12", 1.0),  # math_equal, not string equality
        ("<answer>The answer is 12.</answer>", "12", 1.0),  # the tag's content read as `accuracy` reads it
        ("<answer>5</answer> no wait, <answer>12</answer>", "12", 1.0),  # the last tag counts
        ("<answer>12</answer> no wait, <answer>5</answer>", "12", 0.0),
        ("7 + 5 = 12", "12", 0.0),  # right, but not in the asked-for form
        (r"\boxed{12}", "12", 0.0),
        ("<answer>12", "12", 0.0),  # an unclosed tag is no answer
        ("<answer>13</answer>", "12", 0.0),
    ],
)
def test_answer_tag_accuracy_needs_the_right_answer_inside_the_tags(completion, gold, expected):
    assert call(answer_tag_accuracy, completion, answer=[gold]) == expected


def test_answer_tag_accuracy_without_gold_is_not_applicable():
    assert answer_tag_accuracy(prompts=["q"], completions=["<answer>1</answer>"], answer=[None]) == [None]


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (0, 0.0),
        (768, 0.0),  # 1024 - 256: the last length without penalty
        (832, -0.25),  # 64 of 256 into the cache
        (896, -0.5),
        (1024, -1.0),  # the limit itself
        (1025, -1.0),  # beyond: -1
    ],
)
def test_overlong_penalty_in_tokens(length, expected):
    assert overlong_penalty(prompts=["q"], completions=["x"], completion_ids=[[7] * length]) == [expected]
    assert overlong_penalty(prompts=["q"], completions=["x"], completion_length=[length]) == [expected]


def test_overlong_penalty_counts_characters_without_token_ids():
    # 100 characters, limits 100 / 20: the last character of the cache gives -1.
    assert overlong_penalty(prompts=["q"], completions=["a" * 90], max_length=100, cache_length=20) == [-0.5]
    assert overlong_penalty(
        prompts=["q"],
        completions=[[{"role": "assistant", "content": "a" * 80}]],
        max_length=100,
        cache_length=20,
    ) == [0.0]


def test_length_penalty_within_groups():
    # Group "p": lengths 9, 14, 19 characters -> lam = 0.5, 0.0, -0.5; the third is wrong: min(0, -0.5).
    # Group "r": equal lengths -> 0. Group "s": no gold -> None.
    completions = [r"\boxed{4}", r"then \boxed{4}", r"long long \boxed{5}", "a", "b", "c"]
    prompts = ["p", "p", "p", "r", "r", "s"]
    answer = ["4", "4", "4", "1", "1", None]
    assert length_penalty(prompts=prompts, completions=completions, answer=answer) == [
        0.5,
        0.0,
        -0.5,
        0.0,
        0.0,
        None,
    ]


def test_length_penalty_wrong_short_answer_is_not_rewarded():
    # Shortest but wrong: lam = 0.5, min(0, 0.5) = 0.
    rewards = length_penalty(prompts=["p", "p"], completions=["1", "so it is 2"], answer=["2", "2"])
    assert rewards == [0.0, -0.5]


GOLD_REWARDS = [boxed_exact, answer_content, gsm8k_correctness, math_verifier, accuracy, length_penalty]


@pytest.mark.parametrize("fn", GOLD_REWARDS, ids=lambda fn: fn.__name__)
def test_no_gold_means_not_applicable(fn):
    assert fn(prompts=["q"], completions=["<answer>1</answer>"]) == [None]


@pytest.mark.parametrize("fn", GOLD_REWARDS, ids=lambda fn: fn.__name__)
def test_answer_wins_over_ground_truth(fn):
    completion = "<think>t</think><answer>\\boxed{7}</answer>"
    both = fn(prompts=["q"], completions=[completion], answer=["7"], ground_truth=["8"])
    answer_only = fn(prompts=["q"], completions=[completion], answer=["7"])
    assert both == answer_only


ALL_REWARDS = GOLD_REWARDS + [answer_tag_loose, answer_tag_strict, xml_format, overlong_penalty]


@pytest.mark.parametrize("fn", ALL_REWARDS, ids=lambda fn: fn.__name__)
def test_unknown_columns_are_ignored_and_one_value_per_completion(fn):
    # What TRL passes besides the dataset columns.
    extra = {"trainer_state": object(), "log_extra": print, "log_metric": print, "difficulty": ["easy"] * 3}
    completions = ["<answer>7</answer>", r"\boxed{7}", ""]
    rewards = fn(
        prompts=["q"] * 3, completions=completions, answer=["7"] * 3, completion_ids=[[1], [2], []], **extra
    )
    assert len(rewards) == 3
    assert all(r is None or isinstance(r, float) for r in rewards)
