"""Answer extraction: every style on the awkward cases, one case per line."""

from __future__ import annotations

import time

import pytest

from rlvr.rewards import EXTRACTION_STYLES, completion_text, extract_answer, extract_gold, prompt_text
from rlvr.rewards.extraction import (
    extract_final_expression,
    extract_math_mode,
    extract_the_answer_is,
    find_numbers,
    gold_answers,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so \boxed{72}", "72"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),  # nested braces kept whole
        (r"\boxed{\sqrt{\frac{a}{b}}} done", r"\sqrt{\frac{a}{b}}"),
        (r"first \boxed{1}, then \boxed{2}", "2"),  # several boxes: the last
        (r"\boxed{\boxed{5}}", "5"),  # a box in a box is the same answer
        (r"\boxed{3} and then \boxed{4", "3"),  # unclosed last box (truncated): the last complete one
        (r"\boxed{4", None),
        (r"\fbox{12}", "12"),
        (r"\boxed {7}", "7"),  # space before the brace
        (r"\boxed{ 18 }", "18"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),  # escaped braces are not grouping
        (r"\boxed{}", None),
        ("no box here 42", None),
        ("", None),
    ],
)
def test_boxed(text, expected):
    assert extract_answer(text, style="boxed") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<answer>7</answer>", "7"),
        ("<reasoning>3+4</reasoning>\n<answer>\n 7 \n</answer>", "7"),
        ("<answer>1</answer> wait <answer>2</answer>", "2"),  # several: the last
        ("<answer>1</answer> wait <answer>2", "1"),  # last one unclosed: the last complete one
        ("<answer>7", None),  # unclosed
        ("7</answer>", None),  # never opened
        ("<answer>...</answer>", None),  # the prompt's format placeholder is no answer
        ("<answer>   </answer>", None),
        ("<answer>a\nb</answer>", "a\nb"),
        ("<Answer>7</Answer>", None),  # tags are case-sensitive
    ],
)
def test_answer_tag(text, expected):
    assert extract_answer(text, style="answer_tag") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("48/2 = 24\n#### 72", "72"),
        ("#### 1,000", "1,000"),  # commas kept by the extractor; math_equal reads them
        ("#### 5\nmore text", "5"),
        ("#### 3 #### 4", "4"),  # the last ####
        ("#### ", None),
        ("no marker", None),
    ],
)
def test_gsm8k(text, expected):
    assert extract_answer(text, style="gsm8k") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She has 3 apples and buys 4, so 7.", "7"),
        ("It costs $1,234.50 in total", "1,234.50"),
        ("The temperature is -3 degrees", "-3"),
        ("10-3", "3"),  # subtraction, not negative three
        ("half is 1/2", "1/2"),
        ("about .5 of it", ".5"),
        ("1,2345", "2345"),  # not a thousands group: "1" and "2345"
        ("no digits", None),
    ],
)
def test_last_number(text, expected):
    assert extract_answer(text, style="last_number") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"<answer>5</answer> but \boxed{6}", "6"),  # boxed beats the answer tag
        ("<answer>5</answer> #### 6", "5"),  # the tag beats ####
        ("#### 6\nThe answer is 7", "7"),  # the later of #### and "the answer is" wins
        ("The answer is 7\n#### 6", "6"),
        # As SmolLM2-135M writes them (docs/results/*/predictions.jsonl): "####" as a markdown heading.
        ("Kofi has 3 + 14 = 17 stickers now.\n#### 1\nThe answer is 17.", "17"),
        (
            "Tom has 7 + 3 = 10 coins now.\n#### 1\nTom has 10 coins now.\n#### 2\nTom has 10",
            "10",
        ),  # 1, 2: headings
        ("3 + 4 = 7 marbles.\n#### 7\nThe answer is: 7", "7"),
        ("The answer is 10 - 1 = 9 cookies.", "10 - 1 = 9"),  # the chain without its unit, to be checked
        ("The answer is 19.\n\nNo, she has 2 left.\n\nThe correct answer is 2.", "2"),  # a corrected answer
        ("The answer is 72. The answer is 5.", "5"),  # the last marker on a line wins
        ("So the final answer is: **18 dollars**.", "18 dollars"),
        ("The answer is $\\frac{1}{2}$.", "\\frac{1}{2}"),
        ("I get 3, then 4", "4"),  # last number as the fallback
        ("nothing at all", None),
        ("2+3=5 so \\boxed{}", None),  # an empty box is no answer, not a cue to take the last number
        ("2+3=5 so \\boxed{ }", None),
    ],
)
def test_auto(text, expected):
    assert extract_answer(text) == expected


def test_unknown_style_names_the_valid_ones():
    with pytest.raises(
        ValueError, match="unknown extraction style 'latex'.*answer_tag, auto, boxed, gsm8k, last_number"
    ):
        extract_answer("x", style="latex")


@pytest.mark.parametrize("style", sorted(EXTRACTION_STYLES))
@pytest.mark.parametrize("junk", [None, 42, ["<answer>1</answer>"], b"\\boxed{1}"])
def test_junk_input_is_no_answer(style, junk):
    assert extract_answer(junk, style=style) is None


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("plain", "plain"),
        ([{"role": "assistant", "content": "chat"}], "chat"),
        (
            [
                {"role": "assistant", "content": "a"},
                {"role": "tool", "content": "t"},
                {"role": "assistant", "content": "b"},
            ],
            "b",
        ),
        ([{"role": "assistant", "content": [{"type": "text", "text": "x"}, {"type": "image"}]}], "x"),
        ({"role": "assistant", "content": "dict"}, "dict"),
        ([], ""),
        (None, ""),
    ],
)
def test_completion_text(completion, expected):
    assert completion_text(completion) == expected


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("What is 2+3?", "What is 2+3?"),
        ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+3?"}], "2+3?"),
        (
            [
                {"role": "user", "content": "q1"},
                {"role": "assistant", "content": "a"},
                {"role": "user", "content": "q2"},
            ],
            "q2",
        ),
        (None, ""),
    ],
)
def test_prompt_text(prompt, expected):
    assert prompt_text(prompt) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Natalia sold 48+24 = 72 clips.\n#### 72", "72"),
        ("#### 1,000", "1000"),  # GSM8K golds are numbers: commas dropped
        (r"so the sum is $\boxed{\frac{1}{2}}$", r"\frac{1}{2}"),  # a MATH-style solution
        ("  18 ", "18"),
        ("$400$", "400"),  # align-anything's math-mode golds
        ("$18", "$18"),  # a price keeps its dollar
        (72, "72"),
        (14.0, "14"),  # SVAMP stores integers as floats
        (2.5, "2.5"),
        (True, None),  # a bool is not an answer
        (None, None),
        ("", None),
    ],
)
def test_extract_gold(answer, expected):
    assert extract_gold(answer) == expected


def test_gold_answers_falls_back_to_ground_truth_per_row():
    assert gold_answers(3, answer=["#### 1", None, None], ground_truth=["9", "2", None]) == ["1", "2", None]
    assert gold_answers(2, answer="7") == ["7", "7"]  # one value for the batch
    assert gold_answers(2) == [None, None]


def test_find_numbers():
    assert find_numbers("48/2 = 24 clips, -3 degrees, 1,000 people") == ["48/2", "24", "-3", "1,000"]
    # Thousands grouped by spaces, thin spaces or \, ; a decimal comma; a list of digits stays a list.
    assert find_numbers("1\u2009000 and 1\\,000 and 350 000 and 2,74 and 1,2,3") == [
        "1\u2009000",
        "1\\,000",
        "350 000",
        "2,74",
        "1",
        "2",
        "3",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("We get $x = 2$, then $y = 3$.", "y = 3"),  # the last formula
        ("$$\\frac{1}{3}$$", "\\frac{1}{3}"),
        ("so \\(\\sqrt{2}\\) and", "\\sqrt{2}"),
        ("Thus\n\\[\n(1, 2]\n\\]", "(1, 2]"),  # display math over lines
        ("It costs $5 and $10.", None),  # prices, not math mode
        ("$5+$10=$15", None),  # a closing dollar before a digit is a price
        ("\\$x\\$", None),  # escaped dollars
        ("$ x $", None),  # pandoc's rule: no space inside the dollars
        ("$x$ and\n$", "x"),
        (
            "$\\dfrac{1}{3} $",
            "\\dfrac{1}{3}",
        ),  # a TeX command inside: math, though a space precedes the dollar
        ("$ x = 5 $", "x = 5"),  # a relation inside: math too
        ("It costs $ 5 and $ 7.", None),  # a digit first is a price, spaces or not
        ("The roots are $x_1 = 3$ and $x_2 = -2$.", "x_1 = 3, x_2 = -2"),  # one unknown's values: one answer
        ("$x = 1$, then $y = 2$", "y = 2"),  # two unknowns, words between: the last
        ("no math", None),
    ],
)
def test_math_mode(text, expected):
    assert extract_math_mode(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("So $x^2 = 4$ and there are 2 solutions.", "2"),  # a number after the last formula wins
        ("The roots give $x = 2$.", "x = 2"),
        ("We use 3 steps: $\\frac{1}{3}$", "\\frac{1}{3}"),
        ("The password is AZYUK2A.", None),  # a digit inside a word is no number
        ("x2 + 5", "5"),
        ("H2O has 3 atoms", "3"),
        ("the point (3, 2).", "(3, 2)"),  # a coordinate gives its point
        ("x \\notin [1, 2]", "[1, 2]"),  # an endpoint gives its interval
        ("add 1 1/2 cups", "1 1/2"),  # a mixed number
        ("(3) gives 4", "4"),  # brackets without a comma are not a list
        ("So the ratio is \\frac{10}{9}.", "\\frac{10}{9}"),  # LaTeX without delimiters, whole
        ("10-\\frac{1}{2}", "\\frac{1}{2}"),  # a minus after a digit is no sign, as for numbers
        ("\\frac{14}{2} = 7 apples", "7"),  # a number after the formula wins
        ("\\textbf{Total:} 5", "5"),  # text commands are not formulas
        ("the point (1, \\frac{1}{2})", "(1, \\frac{1}{2})"),  # a formula inside a list gives the list
        ("She pays 1 000 euros.", "1 000"),
        ("Donc 2,74 $.", "2,74"),
        ("The answer is not 90.", None),  # a number said not to be the answer is none
        ("So 5 apples. The answer is not 90.", "5"),
    ],
)
def test_final_expression(text, expected):
    assert extract_final_expression(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{1}, \\boxed{2}", "1, 2"),
        ("$\\boxed{1}$ and $\\boxed{2}$", "1, 2"),
        ("\\boxed{1}, \\boxed{2}, and \\boxed{3}", "1, 2, 3"),
        ("\\boxed{1}; \\boxed{2}", "1, 2"),
        ("\\boxed{1}. Checking: \\boxed{2}", "2"),  # words between: separate boxes, the last
        ("x = \\boxed{1} and y = \\boxed{2}", "2"),  # names between boxes: not one answer
        ("\\boxed{1} \\quad \\text{and} \\quad \\boxed{2}", "1, 2"),  # LaTeX spacing and \text{and}
        ("`\\boxed{1}` and `\\boxed{2}`", "1, 2"),  # markdown code spans
        ("\\boxed{1} \\qquad \\boxed{2}", "1, 2"),
    ],
)
def test_boxes_in_a_row_are_one_answer(text, expected):
    assert extract_answer(text, style="boxed") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Answer: 42", "42"),
        ("**Final Answer:** $\\frac{1}{2}$", "\\frac{1}{2}"),
        ("Final Answer: The final answer is $5$. I hope it is correct.", "5"),  # Minerva's phrasing
        ("The answer is therefore $7$, as claimed.", "7"),  # the formula after the marker, not the line
        ("The answer is 7, not $5$.", "7"),  # a number before the formula: it, not what it is not
        ("The answer is 18 dollars, not 20.", "18 dollars"),  # what it is not is not the answer
        ("Final answer: the largest $n$ is 34.", "34"),  # a formula naming the unknown: what it is
        ("The answer is $x$.", "x"),  # the unknown alone is the answer
        ("The answer is $B$, since 3 > 2.", "B"),  # a letter first is the answer (a choice), not what follows
        ("The answer is $\\pi$, about 3.14.", "\\pi"),
        ("The answer is not $5$.", None),  # a negation is no marker
        ("I answered it: 7", None),  # "answered" is not the marker
    ],
)
def test_final_answer_phrasings(text, expected):
    assert extract_the_answer_is(text) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("$$(1,+\\infty)$$", "(1,+\\infty)"),
        ("\\[x^2\\]", "x^2"),
        ("\\(\\frac{1}{3}\\)", "\\frac{1}{3}"),
        ("$x$ and $y$", "$x$ and $y$"),  # two formulas are not one math-mode answer
        ("$\\dfrac{1}{3} $", "\\dfrac{1}{3}"),  # spaces inside the dollars
    ],
)
def test_extract_gold_in_math_mode(answer, expected):
    assert extract_gold(answer) == expected


@pytest.mark.parametrize(
    "text",
    [
        "\\boxed{1}" + " " * 20_000 + "x \\boxed{2}",  # a long gap between boxes: no joiner, no backtracking
        "$x_1 = 1$" + " " * 20_000 + "x $x_2 = 2$",
        "\\frac" * 20_000 + " 5",  # LaTeX without delimiters, command after command
    ],
)
def test_hostile_completions_are_read_in_linear_time(text):
    started = time.perf_counter()
    extract_answer(text)
    assert (
        time.perf_counter() - started < 1.0
    )  # 20,000 spaces between boxes took 13 s before the length check
