"""The `reasoning_gym` reward: each reasoning-gym task's own `score_answer(answer, entry)`, partial credit
kept.

reasoning-gym (`pip install -e ".[tasks]"`) is optional: it is imported on first use, never when rlvr starts.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from rlvr.rewards.extraction import completion_text
from rlvr.rewards.registry import register_reward

VERSION = "0.1.25"
INSTALL_HINT = f'pip install -e ".[tasks]" (or: pip install reasoning-gym=={VERSION})'


def import_reasoning_gym() -> Any:
    """The `reasoning_gym` package, or an ImportError that says how to install it."""
    try:
        import reasoning_gym
    except ImportError as exc:
        raise ImportError(f"reasoning-gym tasks need the optional `tasks` extra: {INSTALL_HINT}") from exc
    return reasoning_gym


@functools.lru_cache(maxsize=256)
def _task(name: str, options_json: str) -> Any:
    # Some scorers read their task's options (decimal_arithmetic's decimal places, puzzle24's value
    # range): score with a task made with the options the row was generated with. size/seed do not score.
    rg = import_reasoning_gym()
    return rg.create_dataset(name, size=1, seed=0, **json.loads(options_json))


def task_scorer(name: str, options: dict[str, Any] | None = None) -> Any:
    """The `score_answer(answer, entry)` of task `name` made with `options` (made once, then reused)."""
    return _task(name, json.dumps(options or {}, sort_keys=True)).score_answer


def extract_task_answer(text: str) -> str | None:
    """The last `<answer>...</answer>` of `text`, stripped: reasoning-gym's `utils.extract_answer`.

    >>> extract_task_answer("<answer>no</answer> wait: <answer> 12 </answer>")  # doctest: +SKIP
    '12'
    """
    from reasoning_gym.utils import extract_answer

    return extract_answer(text)


@register_reward("reasoning_gym")
def reasoning_gym(
    prompts,
    completions,
    answer=None,
    metadata=None,
    task_config=None,
    question=None,
    **kwargs,
) -> list[float | None]:
    """The task's own score in [0, 1] for the last `<answer>...</answer>` of each completion (no tag: the
    task's score for no answer, 0 for most tasks). Rows come from a `reasoning_gym:TASK` dataset, whose
    `metadata` column names each row's task (`source_dataset`) and `task_config` holds the task's options.

    >>> entry = {"question": "4 - 1 - 7 =", "answer": "-4",
    ...          "metadata": {"source_dataset": "chain_sum", "source_index": 0}}
    >>> reasoning_gym(prompts=["q"] * 2, completions=["<answer>-4</answer>", "<answer>4</answer>"],
    ...               answer=["-4"] * 2, metadata=[entry["metadata"]] * 2)  # doctest: +SKIP
    [1.0, 0.0]
    """
    n = len(completions)
    if metadata is None:
        raise ValueError(
            "the reasoning_gym reward scores rows of a reasoning_gym:TASK dataset, which carry a `metadata` "
            "column naming each row's task; this dataset has none"
        )
    import_reasoning_gym()
    answers = _column(answer, n)
    questions = _column(question, n)
    configs = _column(task_config, n)
    rewards: list[float | None] = []
    for i, (text, meta) in enumerate(zip(_texts(completions), _column(metadata, n), strict=True)):
        if not isinstance(meta, dict) or "source_dataset" not in meta:
            rewards.append(None)  # a row from another dataset: not applicable
            continue
        entry = {"question": questions[i], "answer": answers[i], "metadata": meta}
        score = task_scorer(meta["source_dataset"], configs[i])(extract_task_answer(text), entry)
        rewards.append(float(score))
    return rewards


def _column(values: Any, n: int) -> list[Any]:
    if values is None:
        return [None] * n
    if isinstance(values, (list, tuple)):
        return list(values)
    return [values] * n


def _texts(completions: Sequence[Any]) -> list[str]:
    return [completion_text(c) for c in completions]
