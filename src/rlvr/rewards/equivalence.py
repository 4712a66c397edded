"""Is a predicted final answer equal to the gold one?

Two paths. Plain numbers ("1,000", "$18.00", "18 dollars", "3/4", "1 1/2", "50%", `\\frac{1}{2}`, an answer's
"3,5") are compared exactly as fractions in this process, in microseconds, and so are answers that are only words. Everything else (LaTeX expressions, intervals, sets,
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
# Words after a number that change its value: scales, fractions, factorials. math-verify drops them with their
# `\text{}` ("5 \text{ thousandths}" is 5 to it), so an answer holding one is compared as text only.
_VALUE_WORDS = frozenset(
    "factorial factorials squared cubed hundred hundreds thousand thousands million millions billion billions"
    " trillion trillions dozen dozens score half halves quarter quarters third thirds fourth fourths fifth fifths"
    " sixth sixths seventh sevenths eighth eighths ninth ninths tenth tenths hundredth hundredths thousandth"
    " thousandths millionth millionths billionth billionths".split()
)
_NUMBER_AND_WORD = re.compile(r"\d\s*(?:\\text\s*\{\s*)?([A-Za-z]+)")
# Words that change the value, so are not units: "2 pi" is not 2, "5 million(s)" is not 5, "2 thirds" is not 2.
_NOT_UNITS = _VALUE_WORDS | frozenset(
    "pi sqrt root roots inf infty infinity log ln exp sin cos tan mod frac".split()
)
# Two letters after a number are a unit only when they are one of these: "5xy" and "3 ab" are products.
_TWO_LETTER_UNITS = frozenset(
    "cm mm km nm kg mg ml mL cl dl ft in yd mi oz lb hr ms ha kW kJ mV mA Hz am pm".split()
)
# Commas are read by their digits: groups of exactly three after the first are thousands ("1,000", "12,345,678"),
# on either side. In an answer, one comma followed by any other count of digits is a decimal comma ("3,5" is 3.5,
# "1,0000" is 1); in a gold it is a list, as MATH writes two roots ("-2,1"), so it goes to math-verify.
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
# A space (LaTeX's thin space "\,", or a plain one) is a thousands separator only before a group of exactly three.
_THOUSANDS_SPACE = re.compile(r"[+-]?\d{1,3}(?: \d{3})+(?:\.\d+)?")
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+")
# A decimal of at least this many significant digits that is within one unit of its last place of an exact
# fraction is that fraction: 0.0833333333333333 is 1/12 as a float prints it; 0.33 is not 1/3, nor 0.000004 1/300000.
_MIN_FLOAT_DIGITS = 6
# A gold decimal of at least this many places is matched by the simplest fraction that rounds to it (half up): a
# gold of 0.33 means 1/3, one of 0.75 means 3/4 and not 49/65, which also rounds to it.
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
    pred_number, gold_number = _parse_number(pred_text), _parse_number(gold_text, is_gold=True)
    if pred_number is not None and gold_number is not None:
        return _numbers_equal(pred_number, gold_number)
    if _without_spaces(pred_text) == _without_spaces(gold_text):
        return True  # "(3, 2)" and "(3,2)": spacing changes no formula, unless it separates digits ("1 2")
    words = _words_equal(pred_text, gold_text)
    if words is not None:
        return words
    if _has_value_word(pred_text) or _has_value_word(gold_text):
        return False  # "5 thousandths" is neither 5 nor anything math-verify can read
    lists = _lists_equal(pred_text, gold_text, pred_number, gold_number)
    if lists is not None:
        return lists
    if huge_power(pred_text) or huge_power(gold_text):
        return False
    pred_text, gold_text = _MEMBERSHIP.sub("", pred_text), _MEMBERSHIP.sub("", gold_text)
    return _symbolic_equal(pred_text, gold_text, timeout)


def _without_spaces(text: str) -> str:
    return re.sub(r"(?<!\d)\s+|\s+(?!\d)", "", text)


_WORDS = re.compile(r"[A-Za-z]+(?: [A-Za-z]+)*")


def _words_equal(pred: str, gold: str) -> bool | None:
    """Answers that are only words ("Even", "Tuesday") compare as words, ignoring case; None when either is not.

    Single letters and two-letter products stay with math-verify, where `x` is a variable and `ab` is `a*b`.
    """
    if not (_WORDS.fullmatch(pred) and _WORDS.fullmatch(gold)):
        return None
    if pred.casefold() == gold.casefold():
        return True
    if max(map(len, pred.split())) >= 3 and max(map(len, gold.split())) >= 3:
        return False
    return None


# Tuples, intervals, sets, bare lists and ratios of plain numbers are compared here, as math-verify would compare
# them, without a round trip to sympy. Anything it reads less plainly (nested tuples, matrices, thousands commas
# inside a list, decimals that differ) still goes to it.
_LIST_ELEMENT = re.compile(r"[+-]?(?:\d+(?:\.\d+)?|\.\d+|\\infty|\\frac\{\d+\}\{\d+\}|\d+/\d+)")
_LIST = re.compile(r"(\\\{|[(\[])?\s*([^(){}\[\]]*?)\s*(\\\}|[)\]])?")
_INTERVAL_ENDS = frozenset("()[]")


def _number_list(text: str) -> tuple[str, list[Fraction | float], bool] | None:
    """`(kind, values, exact)` of a list of at least two plain numbers: kind is the brackets ("()", "[)", "{}", ""
    for a bare list, ":" for a ratio, " " for numbers separated by spaces); exact when every value is an integer."""
    if ":" in text:
        parts, kind = text.split(":"), ":"
    elif (match := _LIST.fullmatch(text)) is not None and "," in match.group(2):
        opener, body, closer = match.groups()
        if (opener is None) != (closer is None) or re.search(r"\d,\d{3}(?!\d)", body):
            return None  # unbalanced, or "1,000" inside a list: thousands or two elements
        kind = "{}" if opener == "\\{" else (opener or "") + (closer or "")
        if kind not in ("", "{}") and not (kind[0] in _INTERVAL_ENDS and kind[1] in _INTERVAL_ENDS):
            return None
        parts = body.split(",")
    elif re.fullmatch(r"[+-]?\d+(?: +\d+)+", text):
        parts, kind = text.split(), " "
    else:
        return None
    values: list[Fraction | float] = []
    for part in (p.strip() for p in parts):
        if not _LIST_ELEMENT.fullmatch(part):
            return None
        if part.endswith("\\infty"):
            values.append(-math.inf if part.startswith("-") else math.inf)
        else:
            value = _number_value(part.replace("\\frac{", "").replace("}{", "/").rstrip("}"))
            if value is None:
                return None
            values.append(value)
    if len(values) < 2:
        return None
    exact = all(isinstance(v, float) or v.denominator == 1 for v in values)
    return kind, values, exact


def _lists_equal(pred: str, gold: str, pred_number: Any, gold_number: Any) -> bool | None:
    """True or False when both sides are lists of plain numbers (or one is a number) and the answer is plain; None
    to ask math-verify."""
    pred_list, gold_list = _number_list(pred), _number_list(gold)
    one_list = pred_list if gold_list is None else gold_list if pred_list is None else None
    number = gold_number if gold_list is None else pred_number
    if one_list is not None and one_list[0] != ":" and number is not None:
        return False  # one number against several: "(3, 2)" does not answer 2, "1 2" is not 12
    if pred_list is None or gold_list is None:
        return None
    (pred_kind, pred_values, pred_exact), (gold_kind, gold_values, gold_exact) = pred_list, gold_list
    if " " in (pred_kind, gold_kind):
        return None
    if pred_kind == ":" or gold_kind == ":":
        if pred_kind != gold_kind or len(pred_values) != 2 or len(gold_values) != 2:
            return None
        if math.inf in map(abs, pred_values + gold_values) or 0 in (pred_values[1], gold_values[1]):
            return None
        equal = (
            pred_values[0] / pred_values[1] == gold_values[0] / gold_values[1]
        )  # math-verify reads 2:4 as 1/2
    elif pred_kind in ("", "{}") and gold_kind in ("", "{}"):
        equal = set(pred_values) == set(gold_values)  # a bare list is a set, as to math-verify
    elif "{}" in (pred_kind, gold_kind) and "" not in (pred_kind, gold_kind):
        return (
            False if len(pred_values) == len(gold_values) == 2 else None
        )  # a pair or an interval is not a set
    elif "" in (pred_kind, gold_kind):
        return None  # "1, 2" against "(1, 2)": math-verify's call
    elif len(pred_values) == len(gold_values) == 2 and pred_kind != gold_kind:
        return False  # intervals with other ends: "[1, 2)" is not "(1, 2)"
    elif pred_kind == gold_kind:
        equal = pred_values == gold_values  # tuples and intervals in order
    else:
        return None
    if equal:
        return True
    return False if pred_exact and gold_exact else None  # unequal decimals may still round alike


def _has_value_word(text: str) -> bool:
    return any(word.lower() in _VALUE_WORDS for word in _NUMBER_AND_WORD.findall(text))


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
    text = text.replace("{,}", ",")  # TeX's comma inside a number: "10{,}000"
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


def _parse_number(text: str, is_gold: bool = False) -> tuple[Fraction, bool, int | None, int] | None:
    """`(value, is_percent, places, digits)`: `places` counts the digits after a decimal point, 0 for an integer,
    None for a number written exactly as a fraction or with an exponent; `digits` counts significant digits.
    A gold's decimal comma is a list, not a number."""
    if not isinstance(text, str) or len(text) > MAX_ANSWER_CHARS:
        return None
    text = normalize_answer(text)
    text = re.sub(r"\s+", " ", _TEXT_COMMAND.sub(r" \1 ", text)).strip()
    text = _ASSIGNMENT.sub("", text.strip())
    text = _DEGREES.sub("", text).strip()
    is_percent = _PERCENT.search(text) is not None
    text = _PERCENT.sub("", text).strip()
    text = _CURRENCY_PREFIX.sub(r"\1", text)
    text = _CURRENCY_SUFFIX.sub("", text).strip()
    units = _UNIT_WORDS.fullmatch(text)
    if units is not None and not any(
        word.lower().rstrip(".") in _NOT_UNITS
        or (len(word.rstrip(".")) == 2 and word.rstrip(".") not in _TWO_LETTER_UNITS)
        for word in units.group(2).split()
    ):
        text = units.group(1).strip()
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    elif _THOUSANDS_SPACE.fullmatch(text):
        text = text.replace(" ", "")
    elif _DECIMAL_COMMA.fullmatch(text):
        if is_gold:
            return None
        text = text.replace(",", ".")
    value = _number_value(text)
    if value is None:
        return None
    places, digits = None, 0
    if _PLAIN_NUMBER.fullmatch(text) and "e" not in text.lower():
        places = len(text.rstrip(".").partition(".")[2])
        digits = len(re.sub(r"\D", "", text).lstrip("0"))
    return value, is_percent, places, digits


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
    pred_number, gold_number = _parse_number(pred), _parse_number(gold, is_gold=True)
    return pred_number is not None and gold_number is not None and _numbers_equal(pred_number, gold_number)


def _numbers_equal(
    pred: tuple[Fraction, bool, int | None, int], gold: tuple[Fraction, bool, int | None, int]
) -> bool:
    (pred_value, pred_percent, pred_places, pred_digits) = pred
    (gold_value, gold_percent, gold_places, _) = gold
    if pred_percent != gold_percent:
        # One side is a percentage, the other a plain number: below 1 that number is a fraction (0.5 is 50%, not
        # 0.5%), above 1 it is in percent (50 is 50%, not 5000%), and 1 reads either way.
        percent, plain = (pred_value, gold_value) if pred_percent else (gold_value, pred_value)
        return (abs(plain) <= 1 and percent / 100 == plain) or (abs(plain) >= 1 and percent == plain)
    if pred_value == gold_value:
        return True
    if pred_places is not None and pred_digits >= _MIN_FLOAT_DIGITS and gold_places is None:
        return abs(pred_value - gold_value) <= Fraction(1, 10**pred_places)
    if gold_places is not None and gold_places >= _MIN_GOLD_PLACES and pred_places is None:
        half = Fraction(1, 2 * 10**gold_places)
        if (pred_value < 0) != (gold_value < 0) and gold_value != 0:
            return False
        low, high = abs(gold_value) - half, abs(gold_value) + half  # [low, high) rounds half up to the gold
        return abs(pred_value) == _simplest_between(max(low, Fraction(0)), high)
    return False


def _simplest_between(low: Fraction, high: Fraction) -> Fraction:
    """The fraction with the smallest denominator (then numerator) in `[low, high)`, for `0 <= low < high`.

    >>> _simplest_between(Fraction(325, 1000), Fraction(335, 1000)), _simplest_between(Fraction(5, 8), Fraction(3, 4))
    (Fraction(1, 3), Fraction(2, 3))
    """
    return _simplest(low, high, low_closed=True, high_closed=False)


def _simplest(low: Fraction, high: Fraction | None, low_closed: bool, high_closed: bool) -> Fraction:
    # The Stern-Brocot walk by continued fractions: the smallest whole number inside, else floor + 1 / (the simplest
    # fraction in the reciprocal interval). Each step is one continued-fraction term, so at most a few dozen.
    # `high` None is no upper bound.
    whole = math.floor(low)
    first = whole if (low_closed and whole == low) else whole + 1
    if high is None or first < high or (high_closed and first == high):
        return Fraction(first)
    reciprocal_low = 1 / (high - whole)
    reciprocal_high = None if low == whole else 1 / (low - whole)
    return whole + 1 / _simplest(
        reciprocal_low, reciprocal_high, low_closed=high_closed, high_closed=low_closed
    )


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
        return sympy.simplify(relation.lhs - relation.rhs) == 0
    except Exception:  # sides sympy cannot subtract, e.g. tuples
        return False


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
