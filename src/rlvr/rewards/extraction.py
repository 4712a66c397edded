"""Pulling the final answer out of a completion: `\\boxed{}`, `<answer>` tags, GSM8K's `####`, final-answer
phrasings, math mode (`$...$`, `\\(...\\)`, ...), LaTeX without delimiters, the last number.

Every extractor takes text and returns the answer string or None; none of them raises on odd input.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# A model that copies the prompt's format template ("<answer> ... </answer>") has not answered.
_PLACEHOLDERS = {"", "...", "…", "<...>", "[...]"}

_BOX_OPENERS = re.compile(r"\\(?:boxed|fbox)\s*\{")
# What may stand between boxes that together form one answer: "\boxed{1}, \boxed{2}", "$\boxed{1}$ and $\boxed{2}$",
# "\boxed{(2, 2)} \quad \text{and} \quad \boxed{(6, 2)}", markdown's "`\boxed{1}` and `\boxed{2}`". Other words
# between two boxes ("first \boxed{1}, then \boxed{2}") make the last one the answer.
_JOINER_SPACE = (
    r"(?:[\s$`*~]|\\(?:q?quad|[,;:! ])|\\(?:text|textrm|textnormal|mathrm|mbox)\s*\{\s*(?:and|or|,)?\s*\})"
)
_BOX_JOINER = re.compile(rf"{_JOINER_SPACE}*(?:,?\s*\b(?:and|or)\b|,|;)?{_JOINER_SPACE}*")


def _joins(text: str, start: int, end: int) -> bool:
    """Whether `text[start:end]` only joins two parts of one answer. A joiner is short: the length check keeps the
    pattern's backtracking from going quadratic on a long gap (20,000 spaces took seconds)."""
    return end - start <= 80 and _BOX_JOINER.fullmatch(text, start, end) is not None


# Numbers as models write them: signs, thousands commas, decimals, simple fractions. A minus counts only when it
# does not follow a word character or a closing bracket, so the "-3" of "10-3" is not read as negative three. Digits
# glued to a letter before them are part of a word or a name ("AZYUK2A", "x2", "H2O"), not a number.
# Thousands may also be grouped by a space, a thin space (U+2009, U+202F, U+00A0, LaTeX's "\,") or "\!" ("1 000",
# "350 000", as GSM8K's own solutions write them); a comma followed by one or two digits, and no other digit group,
# is a decimal comma ("2,74 $"); "1,2,3" stays three numbers.
_THIN_SPACE = r"(?:\\[,!]\s?|\{,\}|[ \u00a0\u2009\u202f])"
_NUMBER = re.compile(
    r"(?:(?<![\w)\]}])-)?(?<![A-Za-z_\d])(?:\d+ \d+/\d+(?![\d.])"  # a mixed number, "1 1/2"
    rf"|\d{{1,3}}(?:{_THIN_SPACE}\d{{3}})+(?:\.\d+)?(?![\d/-]|,\d)"  # "1 000", "1\,000"
    r"|(?<![\d,])\d+,\d{1,2}(?![\d,])"  # a decimal comma, "2,74"
    r"|(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+(?:\.\d+)?)?)"
    r"|(?:(?<![\w)\]}])-)?\.\d+"
)
# A bracketed list on one line, "(3, 2)" or "(-\infty, 1]": a number inside one is a coordinate or an endpoint.
_BRACKET_GROUP = re.compile(r"[(\[][^()\[\]\n]*,[^()\[\]\n]*[)\]]")
# "The answer is not simply $100$" or "isn't" names no answer: long solutions say it on the way to the real one.
_THE_ANSWER_IS = re.compile(
    r"(?i)(?:\bthe\s+(?:final\s+|correct\s+)?answer\s+is(?!n't|\s+not\b)|\b(?:final\s+)?answer\s*(?:\*\*)?\s*[:：])"
    r"\s*[:：]?\s*"
)
# ... and the sentence that says so offers no answer to the last-expression rule either.
_NOT_THE_ANSWER = re.compile(
    r"(?i)\bthe\s+(?:final\s+|correct\s+)?answer\s+(?:is\s+not|isn't)\b.*?(?:[.!?](?=\s|$)|\n|$)"
)
# "18 dollars, not 20": what comes after the "not" is what the answer is not.
# "The answer is 10 - 1 = 9 cookies": the chain without its unit, so that it is checked (an equation of numbers
# answers only when it holds).
_CHAIN_UNIT = re.compile(r"(=\s*[-+]?\d[\d.,/]*)\s+[A-Za-z][A-Za-z\s]*$")
_NOT_AFTER = re.compile(r"[,;]?\s+(?:and\s+)?(?:not|rather\s+than|instead\s+of)\b.*$", re.IGNORECASE)
# A formula that only names the unknown in a final-answer sentence ("the largest $n$ is 34"): the answer comes
# after it. Only a sentence that describes the unknown first: "the answer is $B$, since 3 > 2" answers B.
_VARIABLE = re.compile(r"[A-Za-z](?:_\{?\w+\}?)?'*")
_IS = re.compile(r"\s*(?:is|equals|=|:)\s", re.IGNORECASE)
# Math mode as LaTeX writes it. An inline `$...$` follows pandoc's rule, which tells math from prices: the opening
# `$` has a non-space after it, the closing one a non-space before it and no digit after it, so "costs $5 and $10"
# holds no formula. Display math may span lines; inline math may not.
_MATH_SPAN = re.compile(
    r"(?<!\\)\$\$(?P<display>.+?)\$\$"
    r"|\\\[(?P<bracket>.+?)\\\]"
    r"|\\\((?P<paren>.+?)\\\)"
    r"|(?<![\\$\w])\$(?P<inline>[^\s$](?:[^$\n]*?[^\s$\\])?)\$(?!\d)"
    # Spaces inside the dollars ("$\dfrac{1}{3} $", "$ \begin{pmatrix}...\end{pmatrix} $", "$= 90 . $"): still math
    # when it starts with no digit (a price does) and holds a TeX command or a relation.
    r"|(?<![\\$\w])\$(?=\s*[^\s\d$])(?=[^$\n]*?(?:\\[A-Za-z]|[\^_{=<>]))(?P<spaced>[^$\n]+?)\$(?!\d)",
    re.DOTALL,
)


def completion_text(completion: Any) -> str:
    """The text of one completion as a reward receives it: a string, or chat messages.

    A message list (what TRL passes when prompts are conversations) gives the content of its last assistant
    message; multimodal content parts give their text parts joined.

    >>> completion_text("\\\\boxed{72}")
    '\\\\boxed{72}'
    >>> completion_text([{"role": "assistant", "content": "<answer>7</answer>"}])
    '<answer>7</answer>'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, (list, tuple)) and completion:
        messages = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in messages if m.get("role") == "assistant"]
        chosen = assistant or messages
        return _content_text(chosen[-1].get("content")) if chosen else ""
    return ""


def prompt_text(prompt: Any) -> str:
    """The question of one prompt: the prompt string itself, or the last user message of a conversation.

    >>> prompt_text([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+3?"}])
    '2+3?'
    """
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)) and prompt:
        messages = [m for m in prompt if isinstance(m, dict)]
        users = [m for m in messages if m.get("role") == "user"]
        chosen = users or messages
        return _content_text(chosen[-1].get("content")) if chosen else ""
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type", "text") == "text"
        ]
        return "".join(p for p in parts if isinstance(p, str))
    return ""


def extract_boxed(text: str) -> str | None:
    """Content of the last complete `\\boxed{...}` (or `\\fbox{...}`), nested braces kept whole.

    A box inside another box belongs to the outer one; a box left unclosed (a truncated completion) is skipped.
    Boxes in a row separated only by a comma, "and" or "or" are one answer: `\\boxed{1}, \\boxed{2}` gives `1, 2`.

    >>> extract_boxed(r"so \\boxed{\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    >>> extract_boxed(r"\\boxed{1} then \\boxed{2}"), extract_boxed(r"$\\boxed{1}$ and $\\boxed{2}$")
    ('2', '1, 2')
    """
    boxes = _complete_boxes(text)
    if not boxes:
        return None
    answer = [_unbox(boxes[-1][2])]
    for (_, end, content), (start, _, _) in zip(boxes[-2::-1], boxes[:0:-1], strict=True):
        if not _joins(text, end, start):
            break
        answer.insert(0, _unbox(content))
    parts = [part for part in answer if part]
    return ", ".join(parts) if parts else None


def _complete_boxes(text: str) -> list[tuple[int, int, str]]:
    """`(start, end, content)` of each complete box, in order."""
    boxes = []
    position = 0
    while (opener := _BOX_OPENERS.search(text, position)) is not None:
        end = _closing_brace(text, opener.end())
        if end is None:
            position = opener.end()
            continue
        boxes.append((opener.start(), end + 1, text[opener.end() : end]))
        position = end + 1
    return boxes


def _unbox(content: str) -> str:
    inner = content.strip()
    # \boxed{\boxed{5}}: the inner box is the same answer.
    while (opener := _BOX_OPENERS.match(inner)) is not None and _closing_brace(inner, opener.end()) == len(
        inner
    ) - 1:
        inner = inner[opener.end() : -1].strip()
    return inner


def _closing_brace(text: str, start: int) -> int | None:
    """Index of the `}` that closes the brace opened just before `start`, or None when it never closes."""
    depth = 1
    i = start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2  # \{ and \} are literal braces, not grouping
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def extract_answer_tag(text: str, tag: str = "answer") -> str | None:
    """Stripped content of the last complete `<tag>...</tag>`; a placeholder such as `...` is no answer.

    >>> extract_answer_tag("<reasoning>4+3</reasoning><answer> 7 </answer>")
    '7'
    >>> extract_answer_tag("<answer>...</answer>") is None
    True
    """
    close = f"</{tag}>"
    end = text.rfind(close)
    if end < 0:
        return None
    start = text.rfind(f"<{tag}>", 0, end)
    if start < 0:
        return None
    answer = text[start + len(tag) + 2 : end].strip()
    return None if answer in _PLACEHOLDERS else answer


def extract_gsm8k(text: str) -> str | None:
    """What follows the last `####` on its line, as in GSM8K's reference answers.

    >>> extract_gsm8k("48/2 = 24 clips in May.\\n#### 72")
    '72'
    """
    at = text.rfind("####")
    if at < 0:
        return None
    answer = text[at + 4 :].strip().split("\n", 1)[0].strip().rstrip(".").strip()
    return answer or None


def extract_the_answer_is(text: str) -> str | None:
    """After the last "the answer is" or "answer:": its first formula in math mode, else the rest of the line
    without a closing period or markdown bold.

    A formula that only names the unknown is not the answer: "Final answer: the largest $n$ is 34." answers 34.

    >>> extract_the_answer_is("So the final answer is: 18 dollars.")
    '18 dollars'
    >>> extract_the_answer_is(r"Final Answer: The final answer is $\\frac13$. I hope it is correct.")
    '\\\\frac13'
    >>> extract_the_answer_is("Final answer: the largest $n$ is 34.")
    '34'
    """
    # The text after the last marker, even when one line holds several ("... is 72. The answer is 5.")
    markers = list(_THE_ANSWER_IS.finditer(text))
    if not markers:
        return None
    rest = text[markers[-1].end() :]
    line = rest.split("\n", 1)[0]
    span = _MATH_SPAN.match(rest.lstrip("*").lstrip())
    if span is None and (span := _MATH_SPAN.search(line)) is not None:
        before, after = line[: span.start()], line[span.end() :]
        if re.search(r"\d", before):
            line, span = before, None  # "7, not $5$": the number came first
        elif re.search(r"[A-Za-z]", before) and _VARIABLE.fullmatch(_span_content(span)) and _IS.match(after):
            value = extract_final_expression(after)  # "the largest $n$ is 34": what $n$ is
            if value is not None:
                return value
    if span is not None:
        return _span_content(span) or None
    answer = _CHAIN_UNIT.sub(r"\1", _NOT_AFTER.sub("", line.strip()).rstrip(".").strip())
    answer = answer.rstrip(".").strip().strip("*").strip().rstrip(".").strip()  # "**18**." -> "18"
    return answer or None


def extract_math_mode(text: str) -> str | None:
    """Content of the last formula in math mode: `$...$`, `$$...$$`, `\\(...\\)` or `\\[...\\]`.

    A dollar before a price is not math mode (see `_MATH_SPAN`). Formulas in a row that name the same unknown
    ("$x_1 = 3$ and $x_2 = -2$") are one answer, joined by commas.

    >>> extract_math_mode(r"We get $x = 2$, so the sum is $$\\frac{1}{3}$$.")
    '\\\\frac{1}{3}'
    >>> extract_math_mode("It costs $5 and $10.") is None
    True
    >>> extract_math_mode("The roots are $x_1 = 3$ and $x_2 = -2$.")
    'x_1 = 3, x_2 = -2'
    """
    spans = list(_MATH_SPAN.finditer(text))
    return _joined_spans(text, spans) or None if spans else None


def _span_content(span: re.Match[str]) -> str:
    content = next(group for group in span.groups() if group is not None).strip().rstrip(".,;").strip()
    return re.sub(r"^=\s*", "", content)  # "$= 100 - 10 = 90$" continues a chain from the line before


# An unknown and its value, "x_{1} = 3": solutions named by one letter are one answer together.
_NAMED_VALUE = re.compile(r"([A-Za-z])(?:_\{?\w+\}?)?\s*=\s*[^=]+")


def _joined_spans(text: str, spans: list[re.Match[str]]) -> str:
    """The last span's content, with the spans before it that name the same unknown and stand next to it."""
    contents = [_span_content(spans[-1])]
    named = _NAMED_VALUE.fullmatch(contents[0])
    for before, after in zip(spans[-2::-1], spans[:0:-1], strict=True):
        content = _span_content(before)
        other = _NAMED_VALUE.fullmatch(content)
        if named is None or other is None or other.group(1) != named.group(1):
            break
        if not _joins(text, before.end(), after.start()):
            break
        contents.insert(0, content)
    return ", ".join(contents)


def extract_last_number(text: str) -> str | None:
    """The last number in the text, as written (commas kept), or None.

    >>> extract_last_number("3 boxes of 1,000 make 3,000.")
    '3,000'
    >>> extract_last_number("10-3"), extract_last_number("She pays 1 000 euros.")
    ('3', '1 000')
    """
    numbers = find_numbers(text)
    return numbers[-1] if numbers else None


def find_numbers(text: str) -> list[str]:
    """Every number in the text, as written.

    >>> find_numbers("48/2 = 24 clips, -3 degrees, 1,000 people")
    ['48/2', '24', '-3', '1,000']
    """
    return _NUMBER.findall(text) if isinstance(text, str) else []


# LaTeX written outside math mode ("the ratio is \frac{10}{9}"): a command with its brace groups, glued to the
# digits, signs, powers and commands around it. Layout and text commands are not a formula.
_BARE_COMMAND = re.compile(r"(?<![\\\w$])(?:(?<![\w)\]}])[-+])?(?:\d+(?:\.\d+)?)?\\[A-Za-z]+")
_COMMAND = re.compile(r"\\([A-Za-z]+)")
_GLUED = re.compile(r"[\d^_]|\.\d")  # digits, powers and subscripts glued to a command: "\sqrt3", "\pi^2"
_NOT_FORMULAS = frozenset(
    "text textbf textit textrm emph mathrm mbox quad qquad item section subsection label ref cite newline hline"
    " begin end left right boxed fbox hspace vspace noindent par".split()
)


def _bare_latex(text: str) -> list[tuple[int, int]]:
    """`(start, end)` of each formula written without math delimiters, in order."""
    found: list[tuple[int, int]] = []
    position = 0
    while (command := _BARE_COMMAND.search(text, position)) is not None:
        end = command.end()
        names = [re.search(r"[A-Za-z]+$", command.group()).group()]
        while end < len(text):
            if text[end] == "{":
                close = _closing_brace(text, end + 1)
                if close is None:
                    break
                end = close + 1
            elif name := _COMMAND.match(text, end):
                names.append(name.group(1))
                end = name.end()
            elif _GLUED.match(text, end):
                end += 1
            else:
                break
        if not _NOT_FORMULAS.intersection(names):
            found.append((command.start(), end))
        position = max(end, command.end())
    return found


def extract_final_expression(text: str) -> str | None:
    """Whichever comes last: the last formula in math mode, or the last number or LaTeX formula outside one.

    A number inside a bracketed list ("(3, 2)", "(-\\infty, 1)") gives the whole list: it is a coordinate or an
    endpoint, and "the point (3, 2)" does not answer "2". A number inside LaTeX written without delimiters gives
    the formula: "the ratio is \\frac{10}{9}" does not answer 9.

    >>> extract_final_expression("So $x^2 = 4$ and there are 2 solutions.")
    '2'
    >>> extract_final_expression("The roots give $x = 2$.")
    'x = 2'
    >>> extract_final_expression("so x lies in (-infinity, 1).")
    '(-infinity, 1)'
    >>> extract_final_expression(r"The slope is -\\frac{10}{9}.")
    '-\\\\frac{10}{9}'
    """
    text = _NOT_THE_ANSWER.sub(lambda statement: " " * len(statement.group()), text)
    spans = list(_MATH_SPAN.finditer(text))
    after_spans = spans[-1].end() if spans else 0
    numbers = [n for n in _NUMBER.finditer(text) if n.start() >= after_spans]
    formulas = [f for f in _bare_latex(text) if f[0] >= after_spans]
    answer: tuple[int, int] | None = (numbers[-1].start(), numbers[-1].end()) if numbers else None
    if formulas and (answer is None or answer[0] < formulas[-1][1]):
        answer = formulas[-1]  # a later number ("\frac{14}{2} = 7") wins, one inside the formula does not
    if answer is None:
        return _joined_spans(text, spans) or None if spans else None
    for group in _BRACKET_GROUP.finditer(text):
        if group.start() < answer[0] and answer[1] <= group.end():
            return group.group()
    return text[answer[0] : answer[1]]


def extract_answer_content(content: str) -> str | None:
    """The answer inside an answer field (an `<answer>` tag's content): its box, its "the answer is", its last
    formula in math mode, else the content as it stands.

    >>> extract_answer_content(r"The answer is $\\frac{1}{3}$"), extract_answer_content("x = 5")
    ('\\\\frac{1}{3}', 'x = 5')
    """
    for extractor in (extract_boxed, extract_the_answer_is, extract_math_mode):
        answer = extractor(content)
        if answer is not None:
            return answer
    return content.strip() or None


def _extract_auto(text: str) -> str | None:
    boxed = extract_boxed(text)
    if boxed is None and _complete_boxes(text):
        return None  # an empty box: the model answered nothing, and the last number is not its answer
    tag = extract_answer_tag(text)
    if boxed is None and tag is not None:
        return extract_answer_content(tag)
    for extractor in (
        extract_boxed,
        _gsm8k_final_line,
        extract_the_answer_is,
        extract_final_expression,
    ):
        answer = extractor(text)
        if answer is not None:
            return answer
    return None


def _gsm8k_final_line(text: str) -> str | None:
    """`extract_gsm8k` where `####` marks the answer: not when a "the answer is" follows it (the later statement
    wins), nor when the `####` lines count 1, 2, 3 (markdown headings, as small models write them)."""
    values = [line.strip() for line in re.findall(r"####([^\n]*)", text)]
    if len(values) >= 2 and values == [str(n) for n in range(1, len(values) + 1)]:
        return None
    if any(m.start() > text.rfind("####") for m in _THE_ANSWER_IS.finditer(text)):
        return None
    return extract_gsm8k(text)


EXTRACTION_STYLES: dict[str, Callable[[str], str | None]] = {
    "auto": _extract_auto,
    "boxed": extract_boxed,
    "answer_tag": extract_answer_tag,
    "gsm8k": extract_gsm8k,
    "last_number": extract_last_number,
}


def extract_answer(text: str, style: str = "auto") -> str | None:
    """The final answer in `text` by one of `EXTRACTION_STYLES`, or None when there is none.

    `auto` tries, in order: the last `\\boxed{}` (boxes in a row joined), the last `<answer>` tag (read with
    `extract_answer_content`), the later of `####` and "the answer is ..." / "answer: ...", then whichever comes
    last of the last formula in math mode, the last number and the last LaTeX written without delimiters. An empty
    box is no answer.

    >>> extract_answer(r"2 + 3 = 5, so \\boxed{5}.")
    '5'
    >>> extract_answer("She earned $10 in total.", style="last_number")
    '10'
    """
    extractor = EXTRACTION_STYLES.get(style)
    if extractor is None:
        valid = ", ".join(sorted(EXTRACTION_STYLES))
        raise ValueError(f"unknown extraction style {style!r}; valid styles: {valid}")
    if not isinstance(text, str):
        return None
    return extractor(text)


def extract_gold(text: Any) -> str | None:
    """The gold final answer from a dataset answer field: GSM8K's `#### N`, a boxed answer, or the text itself.

    Thousands commas in a GSM8K answer are dropped ("#### 1,000" gives "1000") because its answers are numbers.

    >>> extract_gold("Natalia sold 48+24 = 72 clips.\\n#### 72")
    '72'
    >>> extract_gold(r"The sum is $\\boxed{\\frac{1}{2}}$.")
    '\\\\frac{1}{2}'
    >>> extract_gold(18), extract_gold(14.0)
    ('18', '14')
    """
    if text is None:
        return None
    if isinstance(text, bool) or not isinstance(text, (str, int, float)) or text != text:
        return None  # NaN (`text != text`): an empty cell of a numeric column, no gold
    if isinstance(text, float) and text.is_integer():
        text = int(text)  # SVAMP-style 14.0 is the integer 14
    text = str(text)
    if "####" in text:
        answer = extract_gsm8k(text)
        return answer.replace(",", "") if answer else None
    if _BOX_OPENERS.search(text):
        boxed = extract_boxed(text)
        if boxed is not None:
            return boxed
    text = text.strip()
    span = _MATH_SPAN.fullmatch(text)
    if span is not None:
        text = _span_content(span)  # align-anything's golds are "$400$"; MATH-style ones "$$(1,+\infty)$$"
    return text or None


def extract_golds(value: Any) -> str | list[str] | None:
    """`extract_gold` of one row's answer field, where a list (or tuple) holds several acceptable golds: the
    list of each one's gold, repeats and missing ones dropped (None when none is left).

    >>> extract_golds(["5", "five", None]), extract_golds("#### 7"), extract_golds([])
    (['5', 'five'], '7', None)
    """
    if isinstance(value, (list, tuple)):
        golds = list(dict.fromkeys(g for g in map(extract_gold, value) if g is not None))
        return golds or None
    return extract_gold(value)


def gold_choices(
    count: int, answer: Any = None, ground_truth: Any = None, raw: bool = False
) -> list[list[str] | None]:
    """Every acceptable gold answer of each row: a row whose `answer` is a list (`["5", "five"]`) accepts any of
    them, a single gold is a list of one; `ground_truth` stands in row by row where `answer` has none, and a row
    without either is None. Each is passed through `extract_gold` unless `raw` (then its text).

    >>> gold_choices(2, answer=[["5", "five"], "#### 7"])
    [['5', 'five'], ['7']]
    """
    first, second = _column(answer, count), _column(ground_truth, count)
    read = _raw_golds if raw else extract_golds
    choices: list[list[str] | None] = []
    for a, g in zip(first, second, strict=True):
        golds = read(a)
        golds = golds if golds is not None else read(g)
        choices.append(None if golds is None else [golds] if isinstance(golds, str) else golds)
    return choices


def _raw_golds(value: Any) -> str | list[str] | None:
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v is not None] or None
    return None if value is None else str(value)


def gold_answers(
    count: int, answer: Any = None, ground_truth: Any = None, raw: bool = False
) -> list[str | None]:
    """One gold answer per completion from the `answer` column, falling back to `ground_truth` row by row.

    Each is passed through `extract_gold` unless `raw`; a missing one is None. A row with several acceptable
    golds gives its first: rewards that accept any of them read `gold_choices`.

    >>> gold_answers(2, answer=["#### 72", None], ground_truth=["72", "5"])
    ['72', '5']
    """
    return [None if golds is None else golds[0] for golds in gold_choices(count, answer, ground_truth, raw)]


def _column(values: Any, count: int) -> list[Any]:
    if values is None:
        return [None] * count
    if isinstance(values, (str, int, float)):
        return [values] * count  # one value for the whole batch
    values = list(values)[:count]
    return values + [None] * (count - len(values))
