"""A time limit on a reward call made in this process (`rewards.num_workers: 0`, the default, and `rlvr eval`).

A thread cannot be killed, so the limit has two levels:

- At the limit the call is interrupted. A watcher thread sends SIGURG to the main thread, again every second
  until the call ends, and the handler raises `_Expired` in the reward's code: a BaseException, so a reward's
  own `except Exception` does not swallow it. SIGURG because its default action is to do nothing (a signal
  still on its way when the call ends, after the old handler is back, is harmless) and no library uses it.
  A call that returns after its limit anyway (it swallowed the interruption) fails all the same.
- A reward stuck in C code that holds the GIL never lets the handler run. `GRACE` to 2 x `GRACE` seconds after
  the limit, faulthandler, whose timer needs no GIL, prints every thread's stack (the reward's frame among them)
  under `Timeout (h:mm:ss)!` and ends the process with exit status 1. faulthandler has one such timer per
  process: one the program set itself (`faulthandler.dump_traceback_later`) is replaced.

Off the main thread no signal handler runs (the asynchronous producer of `rollout.max_staleness` scores
there). At the limit such a call gets one interruption through `PyThreadState_SetAsyncExc`, the same
`_Expired`, raised when the thread next runs Python code: a reward busy in Python stops, one waiting in a system
call or C code (`time.sleep`, a socket, a regex) is met by the second level. One only, so that a second cannot
arrive after the clean-up has begun; one not yet delivered when the call ends is withdrawn. Reward worker
processes (`rewards.num_workers >= 1`) need neither level: `RewardPool` kills a worker whose call runs past
the limit.
"""

from __future__ import annotations

import faulthandler
import signal
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from rlvr.utils import raise_in_thread

T = TypeVar("T")

GRACE = 30.0  # seconds past the limit, at least, before a call that could not be interrupted ends the process
_RESEND = 1.0  # seconds between interruptions of a call that swallowed the last one
_IDLE = 1.0  # seconds without a call before the watcher stops faulthandler's timer
_PROMPT = 1.0  # seconds: an interruption taken later than this off the main thread came when a wait ended
_SIGNAL = getattr(signal, "SIGURG", None)  # None on Windows: the hard limit only


class TimeLimitExceeded(Exception):
    """The call ran past its limit; it was interrupted, or it returned late."""


class _Expired(BaseException):
    """Raised inside the reward's code when its call is past the limit."""


class _Call:
    def __init__(self, end: float, thread: int) -> None:
        self.end = end  # the limit, time.monotonic()
        self.next_signal = end
        self.thread = thread
        self.expired = False
        self.done = False  # the call has returned or raised: no interruption any more
        self.sent = False  # off the main thread: its one interruption was sent
        self.sent_at = 0.0  # when, time.monotonic()


class _Watcher:
    """One daemon thread per process: interrupts the calls past their limit, and keeps faulthandler's timer.

    Setting that timer starts a thread in C and stopping it waits for that thread, a millisecond or more on a
    busy machine: too much for every call of a cheap reward. So a call sets it only when it is not set far
    enough ahead (it is set GRACE beyond the need, so calls in quick succession share one setting), and the
    watcher stops it after _IDLE seconds without a call, before it could end a process that is only
    generating. The process then ends between GRACE and 2 x GRACE seconds after a call's limit.
    """

    def __init__(self) -> None:
        # `with self.lock`, not `with self.changed`: a C lock's __enter__ runs no Python code, so an interruption
        # raised in a reward's thread as it takes the lock cannot leave the lock taken and the block not begun
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.calls: set[_Call] = set()
        self.wake_at = float("inf")  # when the thread next looks, so a later deadline need not wake it
        self.thread: threading.Thread | None = None
        self.hard_until: float | None = None  # when faulthandler's timer ends the process; None: not set
        self.idle_since = 0.0

    def add(self, call: _Call) -> None:
        with self.lock:
            self.calls.add(call)
            if self.hard_until is None or self.hard_until < call.end + GRACE:
                # to fd 2: sys.stderr may be a stream without a file descriptor (a notebook, pytest's capture)
                faulthandler.dump_traceback_later(call.end + 2 * GRACE - time.monotonic(), exit=True, file=2)
                self.hard_until = call.end + 2 * GRACE
            if self.thread is None or not self.thread.is_alive():  # a fork's child has no watcher thread
                self.thread = threading.Thread(target=self._run, name="rlvr-reward-deadline", daemon=True)
                self.thread.start()
            if call.next_signal < self.wake_at:
                self.changed.notify()

    def remove(self, call: _Call) -> None:
        # Under the lock: once it returns no interruption of this call is sent any more, and none is pending.
        with self.lock:
            if call.sent:
                raise_in_thread(call.thread, None)  # withdrawn, if not delivered yet
            self.calls.discard(call)
            if not self.calls:
                self.idle_since = time.monotonic()
                if self.idle_since + _IDLE < self.wake_at:
                    self.changed.notify()

    def _run(self) -> None:
        with self.lock:
            while True:
                now = time.monotonic()
                for call in self.calls:
                    if now >= call.next_signal:
                        call.expired = True
                        call.next_signal = now + _RESEND
                        if call.thread != threading.main_thread().ident:
                            call.next_signal = float("inf")  # one interruption only (module docstring)
                            call.sent, call.sent_at = raise_in_thread(call.thread, _Expired), now
                        elif _SIGNAL is not None and signal.getsignal(_SIGNAL) is _interrupt:
                            signal.pthread_kill(call.thread, _SIGNAL)
                wakes = [call.next_signal for call in self.calls]
                if self.hard_until is not None and not self.calls:
                    if now >= self.idle_since + _IDLE:
                        faulthandler.cancel_dump_traceback_later()
                        self.hard_until = None
                    else:
                        wakes.append(self.idle_since + _IDLE)
                self.wake_at = min(wakes, default=float("inf"))
                self.changed.wait(None if self.wake_at == float("inf") else self.wake_at - now)


_watcher = _Watcher()
_current: list[_Call] = []  # the main thread's calls under a limit, innermost last


def _interrupt(signum: int, frame: object) -> None:
    if _current and _current[-1].expired and not _current[-1].done:
        raise _Expired


def call_with_limit(call: Callable[[], T], seconds: float | None) -> T:
    """`call()`, interrupted after `seconds` (None: no limit) with `TimeLimitExceeded`; a call that cannot
    be interrupted ends the process `GRACE` to 2 x `GRACE` seconds later (see the module's docstring).

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
    interrupted = False
    try:
        try:
            _watcher.add(entry)  # in the try: a call whose limit passed before add() returned is met here
            result = call()
        finally:
            entry.done = True  # the main thread's handler raises nothing after this line
    except _Expired:
        interrupted = True
    finally:
        while True:  # off the main thread the one interruption may arrive until remove() withdraws it
            try:
                _watcher.remove(entry)
                break
            except _Expired:  # after the call: it came back late, if at all (entry.expired below)
                pass
        if main:
            _current.remove(entry)
            # None: a handler set outside Python, which cannot be put back; the default then
            signal.signal(_SIGNAL, signal.SIG_DFL if previous is None else previous)
    # off the main thread a call waiting in C at its limit takes the interruption only when the wait ends
    if interrupted and (main or time.monotonic() - entry.sent_at < _PROMPT):
        raise TimeLimitExceeded(f"interrupted after {seconds:g}s")
    if entry.expired:
        raise TimeLimitExceeded(f"returned after its limit of {seconds:g}s")
    return result
