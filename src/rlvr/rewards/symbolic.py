"""The symbolic path of `math_equal`: Hugging Face math-verify in a killable child process, and their protocol.

The parent (`symbolic_equal`) sends one JSON line per comparison to an idle child from a pool and waits for its
answer until the deadline; a child that overruns is killed and replaced: math-verify's own timeout uses SIGALRM, which
fails off the main thread, and no signal can interrupt sympy while it multiplies out `5^{5^{5^{5^5}}}` in C. The
child (`_sandbox_main`) parses both sides with math-verify, verifies, and overrules the readings rlvr does not accept
(`_rejected`).

This module imports only the standard library at the top: the child process runs this very file as a script
(see `_Sandbox`), without importing the `rlvr` package. The fast paths in `equivalence.py` import it, never the
other way round.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from typing import Any

_CACHE_SIZE = 4096  # GRPO scores the same few answers many times per group
_SANDBOX_RUN_NAME = "__rlvr_math_sandbox__"

# ---------------------------------------------------------------------------------------------------------------
# The parent side: a cache of verdicts, and a pool of children shared by the threads of one process.

_cache: OrderedDict[tuple[str, str], bool] = OrderedDict()
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every cached verdict (benchmarks time cold comparisons)."""
    with _cache_lock:
        _cache.clear()


def symbolic_equal(pred: str, gold: str, timeout: float) -> bool:
    """math-verify's verdict on two normalised answers, from a child process; False when it overran `timeout`.

    >>> symbolic_equal(r"\\sqrt{2}/2", r"\\frac{\\sqrt{2}}{2}", timeout=30.0)
    True
    """
    key = (pred, gold)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    result = _pool().compare(pred, gold, timeout)
    if result is None:  # timed out or the child died: not cached, the next call may have more time
        return False
    with _cache_lock:
        _cache[key] = result
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return result


class _Sandbox:
    """One child Python process running math-verify, fed one JSON line per comparison."""

    def __init__(self) -> None:
        # -I: no user site or PYTHON* variables; sys.path is the parent's, so the same math-verify is found.
        code = (
            f"import runpy, sys; sys.path[:] = {sys.path!r}; "
            f"runpy.run_path({os.path.abspath(__file__)!r}, run_name={_SANDBOX_RUN_NAME!r})"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
        )
        self.ready = False
        self._buffer = b""

    def wait_ready(self, deadline: float) -> bool:
        if not self.ready:
            self.ready = self._read_line(deadline) is not None
        return self.ready

    def compare(self, pred: str, gold: str, deadline: float) -> bool | None:
        cpu_seconds = max(deadline - time.monotonic(), 0.0)
        request = json.dumps({"pred": pred, "gold": gold, "cpu_seconds": cpu_seconds}) + "\n"
        self.process.stdin.write(request.encode())
        self.process.stdin.flush()
        line = self._read_line(deadline)
        return None if line is None else bool(json.loads(line)["equal"])

    def _read_line(self, deadline: float) -> bytes | None:
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise EOFError("math-verify sandbox exited")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def kill(self) -> None:
        try:
            self.process.kill()
            self.process.wait(timeout=5)
        except Exception:
            pass
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except Exception:
                pass


class _SandboxPool:
    """Sandboxes shared by the threads of one process; at most `max_size` exist, each serves one call at a time."""

    def __init__(self, max_size: int) -> None:
        self.pid = os.getpid()
        self._max_size = max_size
        self._condition = threading.Condition()
        self._idle: list[_Sandbox] = []
        self._all: set[_Sandbox] = set()

    def compare(self, pred: str, gold: str, timeout: float) -> bool | None:
        deadline = time.monotonic() + timeout
        sandbox = self._acquire(deadline)
        if sandbox is None:
            return None
        keep = False
        try:
            if not sandbox.wait_ready(deadline):
                keep = True  # still importing math-verify: the next call gets it warm
                return None
            result = sandbox.compare(pred, gold, deadline)
            keep = result is not None
            return result
        except (OSError, EOFError, ValueError, KeyError):
            return None
        finally:
            self._release(sandbox, keep)

    def _acquire(self, deadline: float) -> _Sandbox | None:
        with self._condition:
            while True:
                if self._idle:
                    return self._idle.pop()
                if len(self._all) < self._max_size:
                    sandbox = _Sandbox()
                    self._all.add(sandbox)
                    return sandbox
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._condition.wait(remaining)

    def _release(self, sandbox: _Sandbox, keep: bool) -> None:
        if not keep or sandbox.process.poll() is not None:
            sandbox.kill()  # overran its deadline: killing is the only way to stop sympy
        with self._condition:
            if keep and sandbox.process.poll() is None:
                self._idle.append(sandbox)
            else:
                self._all.discard(sandbox)
            self._condition.notify()

    def close(self) -> None:
        with self._condition:
            sandboxes, self._all, self._idle = list(self._all), set(), []
        for sandbox in sandboxes:
            sandbox.kill()


_POOL: _SandboxPool | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> _SandboxPool:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():
            _POOL = _SandboxPool(max_size=pool_size())
        return _POOL


def pool_size() -> int:
    """How many math-verify children a process runs at most: one per CPU core, at least two."""
    return max(2, os.cpu_count() or 2)


def _forget_pool_after_fork() -> None:
    # A forked child must not talk to its parent's sandboxes, and the lock may have been held at fork time.
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


def _close_pool() -> None:
    if _POOL is not None and _POOL.pid == os.getpid():
        _POOL.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)
atexit.register(_close_pool)


# ---------------------------------------------------------------------------------------------------------------
# The child side, run as `runpy.run_path(this_file, run_name=_SANDBOX_RUN_NAME)`.


def _limit_cpu(seconds: float) -> None:
    """Let the kernel kill this child if it computes past its budget, e.g. after its parent died mid-call."""
    try:
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        soft = int(usage.ru_utime + usage.ru_stime + seconds) + 2
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    except Exception:
        pass


def _rejected(gold: Any, pred: Any, pred_text: str) -> bool:
    """True when math-verify found `pred` equal to `gold` by a reading rlvr does not accept (each is a reward hack).

    - An equation against a value: math-verify keeps the equation's right side, so `x + 1 = 5` and `2 + 2 = 5`
      would answer 5. rlvr keeps it only for an assignment (`x = 5`, `(p, q) = (3, 2)`, `V_1:V_2 = 11:21`) or an
      equation of numbers that holds (`3 + 4 = 7`), and every equation of numbers in a chain must hold.
    - Two equations, the gold an identity: `lhs - rhs` is 0 for every identity, so math-verify finds
      `\\sin^2 x + \\cos^2 x = 1` (or `1 = 1`) equal to `\\tan^2 y + 1 = \\sec^2 y`. rlvr asks for the same terms,
      up to moving them across, a nonzero factor and renaming the variables.
    - A pair or an interval against a set: math-verify reads `(0, 1)` as the set `{0, 1}` when the other side is
      one. An explicit `\\{...\\}` is not an interval or a pair either.
    """
    import sympy
    from math_verify.grader import is_assignment_relation, is_equation

    if isinstance(gold, sympy.FiniteSet) and isinstance(pred, sympy.Interval):
        return True
    if isinstance(gold, sympy.Interval) and isinstance(pred, sympy.FiniteSet) and pred_text.startswith("\\{"):
        return True
    if is_equation(pred) and not is_equation(gold):
        relations = list(pred.args) if isinstance(pred, sympy.And) else [pred]
        assignment = is_assignment_relation(pred)
        for relation in relations:
            if relation.free_symbols:
                if not assignment:
                    return True
            elif not _holds(relation):
                return True
        return False
    if isinstance(gold, sympy.Eq) and isinstance(pred, sympy.Eq) and gold.free_symbols:
        return not _same_terms(gold, pred) and sympy.simplify(gold.lhs - gold.rhs) == 0
    return False


def _holds(relation: Any) -> bool:
    import sympy

    if relation.lhs == relation.rhs:
        return True
    try:
        difference = sympy.simplify(relation.lhs - relation.rhs)
    except Exception:  # sides sympy cannot subtract, e.g. tuples
        return False
    # A product of matrices equal to its value leaves a zero matrix, which is not the number 0.
    return difference == 0 or bool(getattr(difference, "is_zero_matrix", False))


def _same_terms(gold: Any, pred: Any) -> bool:
    """Whether two equations have the same terms once moved to one side, up to a nonzero factor and the names
    of their variables; no trigonometric or algebraic rewriting."""
    import sympy

    gold_symbols = sorted(gold.free_symbols, key=str)
    pred_symbols = sorted(pred.free_symbols, key=str)
    if len(gold_symbols) != len(pred_symbols):
        return False
    try:
        pred = pred.subs(dict(zip(pred_symbols, gold_symbols, strict=True)), simultaneous=True)
        gold_terms = sympy.expand(gold.lhs - gold.rhs).as_coefficients_dict()
        pred_terms = sympy.expand(pred.lhs - pred.rhs).as_coefficients_dict()
    except Exception:
        return False
    if set(gold_terms) != set(pred_terms) or not gold_terms:
        return False
    ratios = {sympy.nsimplify(gold_terms[t] / pred_terms[t]) for t in gold_terms if pred_terms[t] != 0}
    return len(ratios) == 1 and 0 not in ratios


def _sandbox_main() -> None:
    from functools import lru_cache

    from math_verify import parse, verify

    # A GRPO group compares one gold with many answers, and ANTLR parsing is most of a comparison's time.
    @lru_cache(maxsize=_CACHE_SIZE)
    def parse_math(text: str) -> list:
        # math-verify's LaTeX extractor looks for math delimiters: a bare "\sqrt{2}/2" parses only inside $...$.
        for candidate in (f"${text}$", text):
            parsed = parse(candidate, parsing_timeout=None)
            if parsed:
                return parsed
        return []

    out = sys.stdout.buffer
    out.write(b"ready\n")
    out.flush()
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            _limit_cpu(float(request.get("cpu_seconds", 5.0)))
            gold, pred = list(parse_math(request["gold"])), list(parse_math(request["pred"]))
            # allow_set_relation_comp: "-2 \le x \le 7" against the interval "[-2, 7]" compares as sets.
            equal = bool(
                gold and pred and verify(gold, pred, allow_set_relation_comp=True, timeout_seconds=None)
            )
            if equal and _rejected(gold[0], pred[0], request["pred"]):
                equal = False
        except Exception:
            equal = False
        out.write(json.dumps({"equal": equal}).encode() + b"\n")
        out.flush()


if __name__ == _SANDBOX_RUN_NAME:
    _sandbox_main()
