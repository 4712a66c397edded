"""Calling reward functions on a batch: the TRL contract, None as "not applicable", errors that say which,
in the training process or in a pool of worker processes with a time limit per call."""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import multiprocessing
import pickle
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

from rlvr.config import RewardsConfig
from rlvr.rewards.registry import RewardCallError, check_reward_values


class RewardError(RuntimeError):
    """A reward function failed or returned something unusable; names the function and the completion."""


class WorkerTraceback(Exception):
    """The traceback of an exception raised in a reward worker process (shown as the cause)."""


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
    """Rewards [N, F] float32, NaN where a function returned None, each function called in this process.

    Each function is called by keyword: fn(prompts=..., completions=..., **columns).
    """
    reward_completions = as_reward_completions(prompts, completions)
    out = torch.full((len(completions), len(reward_fns)), math.nan, dtype=torch.float32)
    for j, fn in enumerate(reward_fns):
        name = reward_name(fn)
        try:
            values = fn(prompts=prompts, completions=reward_completions, **columns)
        except Exception as exc:
            index = _first_failing(fn, prompts, reward_completions, columns)
            raise RewardError(_raised(name, exc.__class__.__name__, str(exc), index, completions)) from exc
        _fill(out[:, j], checked_values(name, values, completions))
    return out


def checked_values(name: str, values: Any, texts: list[str], offset: int = 0) -> list[float | None]:
    """`values` as floats or None, by the registry's rule for a reward value; an error
    names the function and shows the completion at fault (`texts[i]` is completion `offset + i`)."""
    if not isinstance(values, (list, tuple)) or len(values) != len(texts):
        got = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
        raise RewardError(
            f"reward function {name!r} must return a list of {len(texts)} floats or None, got {got}"
        )
    try:
        return check_reward_values(name, values, len(texts))
    except RewardCallError as exc:
        i = exc.index
        raise RewardError(f"{exc}; completion {offset + i}:\n---\n{texts[i]}\n---") from None


def _fill(column: torch.Tensor, values: list[float | None]) -> None:
    for i, value in enumerate(values):
        if value is not None:
            column[i] = value


def _raised(name: str, kind: str, message: str, index: int | None, texts: list[str]) -> str:
    where = f" on completion {index}:\n---\n{texts[index]}\n---" if index is not None else ""
    return f"reward function {name!r} raised {kind}: {message}{where}"


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


# ------------------------------------------------------------------------------------- worker processes
RewardRef = str | Callable
"""What a worker is sent to find a reward: a spec for `get_reward` (`accuracy`, `module:function`,
`path/file.py:function`), or a picklable callable (a module-level function, a RemoteReward)."""


def load_rewards(config: RewardsConfig) -> tuple[list[RewardRef], list[Callable]]:
    """(what a reward worker is sent, the callable) for each of `rewards.functions`: the spec itself, which a
    worker resolves, except for a remote reward, sent whole so it keeps the configured timeout and retries."""
    from rlvr.rewards import get_reward
    from rlvr.rewards.remote import RemoteReward

    refs: list[RewardRef] = [
        RemoteReward(spec[len("remote:") :], timeout=config.remote_timeout, retries=config.remote_retries)
        if spec.startswith("remote:")
        else spec
        for spec in config.functions
    ]
    return refs, [ref if callable(ref) else get_reward(ref) for ref in refs]


class RewardPool:
    """Reward functions run in `num_workers` processes, so slow verifiers do not serialise the step.

    Each function's batch is cut into one chunk of whole groups per worker (a reward that compares a prompt's
    completions still sees them together); results come back in order. A call that runs longer than
    `timeout` seconds is an error naming the function: the workers are killed and the next call starts a
    fresh pool. With `num_workers=0` this is `score` in the training process.

    >>> pool = RewardPool(["accuracy"], num_workers=2, timeout=60)  # doctest: +SKIP
    >>> pool.score(prompts, completions, {"answer": answers}, group_size=4)  # doctest: +SKIP
    """

    def __init__(
        self,
        rewards: list[RewardRef],
        num_workers: int = 0,
        timeout: float | None = None,
        fns: list[Callable] | None = None,
    ) -> None:
        from rlvr.rewards import get_reward

        self.refs = list(rewards)
        self.fns = fns if fns is not None else [r if callable(r) else get_reward(r) for r in self.refs]
        self.names = [reward_name(fn) for fn in self.fns]
        self.num_workers = num_workers
        self.timeout = timeout
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._started: Any = None
        self._task_ids = itertools.count()
        if num_workers:
            for name, ref in zip(self.names, self.refs):
                _check_picklable(name, ref, num_workers)

    def score(
        self,
        prompts: list[Any],
        completions: list[str],
        columns: dict[str, list[Any]],
        group_size: int = 1,
    ) -> torch.Tensor:
        """Rewards [N, F] float32, NaN where a function returned None (see `score`)."""
        if not self.num_workers:
            return score(self.fns, prompts, completions, columns)
        reward_completions = as_reward_completions(prompts, completions)
        out = torch.full((len(completions), len(self.fns)), math.nan, dtype=torch.float32)
        chunks = chunk_bounds(len(completions), self.num_workers, group_size)
        tasks = {}
        executor = self._pool()
        for j in range(len(self.fns)):
            for lo, hi in chunks:
                task_id = next(self._task_ids)
                future = executor.submit(
                    _score_chunk,
                    task_id,
                    j,
                    prompts[lo:hi],
                    reward_completions[lo:hi],
                    {k: v[lo:hi] for k, v in columns.items()},
                )
                tasks[future] = (task_id, j, lo, hi)
        for j, lo, hi, result in self._results(tasks):
            name = self.names[j]
            if isinstance(result, _Failure):
                index = None if result.index is None else lo + result.index
                message = _raised(name, result.kind, result.message, index, completions)
                raise RewardError(message) from WorkerTraceback(result.traceback)
            _fill(out[lo:hi, j], checked_values(name, result, completions[lo:hi], offset=lo))
        return out

    def _results(self, tasks: dict) -> list[tuple[int, int, int, Any]]:
        """Wait for every task; a task that runs past the timeout kills the pool and raises."""
        started: dict[int, float] = {}
        pending = set(tasks)
        # Polled so a stuck call is noticed; a call's clock starts when a worker picks it up, not when it
        # was queued behind other calls.
        poll = None if self.timeout is None else min(0.05, self.timeout / 4)
        while pending:
            _, pending = concurrent.futures.wait(
                pending, timeout=poll, return_when=concurrent.futures.FIRST_COMPLETED
            )
            now = time.monotonic()
            started.update(dict.fromkeys(_drain(self._started), now))
            for future in pending if self.timeout is not None else ():
                task_id, j, lo, hi = tasks[future]
                if task_id in started and now - started[task_id] > self.timeout:
                    self.close(kill=True)
                    raise RewardError(
                        f"reward function {self.names[j]!r} took longer than rewards.timeout="
                        f"{self.timeout:g}s on completions {lo}..{hi - 1}; its worker was killed"
                    )
        results = []
        for future, (_, j, lo, hi) in tasks.items():
            try:
                results.append((j, lo, hi, future.result()))
            except Exception as exc:  # the worker died (killed, out of memory) or its answer would not pickle
                self.close(kill=True)
                raise RewardError(
                    f"reward function {self.names[j]!r} failed in its worker process on completions "
                    f"{lo}..{hi - 1}: {exc!r}"
                ) from exc
        return results

    def _pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._executor is None:
            # spawn: a fresh interpreter, not a fork of a process that holds threads and a process group
            context = multiprocessing.get_context("spawn")
            # SimpleQueue writes at once, without a feeder thread that a call stuck holding the GIL would starve
            self._started = context.SimpleQueue()
            self._executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.num_workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(self.refs, self._started),
            )
        return self._executor

    def close(self, kill: bool = False) -> None:
        """Stop the workers (at once with `kill`: a stuck call never returns); the next score starts anew."""
        if self._executor is None:
            return
        if kill:
            # ProcessPoolExecutor has no public way to stop a running call before Python 3.14's kill_workers.
            for process in list(getattr(self._executor, "_processes", {}).values()):
                process.kill()
        self._executor.shutdown(wait=not kill, cancel_futures=True)
        self._executor = None
        self._started = None


def chunk_bounds(n: int, parts: int, group_size: int = 1) -> list[tuple[int, int]]:
    """[lo, hi) ranges that cut n items into at most `parts` near-equal runs of whole groups.

    >>> chunk_bounds(12, 2, group_size=4)
    [(0, 8), (8, 12)]
    >>> chunk_bounds(8, 4)
    [(0, 2), (2, 4), (4, 6), (6, 8)]
    """
    groups = max(1, math.ceil(n / group_size))
    per_part = math.ceil(groups / max(1, parts))
    bounds = []
    for first in range(0, groups, per_part):
        lo, hi = first * group_size, min(n, (first + per_part) * group_size)
        if lo < hi:
            bounds.append((lo, hi))
    return bounds


def _check_picklable(name: str, ref: RewardRef, num_workers: int) -> None:
    try:
        pickle.dumps(ref)
    except Exception as exc:
        raise RewardError(
            f"reward function {name!r} cannot be sent to a worker process (rewards.num_workers={num_workers}): "
            f"{exc}. Define it at module level in an importable module, name it in rewards.functions as "
            "module:function or path/file.py:function, or set rewards.num_workers=0"
        ) from exc


def _drain(q: Any) -> list[int]:
    items = []
    while q is not None and not q.empty():
        items.append(q.get())
    return items


class _Failure:
    """A reward call that raised, sent back as text: not every exception can be pickled."""

    def __init__(self, kind: str, message: str, index: int | None, tb: str) -> None:
        self.kind, self.message, self.index, self.traceback = kind, message, index, tb


_WORKER_FNS: list[Callable] = []
_WORKER_STARTED: Any = None


def _init_worker(refs: list[RewardRef], started: Any) -> None:
    """Resolve the rewards once per worker (imports included), before any timed call."""
    global _WORKER_STARTED
    from rlvr.rewards import get_reward

    torch.set_num_threads(1)  # several workers share the machine with the training process
    _WORKER_FNS[:] = [r if callable(r) else get_reward(r) for r in refs]
    _WORKER_STARTED = started


def _score_chunk(
    task_id: int, j: int, prompts: list[Any], completions: list[Any], columns: dict[str, list[Any]]
) -> list[Any] | _Failure:
    _WORKER_STARTED.put(task_id)
    fn = _WORKER_FNS[j]
    try:
        return fn(prompts=prompts, completions=completions, **columns)
    except Exception as exc:
        index = _first_failing(fn, prompts, completions, columns)
        return _Failure(exc.__class__.__name__, str(exc), index, traceback.format_exc())
