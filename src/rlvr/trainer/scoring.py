"""Calling reward functions on a batch: the TRL contract, None as "not applicable", errors that say which."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch


class RewardError(RuntimeError):
    """A reward function failed or returned something unusable; names the function and the completion."""


def reward_name(fn: Callable) -> str:
    return getattr(fn, "reward_name", None) or getattr(fn, "__name__", None) or type(fn).__name__


def as_reward_completions(prompts: list[Any], completions: list[str]) -> list[Any]:
    """Completions as TRL passes them: message lists when prompts are chat messages, else plain text."""
    if prompts and isinstance(prompts[0], list):
        return [[{"role": "assistant", "content": text}] for text in completions]
    return list(completions)


def score(
    reward_fns: list[Callable],
    prompts: list[Any],
    completions: list[str],
    columns: dict[str, list[Any]],
) -> torch.Tensor:
    """Rewards [N, F] float32, NaN where a function returned None.

    Each function is called by keyword: fn(prompts=..., completions=..., **columns).
    """
    reward_completions = as_reward_completions(prompts, completions)
    out = torch.full((len(completions), len(reward_fns)), math.nan, dtype=torch.float32)
    for j, fn in enumerate(reward_fns):
        values = _call(fn, prompts, reward_completions, columns, completions)
        for i, value in enumerate(values):
            if value is not None:
                out[i, j] = float(value)
    return out


def _call(
    fn: Callable, prompts: list[Any], completions: list[Any], columns: dict[str, list[Any]], texts: list[str]
) -> list[float | None]:
    name = reward_name(fn)
    try:
        values = fn(prompts=prompts, completions=completions, **columns)
    except Exception as exc:
        index = _first_failing(fn, prompts, completions, columns)
        where = f" on completion {index}:\n---\n{texts[index]}\n---" if index is not None else ""
        raise RewardError(f"reward function {name!r} raised {exc.__class__.__name__}: {exc}{where}") from exc
    if not isinstance(values, (list, tuple)) or len(values) != len(completions):
        got = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
        raise RewardError(
            f"reward function {name!r} must return a list of {len(completions)} floats or None, got {got}"
        )
    for i, value in enumerate(values):
        if value is not None and not isinstance(value, (int, float)):
            if hasattr(value, "item"):
                continue
            raise RewardError(
                f"reward function {name!r} returned {value!r} for completion {i}:\n---\n{texts[i]}\n"
                "---\nrewards must be numbers or None"
            )
    return [None if v is None else float(v) for v in values]


def _first_failing(
    fn: Callable, prompts: list[Any], completions: list[Any], columns: dict[str, list[Any]]
) -> int | None:
    """Re-run one completion at a time to find the input that makes `fn` raise."""
    for i in range(len(completions)):
        try:
            fn(
                prompts=prompts[i : i + 1],
                completions=completions[i : i + 1],
                **{k: v[i : i + 1] for k, v in columns.items()},
            )
        except Exception:
            return i
    return None
