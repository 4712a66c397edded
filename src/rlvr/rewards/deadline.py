"""A time limit on a reward call made in this process (`rewards.num_workers: 0`, the default, and `rlvr eval`).

A thread cannot be killed, so the limit has two levels:

- At the limit the call is interrupted. A watcher thread sends SIGURG to the main thread, again every second
  until the call ends, and the handler raises `_Expired` in the reward's code: a BaseException, so a reward's
  own `except Exception` does not swallow it. SIGURG because its default action is to do nothing (a signal
  still on its way when the call ends, after the old handler is back, is harmless) and no library uses it.
  A call that returns after its limit anyway (it swallowed the interruption) fails all the same.
- A reward stuck in C code that holds the GIL never lets the handler run. `GRACE` seconds after the limit,
  faulthandler, whose timer needs no GIL, prints every thread's stack (the reward's frame among them) under
  `Timeout (h:mm:ss)!` and ends the process with exit status 1.

Off the main thread no handler can run, so a call there has the second level only. Reward worker processes
(`rewards.num_workers >= 1`) need neither: `RewardPool` kills a worker whose call runs past the limit.
"""

from __future__ import annotations

import faulthandler
import signal
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

GRACE = 30.0  # seconds past the limit before a call that could not be interrupted ends the process
_RESEND = 1.0  # seconds between interruptions of a call that swallowed the last one
_SIGNAL = getattr(signal, "SIGURG", None)  # None on Windows: the hard limit only


class TimeLimitExceeded(Exception):
    """The call ran past its limit; it was interrupted, or it returned late."""


class _Expired(BaseException):
    """Raised inside the reward's code when its call is past the limit."""


class _Call:
    def __init__(self, deadline: float, thread: int) -> None:
        self.deadline = deadline
        self.thread = thread
        self.expired = False
        self.done = False  # the call has returned or raised: no interruption any more


class _Watcher:
    """One daemon thread per process that interrupts the calls past their deadline."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.calls: set[_Call] = set()
        self.wake_at = float("inf")  # when the thread next looks, so a later deadline need not wake it
        self.thread: threading.Thread | None = None

    def add(self, call: _Call) -> None:
        with self.changed:
            self.calls.add(call)
            if self.thread is None or not self.thread.is_alive():  # a fork's child has no watcher thread
                self.thread = threading.Thread(target=self._run, name="rlvr-reward-deadline", daemon=True)
                self.thread.start()
            if call.deadline < self.wake_at:
                self.changed.notify()

    def remove(self, call: _Call) -> None:
        # Under the lock: once it returns no interruption of this call is sent any more.
        with self.changed:
            self.calls.discard(call)

    def _run(self) -> None:
        with self.changed:
            while True:
                now = time.monotonic()
                for call in self.calls:
                    if now >= call.deadline:
                        call.expired = True
                        call.deadline = now + _RESEND
                        if call.thread == threading.main_thread().ident and _SIGNAL is not None:
                            if signal.getsignal(_SIGNAL) is _interrupt:
                                signal.pthread_kill(call.thread, _SIGNAL)
                self.wake_at = min((call.deadline for call in self.calls), default=float("inf"))
                self.changed.wait(None if self.wake_at == float("inf") else self.wake_at - now)


_watcher = _Watcher()
_current: list[_Call] = []  # the main thread's calls under a limit, innermost last
_hard_limit = threading.Lock()  # faulthandler has one timer per process: held by the call that set it


def _interrupt(signum: int, frame: object) -> None:
    if _current and _current[-1].expired and not _current[-1].done:
        raise _Expired


def call_with_limit(call: Callable[[], T], seconds: float | None) -> T:
    """`call()`, interrupted after `seconds` (None: no limit) with `TimeLimitExceeded`; a call that cannot
    be interrupted ends the process `GRACE` seconds later (see the module's docstring).

    >>> call_with_limit(lambda: sum(range(10)), seconds=5.0)
    45
    """
    if seconds is None:
        return call()
    entry = _Call(time.monotonic() + seconds, threading.get_ident())
    main = threading.current_thread() is threading.main_thread() and _SIGNAL is not None
    previous = signal.signal(_SIGNAL, _interrupt) if main else None
    if main:
        _current.append(entry)
    hard = _hard_limit.acquire(blocking=False)
    if hard:  # to fd 2: sys.stderr may be a stream without a file descriptor (a notebook, pytest's capture)
        faulthandler.dump_traceback_later(seconds + GRACE, exit=True, file=2)
    _watcher.add(entry)
    try:
        try:
            result = call()
        finally:
            entry.done = True  # an interruption after this line would cut the clean-up below short
    except _Expired:
        raise TimeLimitExceeded(f"interrupted after {seconds:g}s") from None
    finally:
        _watcher.remove(entry)
        if hard:
            faulthandler.cancel_dump_traceback_later()
            _hard_limit.release()
        if main:
            _current.remove(entry)
            # None: a handler set outside Python, which cannot be put back; the default then
            signal.signal(_SIGNAL, signal.SIG_DFL if previous is None else previous)
    if entry.expired:
        raise TimeLimitExceeded(f"returned after its limit of {seconds:g}s")
    return result
