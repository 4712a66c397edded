"""Competition-math answers as MATH, NuminaMath and OpenThoughts write them: one table, one case per line.

Each case is `(class, gold, completion, correct)`: the gold as a dataset stores it, a whole completion, and whether
the completion's final answer is the gold one. `accuracy` must agree with `correct` on every line.
`benchmarks/latex_answers.py` scores the same table with math-verify used plainly and writes the comparison in
docs/rewards.md.
"""

from __future__ import annotations

import time

import pytest

from rlvr.evaluation.evaluate import problem_record
from rlvr.rewards import accuracy, math_equal, math_verifier

# Long worked solutions as models write them: several spans, a price, a mid-text "answer is not", a chain at the end.
LONG_APPLES = (
    r"To solve this, let $n$ be the number of apples he can sell. The farmer had $10$ baskets with $10$ apples each,"
    r" so he had $10 \times 10 = 100$ apples in total. The answer is not simply $100$, because $10$ of the apples"
    r" were rotten and had to be thrown away. Each good apple sells for $2 at the market, but the price does not"
    r" matter for the count. Then the number of apples he can sell is"
    "\n"
    r"$n = 10 \times 10 - 10$"
    "\n"
    r"$= 100 - 10 = 90 . $"
)
LONG_PENCILS = (
    r"Let's think step by step. Pencils cost $2 each and pens $3 each. Maria buys $x$ pencils and $y$ pens, where"
    r" $x + y = 40$ and $2x + 3y = 100$. The answer isn't $40$, which counts pens too. Subtracting twice the first"
    r" equation from the second gives $y = 100 - 80 = 20$, so she buys"
    "\n\n"
    r"$$x = 40 - 20 = 20 .$$"
)

# fmt: off
LATEX_CASES = [
    # Golds written in math mode, and whole solutions as golds.
    ("math-mode gold", r"$\frac{1}{3}$", r"So the probability is \boxed{\frac{1}{3}}.", True),
    ("math-mode gold", r"$$(1,+\infty)$$", r"Hence $x$ ranges over \boxed{(1, \infty)}.", True),
    ("math-mode gold", r"$$(1,+\infty)$$", r"\boxed{[1, \infty)}", False),  # a closed end is another set
    ("math-mode gold", r"\[2\sqrt{2}\]", r"\boxed{\sqrt{8}}", True),
    ("math-mode gold", r"\(x^2+1\)", r"The answer is $1 + x^2$.", True),
    ("math-mode gold", r"$\frac{1}{3}$", r"\boxed{\frac{1}{4}}", False),
    ("math-mode gold", r"$400$", "So the total is 400.", True),
    ("math-mode gold", r"The sum is $\boxed{-\frac{7}{2}}$.", r"\boxed{-3.5}", True),  # a MATH solution as gold
    # Answers in math mode without a box.
    ("math mode, no box", r"\frac{1}{3}", r"The answer is $\frac13$", True),
    ("math mode, no box", r"\frac{1}{3}", r"Therefore the probability is $\dfrac{1}{3}$.", True),
    ("math mode, no box", "2", r"Solving, we find $x = 2$.", True),
    ("math mode, no box", r"\frac{\pi}{4}", r"Thus the angle is \(\frac{\pi}{4}\).", True),
    ("math mode, no box", "12", "Adding up,\n\\[ 5 + 7 = 12 \\]", True),
    ("math mode, no box", r"\frac{1}{3}", r"Final Answer: The final answer is $\frac{1}{3}$. I hope it is correct.", True),  # noqa: E501
    ("math mode, no box", "5", "**Answer:** $5$", True),
    ("math mode, no box", r"\frac{1}{3}", r"The answer is $\frac{1}{4}$", False),
    ("math mode, no box", "6", "We have $x = 2$, so the area is 6 square units.", True),  # a later number wins
    ("math mode, no box", "12", "It costs $5 and then $7, so $12 in total.", True),  # prices are not math mode
    # TeX shorthands, \left...\right, \text, \! and {,} inside numbers.
    ("TeX shorthand", r"\frac{1}{3}", r"\boxed{\frac13}", True),
    ("TeX shorthand", r"\sqrt{3}", r"\boxed{\sqrt3}", True),
    ("TeX shorthand", r"\frac{2}{3}", r"\boxed{\cfrac{2}{3}}", True),
    ("TeX shorthand", r"\frac{1}{1+\sqrt{2}}", r"\boxed{\sqrt{2}-1}", True),  # rationalised
    ("TeX shorthand", "(1,2)", r"\boxed{\left(1, 2\right)}", True),
    ("TeX shorthand", "5", r"\boxed{5\text{ cm}}", True),
    ("TeX shorthand", r"\text{Tuesday}", r"\boxed{\text{Tuesday}}", True),
    ("TeX shorthand", "Tuesday", r"\boxed{\text{Tuesday}}", True),
    ("TeX shorthand", "10000", r"\boxed{10{,}000}", True),
    ("TeX shorthand", "1000000", r"\boxed{1\!000\!000}", True),
    ("TeX shorthand", r"\sqrt{3}", r"\boxed{\sqrt2}", False),
    ("TeX shorthand", r"\text{Monday}", r"\boxed{\text{Tuesday}}", False),
    ("TeX shorthand", r"\text{even}", r"\boxed{\text{Even}}", True),  # words ignore case
    ("TeX shorthand", "1000", r"\boxed{1\,000}", True),  # a thin space before three digits: thousands
    ("TeX shorthand", "12", r"\boxed{1\,2}", False),  # before any other count it joins nothing
    # Several boxes that together are the answer.
    ("several boxes", r"\{1,2\}", r"\boxed{1}, \boxed{2}", True),
    ("several boxes", "1, 2", r"The roots are $\boxed{2}$ and $\boxed{1}$.", True),
    ("several boxes", "1, 2, 3", r"\boxed{1}, \boxed{2}, and \boxed{3}", True),
    ("several boxes", "2", r"First \boxed{1}, then \boxed{2}", True),  # words between boxes: the last one
    ("several boxes", r"\{1,2\}", r"\boxed{1}, \boxed{3}", False),
    # Tuples and sets of tuples.
    ("tuples and sets", "(3,2)", r"\boxed{(3, 2)}", True),
    ("tuples and sets", "(3,2)", r"\boxed{(p,q)=(3,2)}", True),
    ("tuples and sets", "(3,2)", r"\boxed{(2,3)}", False),  # order matters in a tuple
    ("tuples and sets", r"\{(1,2),(3,4)\}", r"\boxed{(3,4),(1,2)}", True),  # not in a set
    ("tuples and sets", "(1,2),(3,4)", r"\boxed{\{(1, 2), (3, 4)\}}", True),
    ("tuples and sets", r"\{(1,2),(3,4)\}", r"\boxed{(1,2),(4,3)}", False),
    ("tuples and sets", "(3,2)", "So the point is (3, 2).", True),  # a bracketed list outside math mode, whole
    ("tuples and sets", "2", "So the point is (3, 2).", False),  # not its last coordinate
    ("tuples and sets", r"\{0,1\}", r"\boxed{(0,1)}", False),  # an interval or a pair, not the set
    # Relations and inequalities.
    ("relations", r"x \geq 5", r"\boxed{5 \leq x}", True),
    ("relations", "x > 5", r"\boxed{x \ge 5}", False),
    ("relations", r"x \in [-2,7]", r"\boxed{-2 \le x \le 7}", True),
    ("relations", r"-2 \le x \le 7", r"\boxed{[-2, 7]}", True),
    ("relations", "[-2,7]", r"\boxed{-2 < x \le 7}", False),
    ("relations", r"(5,\infty)", r"\boxed{x > 5}", True),
    ("relations", "x<-1", r"\boxed{(-\infty, -1)}", True),
    ("relations", "5", r"\boxed{x+1=5}", False),  # math-verify alone takes the right side of any equation
    ("relations", "5", r"\boxed{2+2=5}", False),
    ("relations", "7", r"\boxed{3+4=7}", True),  # a true equation of numbers answers its value
    # Equations of lines and planes, equal up to a nonzero factor.
    ("lines and planes", "y = 2x + 3", r"\boxed{2x - y + 3 = 0}", True),
    ("lines and planes", "x+2y=3", r"\boxed{2x + 4y = 6}", True),
    ("lines and planes", "2x - y + 3z = 5", r"\boxed{-4x + 2y - 6z + 10 = 0}", True),
    ("lines and planes", "x+2y=3", r"\boxed{x + 2y = 6}", False),
    ("lines and planes", "y = 2x + 3", r"\boxed{y = 3x + 2}", False),
    # Ratios.
    ("ratios", "11:21", r"\boxed{V_1:V_2=11:21}", True),
    ("ratios", "11:21", r"\boxed{11:21}", True),
    ("ratios", "3:4", "The ratio is $3:4$.", True),
    ("ratios", "11:21", r"\boxed{21:11}", False),
    # Matrices and vectors.
    ("matrices", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", r"\boxed{\begin{bmatrix}1&2\\3&4\end{bmatrix}}", True),
    ("matrices", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", r"$\left(\begin{array}{cc}1&2\\3&4\end{array}\right)$", True),  # noqa: E501
    ("matrices", r"\begin{pmatrix}1/2\\0\end{pmatrix}", r"\boxed{\begin{pmatrix}0.5\\0\end{pmatrix}}", True),
    ("matrices", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", r"\boxed{\begin{pmatrix}1&3\\2&4\end{pmatrix}}", False),  # noqa: E501  the transpose
    ("matrices", r"\begin{pmatrix}1\\2\end{pmatrix}", r"\boxed{\begin{pmatrix}2\\1\end{pmatrix}}", False),
    # Decimals that round to a fraction.
    ("rounded decimals", r"\frac{1}{12}", r"\boxed{0.0833333333333333}", True),
    ("rounded decimals", r"\frac{2}{3}", r"\boxed{0.6666666666666666}", True),  # the float's last digit cut
    ("rounded decimals", r"\frac{1}{3}", r"\boxed{0.33}", False),  # two places are not the fraction
    ("rounded decimals", "0.33", r"\boxed{\frac{1}{3}}", True),  # but a gold rounded to two places is
    ("rounded decimals", r"\frac{1}{12}", r"\boxed{0.0834}", False),
    ("rounded decimals", r"\frac{\sqrt{3}}{2}", r"\boxed{0.8660254}", True),
    ("rounded decimals", "0.75", r"\boxed{\frac{49}{65}}", False),  # rounds to 0.75, but a gold of 0.75 means 3/4
    ("rounded decimals", "0.63", r"\boxed{\frac58}", True),  # 0.625 rounds half up
    ("rounded decimals", r"\frac{1}{300000}", r"\boxed{0.000004}", False),  # six places, one significant digit
    # Identities.
    ("identities", r"\sec^2 y", r"\boxed{\tan^2 y + 1}", True),
    ("identities", r"\tan^2 y + 1 = \sec^2 y", r"\boxed{\sec^2 y = 1 + \tan^2 y}", True),
    ("identities", r"\tan^2 y + 1 = \sec^2 y", r"\boxed{\sin^2 y + \cos^2 y = 1}", False),  # true, but another
    ("identities", r"\tan^2 y + 1 = \sec^2 y", r"\boxed{1 = 1}", False),  # true, and says nothing of y
    ("identities", r"\tan^2 y + 1 = \sec^2 y", r"\boxed{\tan^2 x + 1 = \sec^2 x}", True),  # renamed
    ("identities", r"\cos 2x", r"\boxed{1 - 2\sin^2 x}", True),
    ("identities", r"\sin 2x", r"\boxed{\sin x \cos x}", False),
    # The last number, the other direction: what is not an answer.
    ("last number", "2", "The password is AZYUK2A.", False),  # a digit inside a word is not a number
    ("last number", "7", "Since 3 + 4 = 7, there are 7 apples", True),
    ("last number", "-3", "The temperature dropped to -3 degrees.", True),
    ("last number", "1", r"so x lies in (-\infty, 1).", False),  # the interval, not its endpoint
    ("last number", r"(-\infty,1)", r"so x lies in (-\infty, 1).", True),
    ("last number", "1", r"x \notin [1, 2]", False),  # a negated interval is not 1
    # Numbers, units and commas: rlvr's exact fast path.
    ("numbers and units", "18", r"She pays \boxed{\$18.00}.", True),
    ("numbers and units", "1000", "#### 1,000", True),
    ("numbers and units", "1.5", "She needs 1 1/2 cups.", True),  # a mixed number
    ("numbers and units", "50", r"\boxed{50\%}", True),
    ("numbers and units", "3.5", r"\boxed{3,5}", True),  # one digit after the comma: a decimal comma
    ("numbers and units", "1234", r"\boxed{1,234}", True),  # three digits after it: thousands
    ("numbers and units", "12.5", r"\boxed{12,50}", True),
    ("numbers and units", "1,2", r"\boxed{2,1}", True),  # both decimal commas and unequal: read as lists
    ("numbers and units", "1234", r"\boxed{1,23}", False),
    ("numbers and units", "-3", r"\boxed{3}", False),
    ("numbers and units", "-2,1", r"\boxed{-2.1}", False),  # a gold's comma is a list (two roots)
    ("numbers and units", "5", r"\boxed{5 \text{ thousandths}}", False),  # a fraction word is not a unit
    ("numbers and units", "50", r"\boxed{5000\%}", False),  # a gold above 1 is in percent
    ("numbers and units", "0.5", r"\boxed{50\%}", True),  # a gold below 1 is a fraction
    ("last number", "5", r"2+3=5 so \boxed{}", False),  # an empty box is no answer
    # Inline math with spaces inside the delimiters (issue 23): a TeX command right after the `$` is a formula, even
    # with a space before the closing one; prices never start with one.
    ("spaces in math mode", r"\frac{1}{3}", r"Therefore the probability is $\dfrac{1}{3} $.", True),
    ("spaces in math mode", "3", r"Therefore the probability is $\dfrac{1}{3} $.", False),  # not the denominator
    ("spaces in math mode", r"\sqrt{3}", r"So the side length is $\sqrt3 $", True),
    ("spaces in math mode", r"\frac{2}{5}", r"She ate $ \frac{2}{5}$ of the pie.", True),
    ("spaces in math mode", r"\frac{2}{5}", r"She ate $ \frac{3}{5}$ of the pie.", False),
    ("spaces in math mode", "9", "The answer is \\( \n 9 \n \\)", True),  # newlines inside \( \)
    ("spaces in math mode", "12", "It costs $ 5 and then $ 7, so $ 12 in total.", True),  # still prices
    ("spaces in math mode", r"$\dfrac{1}{3} $", r"\boxed{\frac13}", True),  # the gold written the same way
    # LaTeX written with no math delimiters at all: the expression around the last number is the answer.
    ("LaTeX without delimiters", r"\frac{10}{9}", r"So the ratio is \frac{10}{9}.", True),
    ("LaTeX without delimiters", "9", r"So the ratio is \frac{10}{9}.", False),  # not its denominator
    ("LaTeX without delimiters", r"-\frac{10}{9}", r"The slope is -\frac{10}{9}", True),
    ("LaTeX without delimiters", r"\frac{10}{9}", r"The slope is -\frac{10}{9}", False),  # the sign is kept
    ("LaTeX without delimiters", r"2\sqrt{3}", r"The distance is 2\sqrt{3} units.", True),
    ("LaTeX without delimiters", "3", r"The distance is 2\sqrt{3} units.", False),
    ("LaTeX without delimiters", "7", r"Since \frac{14}{2} = 7, there are 7 apples.", True),  # a later number wins
    # A final-answer sentence whose first formula is the variable it names.
    ("answer sentences", "34", "Final answer: The largest $n$ is 34.", True),
    ("answer sentences", "34", "The answer is: the largest $n$ is $34$.", True),
    ("answer sentences", "34", r"**Final Answer:** the smallest $k_1$ is $\boxed{34}$", True),
    ("answer sentences", "35", "Final answer: The largest $n$ is 34.", False),
    ("answer sentences", "x", "The answer is $x$.", True),  # a variable alone is the answer
    ("answer sentences", "7", "The answer is 7, not $5$.", True),
    # Thousands written with spaces, thin spaces or \!, and decimal commas in prose.
    ("thousands and decimal commas", "1000", "So she pays 1 000 euros.", True),
    ("thousands and decimal commas", "0", "So she pays 1 000 euros.", False),  # "000" is not the answer
    ("thousands and decimal commas", "1000000", "The population is 1\u2009000\u2009000.", True),  # U+2009 thin spaces
    ("thousands and decimal commas", "1000", r"She saved 1\,000 dollars.", True),
    ("thousands and decimal commas", "11111100", r"\boxed{11,\! 111,\! 100}", True),  # a space after \! joins too
    ("thousands and decimal commas", r"\boxed{11,\! 111,\! 100}", "11111100", True),  # the same as a gold
    ("thousands and decimal commas", "2.74", "Donc le prix est de 2,74 $.", True),  # a French decimal comma
    ("thousands and decimal commas", "74", "Donc le prix est de 2,74 $.", False),
    ("thousands and decimal commas", "3", "The first three numbers are 1,2,3", True),  # a list, not decimals
    ("thousands and decimal commas", "100", "He bought 3 100-page notebooks, so 100 pages each.", True),
    # Matrices inside prose, in other environments and spacing, and products.
    ("matrices in prose", r"\begin{pmatrix}1&0\\0&1\end{pmatrix}", r"The identity matrix is $ \begin{pmatrix}1&0\\0&1\end{pmatrix} $.", True),  # noqa: E501
    ("matrices in prose", "1", r"The identity matrix is $ \begin{pmatrix}1&0\\0&1\end{pmatrix} $.", False),
    ("matrices in prose", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", r"So $M = \begin{bmatrix} 1 & 2 \\ 3 & 4 \end{bmatrix}$.", True),  # noqa: E501
    ("matrices in prose", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\boxed{\begin{pmatrix}1\\2\end{pmatrix}}", True),  # "\\ 2" is a new row, not a space  # noqa: E501
    ("matrices in prose", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", r"\boxed{\left[\begin{array}{cc} 1 & 2 \\ 3 & 4 \end{array}\right]}", True),  # noqa: E501
    ("matrices in prose", r"\begin{pmatrix}1 & 2 \\ 3 & 4\end{pmatrix}", r"\boxed{\begin{pmatrix} 1 & 3 \\ 2 & 4 \end{pmatrix}}", False),  # noqa: E501
    ("matrices in prose", r"\begin{pmatrix}1\\3\end{pmatrix}", r"$\begin{pmatrix}1&2\\3&4\end{pmatrix}\begin{pmatrix}1\\0\end{pmatrix} = \begin{pmatrix}1\\3\end{pmatrix}$", True),  # noqa: E501  a product that holds
    ("matrices in prose", r"\begin{pmatrix}1\\4\end{pmatrix}", r"$\begin{pmatrix}1&2\\3&4\end{pmatrix}\begin{pmatrix}1\\0\end{pmatrix} = \begin{pmatrix}1\\4\end{pmatrix}$", False),  # noqa: E501  one that does not
    ("matrices in prose", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", r"\boxed{\begin{vmatrix}1&2\\3&4\end{vmatrix}}", False),  # a determinant  # noqa: E501
    # Rounded decimals inside structures, at the gold's precision, as for plain numbers.
    ("rounded entries", "(0.33, 0.2)", r"\boxed{\left(\frac13, \frac15\right)}", True),
    ("rounded entries", r"\begin{pmatrix}0.33\\0.2\end{pmatrix}", r"\boxed{\begin{pmatrix}\frac13\\\frac15\end{pmatrix}}", True),  # noqa: E501
    ("rounded entries", r"[2.6667, \infty)", r"\boxed{\left[\frac83, \infty\right)}", True),
    ("rounded entries", r"\{0.33, 0.67\}", r"\boxed{\left\{\frac23, \frac13\right\}}", True),  # a set, any order
    ("rounded entries", r"[2.6667, \infty)", r"\boxed{\left(\frac83, \infty\right)}", False),  # another end
    ("rounded entries", r"(\frac13, \frac15)", r"\boxed{(0.33, 0.2)}", False),  # a rounded answer is not exact
    ("rounded entries", "(0.75, 1)", r"\boxed{(\frac{49}{65}, 1)}", False),  # the simplest fraction rule holds
    ("rounded entries", r"\begin{pmatrix}0.33\\0.2\end{pmatrix}", r"\boxed{\begin{pmatrix}\frac13\\\frac14\end{pmatrix}}", False),  # noqa: E501
    # Several boxes or named solutions that together are the answer.
    ("boxes with words", "(2, 2), (6, 2)", r"\boxed{(2, 2)} \quad \text{and} \quad \boxed{(6, 2)}", True),
    ("boxes with words", "(6, 2)", r"\boxed{(2, 2)} \quad \text{and} \quad \boxed{(6, 2)}", False),  # half of it
    ("boxes with words", "k = 45, n = 2", r"So `\boxed{k = 45}` and `\boxed{n = 2}`.", True),  # markdown code spans
    ("boxes with words", "3, -2", r"The roots are $x_{1}=3$ and $x_{2}=-2$.", True),
    ("boxes with words", "-2", r"The roots are $x_{1}=3$ and $x_{2}=-2$.", False),  # one root of two
    ("boxes with words", r"x_{1}=3, x_{2}=-2", r"\boxed{3} \quad \text{or} \quad \boxed{-2}", True),
    ("boxes with words", r"$x_{1}=3$, $x_{2}=-2$", r"\boxed{3}, \boxed{-2}", True),  # a gold of two formulas
    ("boxes with words", "3", r"We get $x = 2$ and $y = 3$.", True),  # two unknowns: the last one
    # Long worked solutions whose final answer is at the end.
    ("long solutions", "90", LONG_APPLES, True),
    ("long solutions", "100", LONG_APPLES, False),  # "the answer is not ..." names no answer
    ("long solutions", "20", LONG_PENCILS, True),
    ("long solutions", "40", LONG_PENCILS, False),
]
# fmt: on

TIMEOUT = 5.0  # math_equal's default


@pytest.mark.parametrize(
    ("kind", "gold", "completion", "correct"),
    LATEX_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(LATEX_CASES)],
)
def test_accuracy_reads_latex_answers(kind, gold, completion, correct):
    assert accuracy(prompts=["q"], completions=[completion], answer=[gold]) == [float(correct)]


def test_every_class_has_right_and_wrong_cases():
    kinds = {kind for kind, *_ in LATEX_CASES}
    for kind in kinds:
        verdicts = {correct for k, _, _, correct in LATEX_CASES if k == kind}
        assert verdicts == {True, False}, kind


def test_the_whole_table_scores_fast_and_no_call_reaches_its_timeout():
    math_equal(r"\sqrt{2}", r"\sqrt{2}+0")  # start the math-verify child, as a trainer's first batch does
    slowest = 0.0
    started = time.perf_counter()
    for _, gold, completion, _ in LATEX_CASES:
        call_started = time.perf_counter()
        accuracy(prompts=["q"], completions=[completion], answer=[gold])
        slowest = max(slowest, time.perf_counter() - call_started)
    total = time.perf_counter() - started
    assert slowest < TIMEOUT / 2, slowest
    # 39 of the cases reach math-verify, about 3.5 s of CPU with cold parsers; 4-9 s of wall time on the 2-core
    # development machine at load average 12. The bound leaves room for a busier one.
    assert total < 30, total


@pytest.mark.parametrize(
    ("completion", "gold", "expected"),
    [
        (r"<think>t</think><answer>$\frac13$</answer>", r"$\frac{1}{3}$", 1.5),
        (r"<think>t</think><answer>The answer is $\dfrac{1}{3}$.</answer>", r"$\frac{1}{3}$", 1.5),
        (r"<think>t</think><answer>\boxed{1}, \boxed{2}</answer>", r"\{1,2\}", 1.5),
        (r"<think>t</think><answer>(p,q)=(3,2)</answer>", "(3,2)", 1.5),
        (r"<think>t</think><answer>(2,3)</answer>", "(3,2)", 0.5),
    ],
)
def test_math_verifier_reads_latex_answers(completion, gold, expected):
    assert math_verifier(prompts=["q"], completions=[completion], answer=[gold]) == [expected]


def test_evaluation_votes_with_the_same_verifier():
    # Three samples, two of them 1/3 written differently: they vote together and the majority is right.
    completions = [r"so $\frac13$", r"\boxed{0.25}", r"The answer is $\dfrac{1}{3}$."]
    row = {"question": "q", "answer": r"$\frac{1}{3}$"}
    record = problem_record(0, row, completions, [1.0, 0.0, 1.0], [5] * 3, [False] * 3, "boxed", math_equal)
    assert record["samples"][0]["extracted"] == r"\frac13"
    assert (record["majority_votes"], record["maj_correct"]) == (2, True)
