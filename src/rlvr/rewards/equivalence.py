"""Is a predicted final answer equal to the gold one?

Two paths. Plain numbers ("1,000", "$18.00", "18 dollars", "3/4", "1 1/2", "50%", `\\frac{1}{2}`, "3,5") are
compared exactly as fractions in this process, in microseconds. Everything else (LaTeX expressions, intervals, sets,
tuples, equations, inequalities, matrices) goes to Hugging Face math-verify in a child process that is killed when
it overruns the deadline: math-verify's own timeout uses SIGALRM, which fails off the main thread, and no signal can
interrupt sympy while it multiplies out `5^{5^{5^{5^5}}}` in C.

This module imports only the standard library at the top: the child process runs this very file as a script
(see `_Sandbox`), without importing the `rlvr` package.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Any

# A final answer is short. Longer strings (a 10,000-digit "number", a runaway generation) are compared as strings
# only, never parsed: int() refuses more than 4,300 digits and sympy can spend minutes on them.
MAX_ANSWER_CHARS = 1000
_CACHE_SIZE = 4096  # GRPO scores the same few answers many times per group
_SANDBOX_RUN_NAME = "__rlvr_math_sandbox__"

_MATH_DELIMITERS = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}")
# "x \in [-2, 7]": the set is the answer, whatever the variable is called.
_MEMBERSHIP = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?\s*\\in\s*")
_ASSIGNMENT = re.compile(r"^[A-Za-z]\w*\s*=\s*(?=[-+$\\.\d])")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°")
_PERCENT = re.compile(r"\s*(?:\\%|%|\s+percent)$")
_CURRENCY_PREFIX = re.compile(r"^([+-]?)\s*(?:\\\$|\$|US\$|€|£|¥|₹)\s*")
_CURRENCY_SUFFIX = re.compile(r"\s*(?:\\\$|\$|€|£|¥|₹)$")
_UNIT_WORDS = re.compile(r"(.*?[\d.}])\s*((?:[A-Za-z]{2,}\.?\s*)+)")
# Words that change the value, so are not units: "2 pi" is not 2, "5 million" is not 5.
_NOT_UNITS = frozenset(
    "pi sqrt inf infty infinity log ln exp sin cos tan mod frac"
    " hundred thousand million billion trillion dozen half quarter squared cubed".split()
)
# Commas are read by their digits: groups of exactly three after the first are thousands ("1,000", "12,345,678"),
# one comma followed by any other count of digits is a decimal comma ("3,5" is 3.5, "1,0000" is 1).
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+")
# A decimal of at least this many places that is within one unit of its last place of an exact fraction is that
# fraction: 0.0833333333333333 is 1/12 as a float prints it; 0.33 is not 1/3.
_MIN_FLOAT_PLACES = 6
# A gold decimal of at least this many places is matched by a fraction that rounds to it: a gold of 0.33 means 1/3.
_MIN_GOLD_PLACES = 2
_DECIMAL = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_PLAIN_NUMBER = re.compile(rf"{_DECIMAL}(?:[eE][+-]?\d{{1,3}})?")
_FRACTION = re.compile(rf"({_DECIMAL})\s*/\s*({_DECIMAL})")
_MIXED_NUMBER = re.compile(r"([+-]?)(\d+)\s+(\d+)\s*/\s*(\d+)")
_LATEX_FRACTION = re.compile(rf"([+-]?)\\frac\s*\{{\s*({_DECIMAL})\s*\}}\s*\{{\s*({_DECIMAL})\s*\}}")
_LATEX_FRACTION_SHORT = re.compile(r"([+-]?)\\frac\s*(\d)(\d)")


def math_equal(pred: Any, gold: Any, timeout: float = 5.0) -> bool:
    """True when the predicted final answer equals the gold one; never raises, never runs past `timeout` seconds.

    >>> math_equal("$18.00", "18"), math_equal("1,000", "1000"), math_equal("-3", "3")
    (True, True, False)
    >>> math_equal(r"\\frac{1}{2}", "0.5"), math_equal("50%", "0.5")
    (True, True)
    >>> math_equal(r"\\sqrt{2}/2", r"\\frac{\\sqrt{2}}{2}")  # math-verify, in a child process
    True
    """
    try:
        return _math_equal(pred, gold, float(timeout))
    except Exception:
        return False


def math_equal_many(pairs: Sequence[tuple[Any, Any]], timeout: float = 5.0) -> list[bool]:
    """`math_equal` of each `(pred, gold)` pair, the distinct symbolic ones compared side by side.

    A GRPO batch holds many completions: each comparison sympy has to make takes tens of milliseconds in a
    math-verify child, and the pool runs one child per CPU core (at least two).

    >>> math_equal_many([("0.5", r"\\frac{1}{2}"), (r"\\sqrt{4}", "2"), ("3", "4")])
    [True, True, False]
    """
    distinct = list(dict.fromkeys((_as_text(p), _as_text(g)) for p, g in pairs))
    if len(distinct) <= 1:
        return [math_equal(p, g, timeout) for p, g in pairs]
    with ThreadPoolExecutor(max_workers=min(len(distinct), _pool_size())) as executor:
        verdicts = dict(
            zip(distinct, executor.map(lambda pair: math_equal(*pair, timeout), distinct), strict=True)
        )
    return [verdicts[(_as_text(p), _as_text(g))] for p, g in pairs]


def _math_equal(pred: Any, gold: Any, timeout: float) -> bool:
    pred_text, gold_text = _as_text(pred), _as_text(gold)
    if pred_text is None or gold_text is None:
        return False
    pred_text, gold_text = normalize_answer(pred_text), normalize_answer(gold_text)
    if not pred_text or not gold_text:
        return False
    if pred_text == gold_text:
        return True
    if len(pred_text) > MAX_ANSWER_CHARS or len(gold_text) > MAX_ANSWER_CHARS:
        return False
    pred_number, gold_number = _parse_number(pred_text), _parse_number(gold_text)
    if pred_number is not None and gold_number is not None:
        if _numbers_equal(pred_number, gold_number):
            return True
        # "1,2" against "2,1": two decimal commas, or two lists of numbers; math-verify reads them as lists.
        if not (_DECIMAL_COMMA.fullmatch(pred_text) and _DECIMAL_COMMA.fullmatch(gold_text)):
            return False
    elif re.sub(r"\s+", "", pred_text) == re.sub(r"\s+", "", gold_text):
        return (
            True  # "(3, 2)" and "(3,2)": spacing never changes a formula (numbers, "1 1/2", are read above)
        )
    if huge_power(pred_text) or huge_power(gold_text):
        return False
    pred_text, gold_text = _MEMBERSHIP.sub("", pred_text), _MEMBERSHIP.sub("", gold_text)
    return _symbolic_equal(pred_text, gold_text, timeout)


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def normalize_answer(text: str) -> str:
    """Strip what never changes an answer's value: math delimiters, a whole `\\boxed{}`, LaTeX spacing, `\\left`.

    >>> normalize_answer(r"$\\boxed{\\dfrac{1}{2}}$.")
    '\\\\frac{1}{2}'
    """
    text = text.strip()
    for _ in range(3):  # "$\boxed{5}$" needs two rounds
        before = text
        for left, right in _MATH_DELIMITERS:
            inner = text[len(left) : -len(right)]
            if len(text) > len(left) + len(right) and text.startswith(left) and text.endswith(right):
                if left not in ("$", "$$") or "$" not in inner:  # "$x$ and $y$" is two formulas
                    text = inner.strip()
        opener = _BOXED.match(text)
        if opener is not None and text.endswith("}") and _balanced(text[opener.end() : -1]):
            text = text[opener.end() : -1].strip()
        text = text.rstrip(".").strip()
        if text == before:
            break
    text = text.replace("\\!", "")  # a negative thin space joins what it stands between: "1\!000" is 1000
    text = re.sub(r"\\[,;: ]", " ", text)
    text = text.replace("\\left", "").replace("\\right", "")
    text = re.sub(r"\\[dtc]frac", r"\\frac", text)
    text = re.sub(r"\s+", " ", text).strip()
    whole_text = _TEXT_COMMAND.fullmatch(text)
    return whole_text.group(1).strip() if whole_text else text  # "\text{Evelyn}" is the word Evelyn


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def parse_number(text: str) -> tuple[Fraction, bool] | None:
    """`(value, is_percent)` when `text` is a plain number with optional currency, units, commas or percent sign.

    >>> parse_number("$1,234.50")
    (Fraction(2469, 2), False)
    >>> parse_number("1 1/2 cups")
    (Fraction(3, 2), False)
    >>> parse_number("x + 1") is None
    True
    """
    parsed = _parse_number(text)
    return None if parsed is None else parsed[:2]


def _parse_number(text: str) -> tuple[Fraction, bool, int | None] | None:
    """`(value, is_percent, places)`: `places` counts the digits after a decimal point, 0 for an integer, None for
    a number written exactly as a fraction or with an exponent."""
    if not isinstance(text, str) or len(text) > MAX_ANSWER_CHARS:
        return None
    text = normalize_answer(text)
    text = _TEXT_COMMAND.sub(r" \1 ", text).replace("{,}", ",")
    text = _ASSIGNMENT.sub("", text.strip())
    text = _DEGREES.sub("", text).strip()
    is_percent = _PERCENT.search(text) is not None
    text = _PERCENT.sub("", text).strip()
    text = _CURRENCY_PREFIX.sub(r"\1", text)
    text = _CURRENCY_SUFFIX.sub("", text).strip()
    units = _UNIT_WORDS.fullmatch(text)
    if units is not None and not any(
        word.lower().rstrip(".") in _NOT_UNITS for word in units.group(2).split()
    ):
        text = units.group(1).strip()
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    elif _DECIMAL_COMMA.fullmatch(text):
        text = text.replace(",", ".")
    value = _number_value(text)
    if value is None:
        return None
    places = None
    if _PLAIN_NUMBER.fullmatch(text) and "e" not in text.lower():
        places = len(text.rstrip(".").partition(".")[2])
    return value, is_percent, places


def _number_value(text: str) -> Fraction | None:
    if _PLAIN_NUMBER.fullmatch(text):
        return Fraction(text.rstrip("."))
    if match := _MIXED_NUMBER.fullmatch(text):
        sign = -1 if match.group(1) == "-" else 1
        whole, numerator, denominator = (int(match.group(i)) for i in (2, 3, 4))
        return None if denominator == 0 else sign * (whole + Fraction(numerator, denominator))
    for pattern in (_FRACTION, _LATEX_FRACTION, _LATEX_FRACTION_SHORT):
        if match := pattern.fullmatch(text):
            groups = match.groups()
            sign = -1 if len(groups) == 3 and groups[0] == "-" else 1
            numerator, denominator = Fraction(groups[-2]), Fraction(groups[-1])
            return None if denominator == 0 else sign * numerator / denominator
    return None


def numeric_equal(pred: str, gold: str) -> bool:
    """`math_equal` restricted to plain numbers: False unless both sides parse with `parse_number`.

    >>> numeric_equal("72 clips", "72"), numeric_equal(r"\\sqrt{4}", "2")
    (True, False)
    """
    pred_number, gold_number = _parse_number(pred), _parse_number(gold)
    return pred_number is not None and gold_number is not None and _numbers_equal(pred_number, gold_number)


def _numbers_equal(pred: tuple[Fraction, bool, int | None], gold: tuple[Fraction, bool, int | None]) -> bool:
    (pred_value, pred_percent, pred_places), (gold_value, gold_percent, gold_places) = pred, gold
    if pred_value == gold_value:
        return True
    if not pred_percent and not gold_percent:
        if pred_places is not None and pred_places >= _MIN_FLOAT_PLACES and gold_places is None:
            return abs(pred_value - gold_value) <= Fraction(1, 10**pred_places)
        if gold_places is not None and gold_places >= _MIN_GOLD_PLACES and pred_places is None:
            return round(pred_value, gold_places) == gold_value
    # One side written as a percentage: "50%" is both 50 and 0.5.
    if pred_percent and not gold_percent:
        return pred_value / 100 == gold_value
    if gold_percent and not pred_percent:
        return gold_value / 100 == pred_value
    return False


# sympy multiplies integer powers out eagerly: 2^{100000} takes milliseconds, 9^{9^9} (370 million digits) forever.
_MAX_POWER_DIGITS = 100_000
_POWER_CHAIN = re.compile(r"\d+(?:\^\d+)+")


def huge_power(text: str) -> bool:
    """True when `text` holds an integer power tower with over 100,000 digits, which no verifier should expand.

    Towers are read right-associatively after dropping braces (`5^{5^{5}}` is `5^(5^5)`), the way LaTeX means them.

    >>> huge_power("5^{5^{5^{5^5}}}"), huge_power("9**9**9"), huge_power("2^{10}"), huge_power("x^{5^5}")
    (True, True, False, False)
    """
    compact = re.sub(r"[\s{}]", "", text).replace("**", "^")
    for chain in _POWER_CHAIN.findall(compact):
        numbers = [int(n) for n in chain.split("^")]
        small = next((k for k, n in enumerate(numbers) if n <= 1), None)
        if small is not None:
            numbers = numbers[: small + 1]  # 0^n and 1^n are 0 and 1 however big n is
        value = numbers[-1]
        for base in reversed(numbers[:-1]):
            if value.bit_length() > 64 or value * math.log10(base) > _MAX_POWER_DIGITS:
                return True
            value = base**value
    return False


# ---------------------------------------------------------------------------------------------------------------
# The symbolic path: math-verify in a killable child process.

_cache: OrderedDict[tuple[str, str], bool] = OrderedDict()
_cache_lock = threading.Lock()


def _symbolic_equal(pred: str, gold: str, timeout: float) -> bool:
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
            _POOL = _SandboxPool(max_size=_pool_size())
        return _POOL


def _pool_size() -> int:
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


def _distinct_identities(gold: Any, pred: Any) -> bool:
    """True when both are equations that hold everywhere but speak of different functions or variables.

    math-verify compares equations by `lhs - rhs`, which is 0 for every identity, so it finds
    `\\sin^2 x + \\cos^2 x = 1` equal to `\\tan^2 y + 1 = \\sec^2 y`.
    """
    import sympy

    def signature(expr: Any) -> tuple | None:
        if not isinstance(expr, sympy.Eq) or not expr.free_symbols:
            return None
        return frozenset(type(f) for f in expr.atoms(sympy.Function)), frozenset(expr.free_symbols)

    try:
        gold_signature, pred_signature = signature(gold), signature(pred)
        if gold_signature is None or pred_signature is None or gold_signature == pred_signature:
            return (
                False  # the same functions of the same variables: math-verify's verdict stands, no simplify
            )
        return all(sympy.simplify(e.lhs - e.rhs) == 0 for e in (gold, pred))
    except Exception:  # sides sympy cannot subtract, e.g. tuples in "(p, q) = (3, 2)"
        return False


def _sandbox_main() -> None:
    from math_verify import parse, verify

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
            gold, pred = parse_math(request["gold"]), parse_math(request["pred"])
            # allow_set_relation_comp: "-2 \le x \le 7" against the interval "[-2, 7]" compares as sets.
            equal = bool(
                gold and pred and verify(gold, pred, allow_set_relation_comp=True, timeout_seconds=None)
            )
            if equal and _distinct_identities(gold[0], pred[0]):
                equal = False
        except Exception:
            equal = False
        out.write(json.dumps({"equal": equal}).encode() + b"\n")
        out.flush()


if __name__ == _SANDBOX_RUN_NAME:
    _sandbox_main()
