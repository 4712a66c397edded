"""Reward functions in worker processes, with a time limit per call: the one pool behind the trainer's
`rewards.num_workers`, evaluation and the reward server.

A batch is cut into chunks of whole groups, one per worker. A worker whose call runs past the timeout, or that
dies, is killed and replaced in the background; the other workers go on, and so does the next call.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import math
import multiprocessing
import multiprocessing.util  # before the exit hook below: hooks run last-registered first, see _stop_all
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rlvr.rewards.options import bind_options
from rlvr.rewards.registry import get_reward
from rlvr.rewards.remote import RemoteReward
from rlvr.rewards.scoring import (
    Failure,
    RewardError,
    RewardTimeout,
    as_reward_completions,
    call_reward,
    call_rewards,
    function_name,
    rewards_tensor,
)

if TYPE_CHECKING:
    import torch

    from rlvr.config import RewardsConfig

RewardRef = str | Callable
"""What a worker is sent to find a reward: a spec for `get_reward` (`accuracy`, `module:function`,
`path/file.py:function`), or a picklable callable (a module-level function, a RemoteReward)."""


class RewardWorkerDied(RewardError):
    """A worker process died during a call (killed, out of memory, `os._exit`); it is being replaced."""


class RewardPoolBusy(RewardError):
    """No worker became free within the time the caller would wait."""


def load_rewards(config: RewardsConfig) -> tuple[list[RewardRef], list[Callable]]:
    """(what a reward worker is sent, the callable) for each of `rewards.functions`: the spec itself, which a
    worker resolves, except for a remote reward, sent whole so it keeps the configured timeout and retries, and a
    reward with `rewards.options`, sent as a `BoundReward` (its spec and options, checked here)."""
    refs: list[RewardRef] = [
        RemoteReward(spec[len("remote:") :], timeout=config.remote_timeout, retries=config.remote_retries)
        if spec.startswith("remote:")
        else spec
        for spec in config.functions
    ]
    fns = [ref if callable(ref) else get_reward(ref) for ref in refs]
    return bind_options(config.functions, refs, fns, config.options, "rewards.options")


class RewardPool:
    """Reward functions run in `num_workers` processes, so slow verifiers do not serialise the step and one that
    hangs or crashes cannot take the caller with it.

    Each batch is cut into one chunk of whole groups per worker (a reward that compares a prompt's completions
    still sees them together); results come back in order. A call (one function on one chunk) that runs longer
    than `timeout` seconds is a `RewardTimeout` naming the function; a worker that dies is a `RewardWorkerDied`.
    Either way that worker is killed and replaced while the others go on. Workers start on first use (or at
    `start()`). With `num_workers=0` the functions run in the calling process, under the same limit (see
    `scoring.call_rewards`). A worker ends itself when the process that started it is gone (killed with SIGKILL,
    say), so none outlives its run.

    >>> pool = RewardPool(["accuracy"], num_workers=2, timeout=60)  # doctest: +SKIP
    >>> pool.score(prompts, completions, {"answer": answers}, group_size=4)  # doctest: +SKIP
    """

    def __init__(
        self,
        rewards: list[RewardRef],
        num_workers: int = 0,
        timeout: float | None = None,
        fns: list[Callable] | None = None,
        names: list[str] | None = None,
    ) -> None:
        self.refs = list(rewards)
        self.fns = fns if fns is not None else [r if callable(r) else get_reward(r) for r in self.refs]
        self.names = names if names is not None else [function_name(fn) for fn in self.fns]
        self.num_workers = num_workers
        self.timeout = timeout
        self._changed = threading.Condition()
        self._idle: list[_Worker | None] = [None] * num_workers  # None: a slot whose worker starts when taken
        self._workers: set[_Worker] = set()  # every live worker, idle or busy: what close() and exit stop
        # close() counts this up; a worker started before is stopped, not kept, when it is handed back
        self._generation = 0
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None
        if num_workers:
            for name, ref in zip(self.names, self.refs):
                _check_picklable(name, ref, num_workers)
            atexit.register(_stop_all, self._workers)

    def start(self) -> None:
        """Start every worker now rather than on first use; a RewardError says why one did not start."""
        with self._changed:
            empty = self._idle.count(None)
            self._idle = [worker for worker in self._idle if worker is not None]
            generation = self._generation
        if not empty:
            return
        failure = None
        with concurrent.futures.ThreadPoolExecutor(empty) as threads:
            for start in [threads.submit(self._start_worker) for _ in range(empty)]:
                try:
                    self._give_back(start.result(), generation)
                except Exception as exc:
                    self._give_back(None, generation)
                    failure = failure or exc
        if failure is not None:
            self.close()
            raise failure

    def score(
        self,
        prompts: list[Any],
        completions: list[str],
        columns: dict[str, list[Any]],
        group_size: int = 1,
    ) -> torch.Tensor:
        """Rewards [N, F] float32, NaN where a function returned None (see `scoring.score`)."""
        return rewards_tensor(self.score_values(prompts, completions, columns, group_size), len(completions))

    def score_values(
        self,
        prompts: list[Any],
        completions: list[str],
        columns: dict[str, list[Any]],
        group_size: int = 1,
        wait: float | None = None,
    ) -> list[list[float | None]]:
        """Each function's values in order, None where it did not apply; a RewardError names the function and
        the completion at fault. `wait`: seconds a chunk may wait for a free worker before `RewardPoolBusy`
        (None: as long as it takes)."""
        if not self.num_workers:
            return call_rewards(self.fns, self.names, prompts, completions, columns, self.timeout)
        if not completions:
            return [[] for _ in self.fns]
        texts = list(completions)
        reward_completions = as_reward_completions(prompts, completions)
        chunks = [
            (lo, hi, (prompts[lo:hi], reward_completions[lo:hi], {k: v[lo:hi] for k, v in columns.items()}))
            for lo, hi in chunk_bounds(len(completions), self.num_workers, group_size)
        ]
        if len(chunks) == 1:
            parts = [self._score_chunk(*chunks[0], texts, wait)]
        else:
            with self._changed:
                if self._threads is None:
                    self._threads = concurrent.futures.ThreadPoolExecutor(
                        self.num_workers, "rlvr-reward-call"
                    )
                threads = self._threads
            futures = [threads.submit(self._score_chunk, *chunk, texts, wait) for chunk in chunks]
            concurrent.futures.wait(futures)  # every chunk ends before the first failure (in order) is raised
            parts = [future.result() for future in futures]
        return [[value for part in parts for value in part[j]] for j in range(len(self.fns))]

    def close(self) -> None:
        """Stop every worker, a busy one too (its caller gets RewardWorkerDied); a later call starts new ones."""
        with self._changed:
            self._generation += 1
            self._idle = [None] * self.num_workers
            workers = list(self._workers)
            self._workers.clear()
        for worker in workers:
            worker.kill()
        if self._threads is not None:
            self._threads.shutdown(wait=False)
            self._threads = None

    def _score_chunk(
        self, lo: int, hi: int, payload: tuple, texts: list[str], wait: float | None
    ) -> list[list[float | None]]:
        worker, generation = self._take(wait)
        try:
            worker = worker or self._start_worker()
        except BaseException:
            self._give_back(None, generation)  # the next call that takes the slot tries again
            raise
        try:
            answer = worker.call(payload, self.timeout)
        except BaseException as exc:
            # Hung, dead, or interrupted mid-call (its answer would reach the next caller): never reused.
            self._stop(worker)
            if isinstance(exc, Exception):
                threading.Thread(target=self._replace, args=(generation,), daemon=True).start()
            else:  # Ctrl-C or SIGTERM: the process is stopping, and a worker spawned now would die half-started
                self._give_back(None, generation)
            if isinstance(exc, _Lost):
                raise self._lost_error(exc, worker.process.exitcode, lo, hi) from None
            raise
        self._give_back(worker, generation)
        if isinstance(answer, Failure):
            raise answer.error(texts[lo:hi], offset=lo) from answer.cause()
        return answer

    def _lost_error(self, lost: _Lost, exitcode: int | None, lo: int, hi: int) -> RewardError:
        span = f"completions {lo}..{hi - 1}"
        calling = f"reward function {self.names[lost.calling]!r}" if lost.calling is not None else None
        if lost.timed_out:
            return RewardTimeout(
                f"{calling or 'a reward worker'} took longer than rewards.timeout={self.timeout:g}s on {span}; "
                "its worker was replaced"
            )
        during = f"while {calling} ran on {span}" if calling else f"before scoring {span}"
        return RewardWorkerDied(
            f"a reward worker process died (exit code {exitcode}) {during}; it was replaced"
        )

    def _take(self, wait: float | None) -> tuple[_Worker | None, int]:
        """An idle slot, a started worker first, and the generation it belongs to."""
        deadline = None if wait is None else time.monotonic() + wait
        with self._changed:
            while not self._idle:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise RewardPoolBusy(f"no reward worker became free within {wait:g}s")
                self._changed.wait(remaining)
            started = [i for i, worker in enumerate(self._idle) if worker is not None]
            return self._idle.pop(started[-1] if started else -1), self._generation

    def _give_back(self, worker: _Worker | None, generation: int) -> None:
        with self._changed:
            if generation == self._generation:
                self._idle.append(worker)
                self._changed.notify()
                return
        if worker is not None:
            self._stop(worker)

    def _start_worker(self) -> _Worker:
        worker = _Worker(self.refs, self.names)
        with self._changed:
            self._workers.add(worker)  # before it is ready: close() and exit stop a starting worker too
        try:
            worker.wait_ready()
        except BaseException:
            self._stop(worker)
            raise
        return worker

    def _replace(self, generation: int) -> None:
        """Start a worker in place of a killed one, in the background."""
        fresh = None
        if generation == self._generation:
            try:
                fresh = self._start_worker()
            except Exception:
                pass  # the slot stays empty: the next call that takes it starts a worker and says why it fails
        self._give_back(fresh, generation)

    def _stop(self, worker: _Worker) -> None:
        worker.kill()
        with self._changed:
            self._workers.discard(worker)


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


def _stop_all(workers: set[_Worker]) -> None:
    """At exit, kill the workers of a pool that was not closed: they are not daemons (a reward may start its own
    processes), and multiprocessing's exit hook, registered before this one and so run after it, joins them."""
    for worker in list(workers):
        worker.kill()


# ------------------------------------------------------------------------------------- worker processes
class _Lost(Exception):
    """A worker that hung past the timeout (`timed_out`) or died; `calling`: the function it was running."""

    def __init__(self, calling: int | None, timed_out: bool) -> None:
        self.calling, self.timed_out = calling, timed_out


PARENT_CHECK_SECONDS = 1.0  # how often a worker looks whether its parent is still there


class _Worker:
    """One reward process and its pipe."""

    # seconds: a cold start imports rlvr's rewards (and a reward's own imports) on a busy machine
    STARTUP_TIMEOUT = 120.0

    def __init__(self, refs: list[RewardRef], names: list[str]) -> None:
        # spawn: a fresh interpreter, not a fork of a process that holds threads and their locks
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(
            target=_worker_main, args=(child, refs, names, os.getpid()), name="rlvr-reward-worker"
        )
        self.process.start()
        child.close()
        self._kill_once = threading.Lock()
        self._killed = False

    def wait_ready(self) -> None:
        try:
            if self.connection.poll(self.STARTUP_TIMEOUT):
                message = self.connection.recv()
            else:
                message = ("fatal", f"it did not start within {self.STARTUP_TIMEOUT:.0f}s")
        except (EOFError, OSError):
            self.process.join(timeout=5)
            message = ("fatal", f"it exited with code {self.process.exitcode}")
        if message[0] != "ready":
            self.kill()
            raise RewardError(f"a reward worker process failed to start: {message[1]}")

    def call(self, payload: tuple, timeout: float | None) -> list[list[float | None]] | Failure:
        """Send a chunk and wait for its values; `_Lost` when a function runs past `timeout` or the worker dies."""
        calling = None
        try:
            self.connection.send(payload)
            while self.connection.poll(timeout):
                message = self.connection.recv()
                if message[0] != "calling":
                    return message[1]
                calling = message[1]  # the next function starts, and with it the next `timeout`
        except (EOFError, OSError):
            raise _Lost(calling, timed_out=False) from None
        raise _Lost(calling, timed_out=True)

    def kill(self) -> None:
        """Stop the process and close the pipe, once: `close()` and a thread starting this worker in the
        background may both kill it, and a second close of the pipe could close a file that reused its number."""
        with self._kill_once:
            if self._killed:
                return
            self._killed = True
        self.process.kill()
        self.process.join(timeout=5)
        self.connection.close()


def _exit_without(parent: int) -> None:
    """End this process once `parent` is no longer its parent (it died and this one was re-parented)."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(1)


def _worker_main(connection: Any, refs: list[RewardRef], names: list[str], parent: int) -> None:
    # Ctrl-C reaches the whole process group; the parent stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A parent that died without stopping its workers (SIGKILL, a second SIGTERM) cannot: a busy worker would
    # run on, re-parented, holding the terminal's pipe open and multiprocessing's resource tracker alive.
    threading.Thread(target=_exit_without, args=(parent,), daemon=True, name="rlvr-parent-watch").start()
    # Several workers share the machine with the training process: one thread each for torch and OpenMP.
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        fns = [ref if callable(ref) else get_reward(ref) for ref in refs]
    except Exception as exc:
        connection.send(("fatal", f"{type(exc).__name__}: {exc}"))
        return
    if "torch" in sys.modules:  # imported before the line above could act (by a reward's module)
        sys.modules["torch"].set_num_threads(1)
    connection.send(("ready",))
    while True:
        try:
            prompts, completions, columns = connection.recv()
        except (EOFError, OSError):  # the parent closed the pipe or died
            return
        values = []
        for j, (fn, name) in enumerate(zip(fns, names, strict=True)):
            connection.send(("calling", j))
            result = call_reward(fn, name, prompts, completions, columns)
            if isinstance(result, Failure):
                result.exception = None  # it may not pickle; its traceback goes as text
                connection.send(("failed", result))
                break
            values.append(result)
        else:
            connection.send(("done", values))
