"""Is a predicted final answer equal to the gold one? rlvr's own fast paths, then math-verify for the rest.

Two paths. Plain numbers ("1,000", "$18.00", "18 dollars", "3/4", "1 1/2", "50%", `\\frac{1}{2}`, an answer's
"3,5") are compared exactly as fractions in this process, in microseconds, and so are lists of them and answers that
are only words; this module normalises both sides and decides those. Everything else (LaTeX expressions, intervals,
sets, tuples, equations, inequalities, matrices) goes to Hugging Face math-verify in a child process that is killed
when it overruns the deadline (`symbolic.py`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Any

from rlvr.rewards.symbolic import pool_size, symbolic_equal

# A final answer is short. Longer strings (a 10,000-digit "number", a runaway generation) are compared as strings
# only, never parsed: int() refuses more than 4,300 digits and sympy can spend minutes on them.
MAX_ANSWER_CHARS = 1000

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
    with ThreadPoolExecutor(max_workers=min(len(distinct), pool_size())) as executor:
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
    matrices = _matrices_equal(pred_text, gold_text)
    if matrices is not None:
        return matrices
    if huge_power(pred_text) or huge_power(gold_text):
        return False
    pred_text, gold_text = _MEMBERSHIP.sub("", pred_text), _MEMBERSHIP.sub("", gold_text)
    return symbolic_equal(pred_text, gold_text, timeout)


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


# Tuples, intervals, sets, bare lists, ratios and matrices of plain numbers are compared here, entry by entry with
# the rules for numbers (a gold's rounded entry is matched at its precision), without a round trip to sympy.
# Anything less plain (nested tuples, symbols, thousands commas inside a list) still goes to math-verify.
_ENTRY = re.compile(
    r"[+-]?(?:\d+(?:\.\d+)?|\.\d+|\\frac\{\d+(?:\.\d+)?\}\{\d+(?:\.\d+)?\}|\\frac\d\d|\d+/\d+)|[+-]?\\infty"
)
# Brackets around a body of entries, which may hold simple brace groups (`\frac{1}{3}`) but no nested brackets.
_LIST = re.compile(r"(\\\{|[(\[])?\s*((?:[^(){}\[\]\\]|\\(?![{}])|\{[^{}]*\})*?)\s*(\\\}|[)\]])?")
_INTERVAL_ENDS = frozenset("()[]")
# A matrix: `pmatrix`, `bmatrix`, `Bmatrix`, `matrix`, `smallmatrix`, or an `array` in brackets (`\left` and
# `\right` are gone by then). `vmatrix` is a determinant, a number, and stays with math-verify.
_MATRIX = re.compile(
    r"([(\[]?)\s*\\begin\{([pbB]?matrix|smallmatrix|array)\}(?:\{[^{}]*\})?(.*?)\\end\{\2\}\s*([)\]]?)",
    re.DOTALL,
)

# (value, is_percent, places, digits) as `_parse_number` gives them; an infinite value is a float.
_Number = tuple[Fraction | float, bool, int | None, int]


def _entry(text: str, is_gold: bool) -> _Number | None:
    """One plain number of a list or matrix, or None."""
    text = text.strip()
    if not _ENTRY.fullmatch(text):
        return None
    if text.endswith("\\infty"):
        return (-math.inf if text.startswith("-") else math.inf), False, None, 0
    return _parse_number(text, is_gold)


def _number_list(text: str, is_gold: bool = False) -> tuple[str, list[_Number]] | None:
    """`(kind, entries)` of a list of at least two plain numbers: kind is the brackets ("()", "[)", "{}", "" for a
    bare list, ":" for a ratio, " " for numbers separated by spaces)."""
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
    entries = [_entry(part, is_gold) for part in parts]
    if len(entries) < 2 or None in entries:
        return None
    return kind, entries


def _lists_equal(pred: str, gold: str, pred_number: Any, gold_number: Any) -> bool | None:
    """True or False when both sides are lists of plain numbers (or one is a number) and the answer is plain; None
    to ask math-verify."""
    pred_list, gold_list = _number_list(pred), _number_list(gold, is_gold=True)
    one_list = pred_list if gold_list is None else gold_list if pred_list is None else None
    number = gold_number if gold_list is None else pred_number
    if one_list is not None and one_list[0] != ":" and number is not None:
        return False  # one number against several: "(3, 2)" does not answer 2, "1 2" is not 12
    if pred_list is None or gold_list is None:
        return None
    (pred_kind, pred_entries), (gold_kind, gold_entries) = pred_list, gold_list
    if " " in (pred_kind, gold_kind):
        return None
    if pred_kind == ":" or gold_kind == ":":
        pred_values, gold_values = [e[0] for e in pred_entries], [e[0] for e in gold_entries]
        if pred_kind != gold_kind or len(pred_values) != 2 or len(gold_values) != 2:
            return None
        if math.inf in map(abs, pred_values + gold_values) or 0 in (pred_values[1], gold_values[1]):
            return None
        return (
            pred_values[0] / pred_values[1] == gold_values[0] / gold_values[1]
        )  # math-verify reads 2:4 as 1/2
    if pred_kind in ("", "{}") and gold_kind in ("", "{}"):
        # A bare list is a set, as to math-verify: each entry on one side equals one on the other.
        return all(any(_numbers_equal(p, g) for g in gold_entries) for p in pred_entries) and all(
            any(_numbers_equal(p, g) for p in pred_entries) for g in gold_entries
        )
    if "{}" in (pred_kind, gold_kind) and "" not in (pred_kind, gold_kind):
        return (
            False if len(pred_entries) == len(gold_entries) == 2 else None
        )  # a pair or an interval is not a set
    if "" in (pred_kind, gold_kind):
        return None  # "1, 2" against "(1, 2)": math-verify's call
    if len(pred_entries) == len(gold_entries) == 2 and pred_kind != gold_kind:
        return False  # intervals with other ends: "[1, 2)" is not "(1, 2)"
    if pred_kind == gold_kind:
        return _entries_equal(pred_entries, gold_entries)  # tuples and intervals, in order
    return None


def _entries_equal(pred: list[_Number], gold: list[_Number]) -> bool:
    return len(pred) == len(gold) and all(_numbers_equal(p, g) for p, g in zip(pred, gold, strict=True))


def _matrix(text: str, is_gold: bool = False) -> list[list[_Number]] | None:
    """The rows of a matrix of plain numbers, or None."""
    match = _MATRIX.fullmatch(text)
    if match is None:
        return None
    opener, environment, body, closer = match.groups()
    if (opener + closer) not in ("", "()", "[]") or (environment == "array" and not opener):
        return (
            None  # an array without brackets may be a table; brackets around a bracketed matrix are not plain
        )
    rows = [row for row in re.split(r"\\\\", body.replace("\\hline", "")) if row.strip()]
    matrix = [[_entry(cell, is_gold) for cell in row.split("&")] for row in rows]
    if not matrix or any(None in row for row in matrix):
        return None
    return matrix  # type: ignore[return-value]  # no None left


def _matrices_equal(pred: str, gold: str) -> bool | None:
    """Entry by entry when both sides are matrices of plain numbers, whatever their brackets; None otherwise.

    >>> _matrices_equal(r"\\begin{bmatrix}0.5&1\\end{bmatrix}", r"(\\begin{array}{cc}1/2&1\\end{array})")
    True
    """
    pred_matrix, gold_matrix = _matrix(pred), _matrix(gold, is_gold=True)
    if pred_matrix is None or gold_matrix is None:
        return None
    if [len(row) for row in pred_matrix] != [len(row) for row in gold_matrix]:
        return False
    return all(_entries_equal(p, g) for p, g in zip(pred_matrix, gold_matrix, strict=True))


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
    # "\\" (a matrix's new row) is kept whole: in "1 \\ 2" its second backslash and the space are no "\ ".
    # A negative thin space joins what it stands between, spaces after it too: "1\!000" and "11,\! 111" are one number.
    text = re.sub(r"(\\\\)|\\!\s*", lambda m: m.group(1) or "", text)
    text = text.replace("{,}", ",")  # TeX's comma inside a number: "10{,}000"
    text = re.sub(r"(\\\\)|\\[,;: ]", lambda m: m.group(1) or " ", text)
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
