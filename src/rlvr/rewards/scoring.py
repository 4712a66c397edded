"""Calling reward functions on a batch in this process: the TRL contract, None as "not applicable", and errors
that name the function and show the completion at fault. `rewards.pool` runs the same calls in worker processes."""

from __future__ import annotations

import inspect
import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlvr.rewards.deadline import TimeLimitExceeded, call_with_limit
from rlvr.rewards.registry import RewardCallError, check_reward_values

if TYPE_CHECKING:
    import torch


class RewardError(RuntimeError):
    """A reward function failed, returned something unusable, or its worker hung or died; the message names the
    function and shows the completion at fault.

    `summary` is the message without the completion, `index` that completion's place in the batch (None when no
    single completion is at fault), so a caller can show the completion its own way (the reward server: clipped).
    """

    def __init__(self, message: str, summary: str | None = None, index: int | None = None) -> None:
        super().__init__(message)
        self.summary = summary if summary is not None else message
        self.index = index


class RewardTimeout(RewardError):
    """A reward call ran past its time limit: interrupted in this process, or its worker killed and replaced."""


class WorkerTraceback(Exception):
    """The traceback of an exception raised in a reward worker process (shown as the cause)."""


@dataclass
class Failure:
    """A reward call that raised or returned something unusable, as text a worker can send back."""

    summary: str
    """`reward function 'f' raised KeyError: 'gold'`, `reward function 'f' failed: returned inf, ...`."""
    index: int | None
    """The completion at fault, counted within the call; None when no single one is."""
    traceback: str | None = None
    """The formatted traceback, when the function raised."""
    exception: BaseException | None = None
    """The exception itself, in the process that caught it (not every exception pickles: a worker drops it)."""
    hint: str | None = None
    """Why no completion is named, when the function raised and `index` is None."""

    def error(self, texts: list[str], offset: int = 0) -> RewardError:
        """The error for a call on `texts`, completions `offset`, `offset + 1`, ... of the batch."""
        if self.index is None:
            if self.traceback is None:  # returned something unusable as a whole: no completion to name
                return RewardError(self.summary)
            hint = f" ({self.hint})" if self.hint else ""
            span = f"completions {offset}..{offset + len(texts) - 1}"
            return RewardError(f"{self.summary}, on one of {span}{hint}", self.summary)
        number = offset + self.index
        where = " on completion" if self.traceback is not None else "; completion"  # raised on it / returned
        message = f"{self.summary}{where} {number}:\n---\n{texts[self.index]}\n---"
        return RewardError(message, self.summary, number)

    def cause(self) -> BaseException | None:
        """What the error is raised from: the exception, or the worker's traceback as text."""
        if self.exception is not None:
            return self.exception
        return WorkerTraceback(self.traceback) if self.traceback is not None else None


def function_name(fn: Callable) -> str:
    """The name a reward function goes by in metrics and errors: `reward_name`, else `__name__`."""
    return getattr(fn, "reward_name", None) or getattr(fn, "__name__", None) or type(fn).__name__


def as_reward_completions(prompts: list[Any], completions: list[Any]) -> list[Any]:
    """Completions as TRL passes them: message lists when prompts are chat messages, else plain text. An
    episode's completion is already its list of messages (replies and tool results) and passes as it is."""
    if prompts and isinstance(prompts[0], list):
        return [c if isinstance(c, list) else [{"role": "assistant", "content": c}] for c in completions]
    return list(completions)


def score(
    reward_fns: list[Callable],
    prompts: list[Any],
    completions: list[str],
    columns: dict[str, list[Any]],
    timeout: float | None = None,
    setting: str = "rewards.timeout",
) -> torch.Tensor:
    """Rewards [N, F] float32, NaN where a function returned None, each function called in this process.

    Each function is called by keyword: fn(prompts=..., completions=..., **columns), within `timeout` seconds
    (see `call_rewards`).
    """
    names = [function_name(fn) for fn in reward_fns]
    values = call_rewards(reward_fns, names, prompts, completions, columns, timeout, setting)
    return rewards_tensor(values, len(completions))


def call_rewards(
    reward_fns: list[Callable],
    names: list[str],
    prompts: list[Any],
    completions: list[str],
    columns: dict[str, list[Any]],
    timeout: float | None = None,
    setting: str = "rewards.timeout",
) -> list[list[float | None]]:
    """Each function's values (None: not applicable), called in this process; RewardError on the first failure.

    Each call may take `timeout` seconds (None: no limit; see `deadline`); past it the call is interrupted and
    a RewardTimeout names the function and `setting`, the option that sets the limit.
    """
    reward_completions = as_reward_completions(prompts, completions)
    values = []
    for fn, name in zip(reward_fns, names, strict=True):
        try:
            result = call_with_limit(
                lambda fn=fn, name=name: call_reward(fn, name, prompts, reward_completions, columns), timeout
            )
        except TimeLimitExceeded as exc:
            raise RewardTimeout(
                f"reward function {name!r} took longer than {setting}={timeout:g}s on completions "
                f"0..{len(completions) - 1} ({exc}): raise {setting} if it is only slow"
            ) from None
        if isinstance(result, Failure):
            raise result.error(list(completions)) from result.cause()
        values.append(result)
    return values


def call_reward(
    fn: Callable, name: str, prompts: list[Any], completions: list[Any], columns: dict[str, list[Any]]
) -> list[float | None] | Failure:
    """One call, by keyword, its values checked; a Failure if it raised, ended the process (`sys.exit`) or
    returned something unusable. `completions` as the function takes them (see `as_reward_completions`).

    The completion at fault is named when the values show it, or when one of rlvr's own rewards raised (it is
    called again on one completion at a time to find which). Any other function is called once: it may be
    paid (a judge model) or have side effects.
    """
    try:
        values = fn(prompts=prompts, completions=completions, **columns)
    except Exception as exc:
        summary = f"reward function {name!r} raised {type(exc).__name__}: {exc}{_where(exc)}"
        if len(completions) == 1:  # no need to call it again to know which
            return Failure(summary, 0, traceback.format_exc(), exc)
        if not _rlvr_own(fn):
            hint = "it is not called again to find which: it may be paid or have side effects"
            return Failure(summary, None, traceback.format_exc(), exc, hint)
        index = _first_failing(fn, prompts, completions, columns)
        return Failure(summary, index, traceback.format_exc(), exc)
    except SystemExit as exc:  # a reward must not end the run, nor its worker, with a silent exit status
        summary = (
            f"reward function {name!r} called sys.exit({exc.code!r}){_where(exc)}: a reward returns its values, "
            "and never ends the process"
        )
        return Failure(summary, None, traceback.format_exc(), exc)
    return _check(name, values, len(completions))


def checked_values(name: str, values: Any, texts: list[str], offset: int = 0) -> list[float | None]:
    """`values` as floats or None, by the registry's rule for a reward value; an error
    names the function and shows the completion at fault (`texts[i]` is completion `offset + i`)."""
    result = _check(name, values, len(texts))
    if isinstance(result, Failure):
        raise result.error(texts, offset)
    return result


def rewards_tensor(values: list[list[float | None]], n: int) -> torch.Tensor:
    """Each function's values as [N, F] float32, NaN for None."""
    import torch

    rows = [[math.nan if v is None else v for v in column] for column in values]
    return torch.tensor(rows, dtype=torch.float32).reshape(len(values), n).T.contiguous()


def _check(name: str, values: Any, n: int) -> list[float | None] | Failure:
    if not isinstance(values, (list, tuple)) or len(values) != n:
        got = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
        return Failure(f"reward function {name!r} must return a list of {n} floats or None, got {got}", None)
    try:
        return check_reward_values(name, values, n)
    except RewardCallError as exc:
        return Failure(str(exc), exc.index)


def _rlvr_own(fn: Callable) -> bool:
    """One of rlvr's built-in reward functions: free of side effects, so it may be called again."""
    return inspect.isfunction(fn) and fn.__module__.startswith("rlvr.")


def _where(exc: BaseException) -> str:
    """` (at file.py:12)`: where the exception was raised, innermost frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""


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
