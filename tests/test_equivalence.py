"""math_equal: numbers, LaTeX through math-verify, time limits, threads and junk input."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import pytest

from rlvr.rewards import math_equal, numeric_equal, parse_number
from rlvr.rewards.equivalence import _math_equal, huge_power, normalize_answer


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ("18", "18", True),
        ("18.0", "18", True),  # trailing zeros
        ("18.000", "18.0", True),
        ("$18.00", "18", True),  # currency
        ("\\$18", "18", True),
        ("18 dollars", "18", True),  # units
        ("18 dollars.", "18", True),
        ("\\text{18 cm}", "18", True),
        ("1,000", "1000", True),  # thousands commas
        ("1,000,000", "1e6", True),
        ("-3", "3", False),  # a sign is not decoration
        ("-3", "-3.0", True),
        ("+3", "3", True),
        ("17", "18", False),
        ("18.5", "18", False),
        ("0.1", "1/10", True),  # exact, not floating point
        ("3/4", "0.75", True),  # fractions
        ("1 1/2", "1.5", True),  # a mixed number
        ("-1 1/2", "-1.5", True),
        ("\\frac{1}{2}", "0.5", True),
        ("\\dfrac{3}{4}", "0.75", True),
        ("\\frac12", "0.5", True),
        ("-\\frac{1}{2}", "-0.5", True),
        ("50%", "50", True),  # a percentage is its number ...
        ("50\\%", "0.5", True),  # ... and its fraction
        ("50%", "5", False),
        ("0.5\\%", "0.5", False),  # a gold below 1 is a fraction: 0.5% is 0.005
        ("0.25\\%", "0.25", False),
        ("5000\\%", "50", False),  # a gold above 1 is in percent: 50, not 5000% = 50
        ("100%", "1", True),  # exactly 1 reads either way
        ("1%", "1", True),
        ("0.5%", "0.005", True),
        ("x = 5", "5", True),
        ("90^\\circ", "90", True),
        ("$5$", "5", True),  # math delimiters
        ("\\boxed{72}", "72", True),
        ("5 million", "5", False),  # a scale word is not a unit
        ("2 pi", "2", False),  # neither is a constant
        ("5 \\text{ thousandths}", "5", False),  # fraction words change the value
        ("2 \\text{ thirds}", "2", False),
        ("3 halves", "3", False),
        ("5\\text{ factorial}", "5", False),
        ("7 \\text{ millions}", "7", False),  # plural scale words too
        ("4 dozens", "4", False),
        ("5 months", "5", True),  # "...ths" that is a unit
        ("30 seconds", "30", True),
        ("5xy", "5", False),  # two letters are a product unless a known unit
        ("5cm", "5", True),
        ("1/0", "1", False),
        ("0.33", "1/3", False),
    ],
)
def test_numbers(pred, gold, expected):
    assert math_equal(pred, gold) is expected


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}", True),
        ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True),  # rationalised denominator
        ("\\sqrt{8}", "2\\sqrt{2}", True),
        ("2\\pi", "\\pi \\cdot 2", True),
        ("\\pi", "3.14", False),
        ("3^{2}", "9", True),  # powers
        ("2^{10}", "1024", True),
        ("(1, 2]", "(1,2]", True),  # intervals
        ("[1, 2)", "[1, 2]", False),
        ("(-\\infty, 3)", "(-\\infty,3)", True),
        ("\\{1, 2, 3\\}", "\\{3, 2, 1\\}", True),  # sets ignore order
        ("(1, 2)", "(2, 1)", False),  # tuples do not
        ("(1, 2)", "(1,2)", True),
        ("y = 2x + 1", "y = 1 + 2x", True),  # equations
        ("x + x", "2x", True),  # simple expressions
        ("x^2 - 1", "(x - 1)(x + 1)", True),
        ("x + 1", "x + 2", False),
        ("x = 2", "2", True),
        ("x + 1 = 5", "5", False),  # an equation that is not an assignment does not answer its right side
        ("2x=10", "10", False),
        ("x^2=4", "4", False),
        ("2+2=5", "5", False),  # nor does a false one
        ("3+4=8", "8", False),
        ("3+4=7", "7", True),  # a true one does: its value is the answer
        ("(0,1)", "\\{0,1\\}", False),  # an interval or a pair is not a set
        ("\\{0,1\\}", "(0,1)", False),
        ("0, 1", "\\{0,1\\}", True),  # a bare list may be a set
        ("hello", "18", False),
    ],
)
def test_latex_through_math_verify(pred, gold, expected):
    assert math_equal(pred, gold) is expected


@pytest.mark.parametrize(
    "junk",
    [None, [], {}, b"18", object(), "", "   ", "{{{{", "\\frac{", "}", "$", "\\boxed{", "\x00", "é" * 50],
)
def test_junk_never_raises(junk):
    assert math_equal(junk, "18") is False
    assert math_equal("18", junk) is False


def test_numbers_of_other_types():
    assert math_equal(18, "18.0") is True
    assert math_equal(True, "1") is False  # a bool is not a number here


def test_power_tower_is_refused_at_once():
    started = time.monotonic()
    assert math_equal("5^{5^{5^{5^5}}}", "3") is False
    assert math_equal("3", "9^{9^{9}}") is False
    assert time.monotonic() - started < 0.1  # screened out before any sympy work
    assert math_equal("5^{5^{5^{5^5}}}", "5^{5^{5^{5^5}}}") is True  # the same string is still equal


@pytest.mark.parametrize(
    "expression",
    [
        "\\left(5^{5}\\right)^{5^{5^{5}}}",  # a tower the screen does not read: sympy runs until killed
        "(10^{7})!",
    ],
)
def test_runaway_sympy_returns_false_within_its_timeout(expression):
    math_equal("\\sqrt{2}", "\\sqrt{2}+0")  # start the math-verify child first, so the timing is the compare
    started = time.monotonic()
    assert math_equal(expression, "3", timeout=1.5) is False
    assert time.monotonic() - started < 1.5 + 0.5  # the deadline plus killing the child
    # The pool replaces the killed child: the next symbolic comparison still works.
    assert math_equal("\\sqrt{9}", "3") is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5^{5^{5^{5^5}}}", True),
        ("9^{9^{9}}", True),  # 370 million digits
        ("9**9**9", True),
        ("10^{10^{10}}", True),
        ("2^{1000000}", True),  # 301,030 digits
        ("2^{100000}", False),  # 30,103 digits: sympy takes milliseconds
        ("5^{5^{5}}", False),  # 5^3125: 2,185 digits
        ("1^{9^{9^{9}}}", False),  # 1 to any power is 1
        ("x^{5^{5^5}}", False),  # symbolic base
        ("2^{10}", False),
        ("no powers", False),
    ],
)
def test_huge_power(text, expected):
    assert huge_power(text) is expected


def test_ten_thousand_digit_number_is_fast():
    huge = "9" * 10_000
    started = time.monotonic()
    assert math_equal(huge, "18") is False
    assert math_equal("18", huge) is False
    assert math_equal(huge + "+1", "2") is False
    assert time.monotonic() - started < 0.1  # compared as strings, never parsed


def test_from_a_thread_that_is_not_main():
    results = {}

    def compare():
        results["latex"] = math_equal("\\frac{\\pi}{2}", "\\pi/2")
        results["number"] = math_equal("$1,000", "1000")

    thread = threading.Thread(target=compare)
    thread.start()
    thread.join(timeout=30)
    assert results == {"latex": True, "number": True}


def test_many_threads_at_once():
    cases = [(f"\\frac{{{n}}}{{2}}", str(n / 2), True) for n in range(1, 9)] + [
        ("\\sqrt{2}", "1.5", False)
    ] * 4
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda case: math_equal(case[0], case[1], timeout=20), cases))
    assert results == [expected for _, _, expected in cases]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$1,234.50", (Fraction(2469, 2), False)),
        ("1 1/2 cups", (Fraction(3, 2), False)),
        ("50%", (Fraction(50), True)),
        ("50 percent", (Fraction(50), True)),
        ("-$5", (Fraction(-5), False)),
        ("1e3", (Fraction(1000), False)),
        ("x + 1", None),
        ("\\sqrt{2}", None),
    ],
)
def test_parse_number(text, expected):
    assert parse_number(text) == expected


def test_numeric_equal_does_no_symbolic_work():
    assert numeric_equal("72 clips", "72") is True
    assert numeric_equal("\\sqrt{4}", "2") is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$\\boxed{\\dfrac{1}{2}}$.", "\\frac{1}{2}"),
        ("\\[ x \\]", "x"),
        ("$x$ and $y$", "$x$ and $y$"),  # two formulas keep their dollars
        ("\\left( 1, 2 \\right)", "( 1, 2 )"),
        # "\\ 2" is a new row, not the second backslash and a LaTeX space "\ "
        (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
        (r"11,\! 111,\! 100", "11,111,100"),  # \! joins, the space after it too
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ("3,5", "3.5", True),  # one digit after the comma: a decimal comma
        ("12,50", "12.5", True),
        ("1,0000", "1", True),  # four digits: still a decimal comma
        ("1,234", "1234", True),  # exactly three: thousands
        ("1,234,567", "1234567", True),
        ("1,23", "123", False),
        ("2,1", "1,2", True),  # two decimal commas that differ: read as lists of numbers, by math-verify
        ("10{,}000", "10000", True),  # TeX's comma inside a number
        ("3{,}5", "3.5", True),
        ("1\\!000", "1000", True),  # a negative thin space joins the digits
        ("1\\,000", "1000", True),  # a thin space before three digits: thousands
        ("1\\,000\\,000", "1000000", True),
        ("12 345", "12345", True),
        ("1 2", "12", False),  # spaces between other digits never join them
        ("3 5", "35", False),
        ("1\\,2", "12", False),
        ("1\\ 2\\ 3", "123", False),
        ("1\\,0000", "10000", False),
        ("-2.1", "-2,1", False),  # a gold's comma is a list: MATH writes "-2,1" for the two roots
        ("3.5", "3,5", False),
        ("1234", "1,234", True),  # but three digits after it are thousands on either side
    ],
)
def test_commas_are_decided_by_digits(pred, gold, expected):
    assert math_equal(pred, gold) is expected


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ("0.0833333333333333", "\\frac{1}{12}", True),  # a float as Python prints 1/12
        ("0.6666666666666666", "2/3", True),  # the last digit cut, not rounded
        ("0.666667", "2/3", True),  # six places, rounded
        ("0.66667", "2/3", False),  # five places are an approximation
        ("0.33", "1/3", False),
        ("0.0834", "\\frac{1}{12}", False),
        ("\\frac{1}{3}", "0.33", True),  # a gold decimal is matched at its own precision
        ("\\frac{1}{3}", "0.3", False),  # one place is too coarse to stand for a fraction
        ("0.34", "0.33", False),  # two decimals compare exactly
        ("1/3", "0.333", True),
        ("2/3", "0.666", False),  # 2/3 rounds to 0.667
        ("\\frac{49}{65}", "0.75", False),  # rounds to 0.75, but 3/4 is the fraction a gold of 0.75 means
        ("\\frac{101}{200}", "0.50", False),
        ("\\frac{5}{8}", "0.62", False),  # 0.625 rounds half up, to 0.63
        ("\\frac58", "0.63", True),
        ("\\frac18", "0.12", False),
        ("\\frac18", "0.13", True),
        ("-\\frac{1}{3}", "-0.33", True),
        ("\\frac{1}{3}", "-0.33", False),
        ("0.000004", "\\frac{1}{300000}", False),  # six places but one significant digit
        ("0.000000", "\\frac{1}{1000000}", False),
        ("0.00000333333", "\\frac{1}{300000}", True),  # six significant digits
    ],
)
def test_decimals_against_fractions(pred, gold, expected):
    assert math_equal(pred, gold) is expected


MATRIX_PRODUCT = (
    r"\begin{pmatrix}1&2\\3&4\end{pmatrix}\begin{pmatrix}1\\0\end{pmatrix} = \begin{pmatrix}1\\3\end{pmatrix}"
)


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ("\\cfrac{2}{3}", "\\frac{2}{3}", True),
        ("\\text{Evelyn}", "Evelyn", True),  # a whole \text{} is its words
        ("x \\in [-2, 7]", "[-2,7]", True),  # membership: the set is the answer
        ("-2 \\le x \\le 7", "x \\in [-2,7]", True),  # an inequality against an interval
        ("-2 < x \\le 7", "x \\in [-2,7]", False),
        ("x > 5", "(5, \\infty)", True),
        ("\\sec^2 y = 1 + \\tan^2 y", "\\tan^2 y + 1 = \\sec^2 y", True),
        ("\\sin^2 y + \\cos^2 y = 1", "\\tan^2 y + 1 = \\sec^2 y", False),  # math-verify alone says True
        ("\\tan^2 x + 1 = \\sec^2 x", "\\tan^2 y + 1 = \\sec^2 y", True),  # the variable renamed
        ("1 = 1", "\\tan^2 y + 1 = \\sec^2 y", False),  # true, but says nothing of y
        ("0=0", "\\sin^2 x+\\cos^2 x=1", False),
        ("\\sin^2 x + \\cos^2 x = 1", "\\sin 2x = 2\\sin x \\cos x", False),  # other terms: another identity
        ("\\text{Even}", "\\text{even}", True),  # words ignore case
        ("\\text{odd}", "\\text{even}", False),
        ("V_1:V_2=11:21", "11:21", True),
        ("2x + 4y = 6", "x + 2y = 3", True),  # a line up to a factor
        ("(p,q)=(3,2)", "(3,2)", True),
        # A product of matrices equal to its value (sympy leaves a zero matrix, not 0), a determinant, symbols.
        (MATRIX_PRODUCT, r"\begin{pmatrix}1\\3\end{pmatrix}", True),
        (r"\begin{vmatrix}1&2\\3&4\end{vmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", False),
        (r"\begin{pmatrix}x&1\end{pmatrix}", r"\begin{bmatrix}x&1\end{bmatrix}", True),
    ],
)
def test_latex_forms(pred, gold, expected):
    assert math_equal(pred, gold) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3,5", (Fraction(7, 2), False)),
        ("1,0000", (Fraction(1), False)),
        ("12,345", (Fraction(12345), False)),
        ("1, 2", None),  # a comma and a space: a list, not a number
    ],
)
def test_parse_number_commas(text, expected):
    assert parse_number(text) == expected


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ("(1, \\infty)", "(1,+\\infty)", True),  # tuples and intervals of numbers, in order
        ("[1, \\infty)", "(1,+\\infty)", False),  # other ends, another interval
        ("(2,3)", "(3,2)", False),
        ("1, 2", "\\{2,1\\}", True),  # a bare list is a set
        ("2,1", "1,2", True),  # two answers' commas: lists, so sets
        ("(0,1)", "\\{0,1\\}", False),  # a pair or an interval is not a set
        ("(3, 2)", "2", False),  # one number against several
        ("(-\\infty, 1)", "1", False),
        ("1 2", "12", False),
        ("2:4", "1:2", True),  # a ratio is its value, as math-verify reads it
        ("11:21", "21:11", False),
        ("\\text{Monday}", "\\text{Tuesday}", False),  # words
        ("5 \\text{ thousandths}", "5", False),
        ("(\\frac13, \\frac15)", "(0.33, 0.2)", True),  # entries at the gold's precision
        ("(0.33, 0.2)", "(\\frac13, \\frac15)", False),  # a rounded answer is not the exact gold
        ("\\{\\frac23, \\frac13\\}", "\\{0.33, 0.67\\}", True),  # a set in any order
        ("[\\frac83, \\infty)", "[2.6667, \\infty)", True),
        ("(\\frac{49}{65}, 1)", "(0.75, 1)", False),  # the simplest fraction that rounds to the gold
        ("(0.5, 1)", "(1/2, 1)", True),
        (r"\begin{bmatrix}1&2\\3&4\end{bmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", True),
        (r"(\begin{array}{cc}1&2\\3&4\end{array})", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", True),
        (r"\begin{pmatrix}\frac13\\\frac15\end{pmatrix}", r"\begin{pmatrix}0.33\\0.2\end{pmatrix}", True),
        # The transpose, a row against a column, a trailing row break.
        (r"\begin{pmatrix}1&3\\2&4\end{pmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", False),
        (r"\begin{pmatrix}1&2\end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}", False),
        (r"\begin{pmatrix}1\\2\\\end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}", True),
    ],
)
def test_plain_lists_and_words_never_reach_sympy(pred, gold, expected, monkeypatch):
    def no_sympy(*args):
        raise AssertionError("sent to math-verify")

    monkeypatch.setattr("rlvr.rewards.equivalence.symbolic_equal", no_sympy)
    assert _math_equal(pred, gold, 5.0) is expected
