"""The built-in rewards, each registered by name, with the scores of the tutorial (seed) it comes from.

Every reward follows TRL's contract: `fn(prompts, completions, **columns) -> list[float | None]`, called by keyword;
a completion is a string or `[{"role": "assistant", "content": text}]`; the gold final answer comes from the
`answer` column, else `ground_truth`; unknown columns are ignored; None means "not applicable" (no gold).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from rlvr.rewards.equivalence import math_equal_many, numeric_equal
from rlvr.rewards.extraction import (
    completion_text,
    extract_answer,
    extract_answer_content,
    extract_answer_tag,
    extract_boxed,
    find_numbers,
    gold_answers,
    gold_choices,
)
from rlvr.rewards.registry import register_reward


def _texts(completions: Sequence[Any]) -> list[str]:
    return [completion_text(c) for c in completions]


@register_reward("boxed_exact")
def boxed_exact(prompts, completions, answer=None, ground_truth=None, **kwargs) -> list[float | None]:
    """1.0 when the last `\\boxed{}` holds exactly the gold answer (one of them, for a row with several), else 0.0
    (seed 002, GSM8K online RL).

    >>> boxed_exact(prompts=["q", "q"], completions=[r"so \\boxed{72}", r"so \\boxed{71}"], ground_truth=["72", "72"])
    [1.0, 0.0]
    """
    golds = gold_choices(len(completions), answer, ground_truth)
    return [
        None if gold is None else float(extract_boxed(text) in gold)
        for text, gold in zip(_texts(completions), golds, strict=True)
    ]


def _tags(tag: Any, count: int) -> list[str]:
    # `tag` is a keyword (bind it with functools.partial) or a dataset column with one tag name per row.
    if isinstance(tag, str):
        return [tag] * count
    return [str(t) if t is not None else "answer" for t in gold_answers(count, tag, raw=True)]


@register_reward("answer_tag_loose")
def answer_tag_loose(prompts, completions, tag: Any = "answer", **kwargs) -> list[float]:
    """5.0 when the completion contains `<tag>...</tag>` with something inside, anywhere, else 0.0 (seed 001).

    >>> answer_tag_loose(prompts=["q"] * 2, completions=["I think <answer>4</answer>.", "4"])
    [5.0, 0.0]
    """
    tags = _tags(tag, len(completions))
    return [
        5.0 if re.search(f"<{re.escape(t)}>.+</{re.escape(t)}>", text, re.DOTALL) else 0.0
        for text, t in zip(_texts(completions), tags, strict=True)
    ]


@register_reward("answer_tag_strict")
def answer_tag_strict(prompts, completions, tag: Any = "answer", **kwargs) -> list[float]:
    """10.0 when the completion is nothing but `<tag>...</tag>` (surrounding whitespace allowed), else 0.0 (seed 001).

    >>> answer_tag_strict(prompts=["q"] * 2, completions=["<answer>4</answer>\\n", "So <answer>4</answer>"])
    [10.0, 0.0]
    """
    tags = _tags(tag, len(completions))
    return [
        10.0 if re.fullmatch(f"<{re.escape(t)}>.+</{re.escape(t)}>", text.strip(), re.DOTALL) else 0.0
        for text, t in zip(_texts(completions), tags, strict=True)
    ]


@register_reward("answer_content")
def answer_content(prompts, completions, answer=None, ground_truth=None, tag: Any = "answer", **kwargs):
    """5.0 when the `<tag>` content is shorter (in characters) than the gold answer, else 0.0 (seed 001).

    Seed 001 trains TL;DR summaries: the gold is a reference summary and a shorter one earns the reward. (Its
    docstring says "longer"; its code, which gives the scores, rewards `len(gold) - len(content) > 0`.)

    >>> answer_content(prompts=["q"] * 2, completions=["<answer>short</answer>", "<answer>much too long</answer>"],
    ...                answer=["a reference"] * 2)
    [5.0, 0.0]
    """
    golds = gold_choices(len(completions), answer, ground_truth, raw=True)
    tags = _tags(tag, len(completions))
    rewards: list[float | None] = []
    for text, gold, t in zip(_texts(completions), golds, tags, strict=True):
        content = extract_answer_tag(text, t)
        if gold is None:
            rewards.append(None)
        else:  # several references: shorter than any of them
            rewards.append(5.0 if content is not None and len(content) < max(map(len, gold)) else 0.0)
    return rewards


def _single_number_equal(pred: str, gold: str) -> bool:
    """Seed 003's numeric check: each side reads as one number (units and commas allowed), and they are equal."""
    if numeric_equal(pred, gold):
        return True
    pred_numbers, gold_numbers = find_numbers(pred), find_numbers(gold)
    return (
        len(pred_numbers) == 1 and len(gold_numbers) == 1 and numeric_equal(pred_numbers[0], gold_numbers[0])
    )


@register_reward("gsm8k_correctness")
def gsm8k_correctness(prompts, completions, answer=None, ground_truth=None, **kwargs) -> list[float | None]:
    """2.0 when the `<answer>` content equals the gold string, 1.5 when it is numerically equal, else 0.0 (seed 003).

    >>> gsm8k_correctness(prompts=["q"] * 3, answer=["72"] * 3,
    ...                   completions=["<answer>72</answer>", "<answer>72 clips</answer>", "<answer>71</answer>"])
    [2.0, 1.5, 0.0]
    """
    golds = gold_choices(len(completions), answer, ground_truth)
    rewards: list[float | None] = []
    for text, gold in zip(_texts(completions), golds, strict=True):
        pred = extract_answer_tag(text)
        if gold is None:
            rewards.append(None)
        elif pred is None:
            rewards.append(0.0)
        elif pred in gold:
            rewards.append(2.0)
        else:
            rewards.append(1.5 if any(_single_number_equal(pred, g) for g in gold) else 0.0)
    return rewards


_XML_TAGS = ("<reasoning>", "</reasoning>", "<answer>", "</answer>")


@register_reward("xml_format")
def xml_format(prompts, completions, **kwargs) -> list[float]:
    """0.2 for each of `<reasoning>`, `</reasoning>`, `<answer>`, `</answer>` present, at most 0.8 (seed 003).

    >>> xml_format(prompts=["q"] * 2, completions=["<reasoning>4+3</reasoning><answer>7</answer>", "<answer>7"])
    [0.8, 0.2]
    """
    # n / 5 rather than 0.2 * n: 0.2 * 3 is 0.6000000000000001 in floating point.
    return [sum(tag in text for tag in _XML_TAGS) / 5 for text in _texts(completions)]


_THINK_ANSWER = re.compile(
    r"<think>(?:(?!</think>).)*</think><answer>(?:(?!</answer>).)*</answer>", re.DOTALL
)


def think_answer_format(text: str) -> bool:
    """Exactly one `<think>...</think>` followed directly by one `<answer>...</answer>` and nothing else.

    >>> think_answer_format("<think>2+2</think><answer>4</answer>"), think_answer_format("<think>a</think> <answer>4</answer>")
    (True, False)
    """
    return bool(_THINK_ANSWER.fullmatch(text)) and text.count("<think>") == 1 and text.count("<answer>") == 1


@register_reward("math_verifier")
def math_verifier(prompts, completions, answer=None, ground_truth=None, **kwargs) -> list[float | None]:
    """`0.5 * format + accuracy` (seed 000, align-anything's math verifier): 1.5, 1.0, 0.5 or 0.0.

    Format is `think_answer_format`; accuracy is `math_equal` between the answer in the `<answer>` content (read
    by `extract_answer_content`: its boxes, its "the answer is", its last formula in math mode, else all of it)
    and the gold.

    >>> math_verifier(prompts=["q"] * 3, answer=["400"] * 3, completions=[
    ...     "<think>sqrt(400) = 20</think><answer>400</answer>", "The answer is <answer>400</answer>",
    ...     "<think>hmm</think><answer>20</answer>"])
    [1.5, 1.0, 0.5]
    """
    golds = gold_choices(len(completions), answer, ground_truth)
    texts = _texts(completions)
    contents = [extract_answer_tag(text) for text in texts]
    preds = [None if content is None else extract_answer_content(content) for content in contents]
    correct = _correct(preds, golds)
    return [
        None if gold is None else 0.5 * float(think_answer_format(text)) + float(right)
        for text, gold, right in zip(texts, golds, correct, strict=True)
    ]


@register_reward("accuracy")
def accuracy(prompts, completions, answer=None, ground_truth=None, **kwargs) -> list[float | None]:
    """1.0 when `extract_answer(style="auto")` finds an answer that `math_equal`s the gold, else 0.0. A row with
    several acceptable golds (`answer` a list, `["5", "five"]`) counts a match with any of them.

    >>> accuracy(prompts=["q"] * 3, answer=["0.5"] * 3,
    ...          completions=[r"so \\boxed{\\frac{1}{2}}", "<answer>1/2</answer>", r"\\boxed{2}"])
    [1.0, 1.0, 0.0]
    """
    preds = [extract_answer(text, style="auto") for text in _texts(completions)]
    return _accuracy_rewards(preds, gold_choices(len(completions), answer, ground_truth))


@register_reward("answer_tag_accuracy")
def answer_tag_accuracy(prompts, completions, answer=None, ground_truth=None, **kwargs) -> list[float | None]:
    """1.0 when the last `<answer>` tag holds an answer that `math_equal`s the gold, else 0.0: `accuracy` that
    also asks for the form the `answer_tag` and `reasoning_gym` templates request (a right number outside the
    tags earns nothing, as in DeepSeek-R1's rule-based accuracy reward, which reads a specified format).

    >>> answer_tag_accuracy(prompts=["q"] * 3, answer=["12"] * 3,
    ...                     completions=["<answer>12</answer>", "so 12", "<answer>The answer is 12.</answer>"])
    [1.0, 0.0, 1.0]
    """
    contents = [extract_answer_tag(text) for text in _texts(completions)]
    preds = [None if c is None else extract_answer_content(c) for c in contents]
    return _accuracy_rewards(preds, gold_choices(len(completions), answer, ground_truth))


def _accuracy_rewards(preds: Sequence[str | None], golds: Sequence[list[str] | None]) -> list[float | None]:
    """1.0 / 0.0 for each prediction against its golds; None (not applicable) where there is no gold."""
    correct = _correct(preds, golds)
    return [None if gold is None else float(right) for gold, right in zip(golds, correct, strict=True)]


def _correct(preds: Sequence[str | None], golds: Sequence[list[str] | None]) -> list[bool]:
    """Whether each extracted answer equals one of its golds; a missing answer or gold is not correct."""
    scored = [
        (i, gold)
        for i, (pred, row_golds) in enumerate(zip(preds, golds, strict=True))
        if pred is not None
        for gold in row_golds or ()
        if gold
    ]
    verdicts = math_equal_many([(preds[i], gold) for i, gold in scored])
    correct = [False] * len(preds)
    for (i, _), verdict in zip(scored, verdicts, strict=True):
        correct[i] = correct[i] or verdict
    return correct


def _lengths(completions: Sequence[Any], completion_ids: Any, completion_length: Any) -> list[int]:
    """Tokens when the trainer gives `completion_length` or `completion_ids`, else characters of the text."""
    if completion_length is not None and not isinstance(completion_length, (int, float)):
        return [int(n) for n in completion_length]
    if completion_ids is not None:
        return [len(ids) for ids in completion_ids]
    return [len(text) for text in _texts(completions)]


@register_reward("overlong_penalty")
def overlong_penalty(
    prompts,
    completions,
    completion_ids=None,
    completion_length=None,
    max_length: int = 1024,
    cache_length: int = 256,
    **kwargs,
) -> list[float]:
    """DAPO's soft overlong punishment: 0 up to `max_length - cache_length`, linear to -1 at `max_length`, -1 beyond.

    Lengths are tokens when a `completion_ids` or `completion_length` column is given (TRL passes
    `completion_ids`), else characters. Bind other limits with `functools.partial`.

    >>> overlong_penalty(prompts=["q"] * 3, completions=["", "", ""], completion_ids=[[0] * 700, [0] * 896, [0] * 2000])
    [0.0, -0.5, -1.0]
    """
    lengths = _lengths(completions, completion_ids, completion_length)
    start = max_length - cache_length
    rewards = []
    for length in lengths:
        if length <= start:
            rewards.append(0.0)
        elif length <= max_length:
            rewards.append((start - length) / cache_length)
        else:
            rewards.append(-1.0)
    return rewards


@register_reward("length_penalty")
def length_penalty(
    prompts,
    completions,
    answer=None,
    ground_truth=None,
    completion_ids=None,
    completion_length=None,
    **kwargs,
) -> list[float | None]:
    """Kimi k1.5's length penalty within each group of completions of one prompt, in [-0.5, 0.5].

    `lam = 0.5 - (length - shortest) / (longest - shortest)`; a correct completion (as `accuracy` judges it) gets
    `lam`, a wrong one `min(0, lam)`; a group of equal lengths gets 0. Lengths as in `overlong_penalty`.

    >>> length_penalty(prompts=["q"] * 3, completions=[r"\\boxed{4}", r"then \\boxed{4}", r"long long \\boxed{5}"],
    ...                answer=["4"] * 3)
    [0.5, 0.0, -0.5]
    """
    golds = gold_choices(len(completions), answer, ground_truth)
    lengths = _lengths(completions, completion_ids, completion_length)
    texts = _texts(completions)
    correct = _correct([extract_answer(text, style="auto") for text in texts], golds)
    groups: dict[str, list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(json.dumps(prompt, sort_keys=True, default=str), []).append(i)
    rewards: list[float | None] = [None] * len(completions)
    for members in groups.values():
        shortest = min(lengths[i] for i in members)
        longest = max(lengths[i] for i in members)
        for i in members:
            if golds[i] is None:
                continue
            if longest == shortest:
                rewards[i] = 0.0
                continue
            lam = 0.5 - (lengths[i] - shortest) / (longest - shortest)
            rewards[i] = lam if correct[i] else min(0.0, lam)
    return rewards


@register_reward("environment")
def environment(prompts, completions, environment_reward=None, **kwargs) -> list[float | None]:
    """An episode's reward from its environment (`get_reward()`, else its step rewards summed), which the trainer
    passes as the column `environment_reward`; None where the environment gave none, or outside episodes.

    >>> environment(["q", "q"], ["a", "b"], environment_reward=[1.0, None])
    [1.0, None]
    """
    if environment_reward is None:
        return [None] * len(completions)
    return [None if value is None else float(value) for value in environment_reward]
