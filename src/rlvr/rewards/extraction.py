"""Pulling the final answer out of a completion: `\\boxed{}`, `<answer>` tags, GSM8K's `####`, the last number.

Every extractor takes text and returns the answer string or None; none of them raises on odd input.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# A model that copies the prompt's format template ("<answer> ... </answer>") has not answered.
_PLACEHOLDERS = {"", "...", "…", "<...>", "[...]"}

_BOX_OPENERS = re.compile(r"\\(?:boxed|fbox)\s*\{")
# Numbers as models write them: signs, thousands commas, decimals, simple fractions. A minus counts only when it
# does not follow a word character or a closing bracket, so the "-3" of "10-3" is not read as negative three.
_NUMBER = re.compile(
    r"(?:(?<![\w)\]}])-)?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+(?:\.\d+)?)?|(?:(?<![\w)\]}])-)?\.\d+"
)
_THE_ANSWER_IS = re.compile(r"(?i)\bthe\s+(?:final\s+)?answer\s+is\s*[:：]?\s*")


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

    >>> extract_boxed(r"so \\boxed{\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    >>> extract_boxed(r"\\boxed{1} then \\boxed{2}")
    '2'
    """
    last = None
    position = 0
    while (opener := _BOX_OPENERS.search(text, position)) is not None:
        end = _closing_brace(text, opener.end())
        if end is None:
            position = opener.end()
            continue
        last = text[opener.end() : end]
        position = end + 1
    if last is None:
        return None
    inner = last.strip()
    # \boxed{\boxed{5}}: the inner box is the same answer.
    while (opener := _BOX_OPENERS.match(inner)) is not None and _closing_brace(inner, opener.end()) == len(
        inner
    ) - 1:
        inner = inner[opener.end() : -1].strip()
    return inner or None


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
    """The rest of the line after the last "the answer is", without a closing period or markdown bold.

    >>> extract_the_answer_is("So the final answer is: 18 dollars.")
    '18 dollars'
    """
    # The text after the last marker, even when one line holds several ("... is 72. The answer is 5.")
    markers = list(_THE_ANSWER_IS.finditer(text))
    if not markers:
        return None
    answer = text[markers[-1].end() :].split("\n", 1)[0].strip()
    answer = answer.rstrip(".").strip().strip("*").strip().rstrip(".").strip()  # "**18**." -> "18"
    if len(answer) >= 2 and answer.startswith("$") and answer.endswith("$"):
        answer = answer.strip("$").strip()
    return answer or None


def extract_last_number(text: str) -> str | None:
    """The last number in the text, as written (commas kept), or None.

    >>> extract_last_number("3 boxes of 1,000 make 3,000.")
    '3,000'
    >>> extract_last_number("10-3")
    '3'
    """
    numbers = find_numbers(text)
    return numbers[-1] if numbers else None


def find_numbers(text: str) -> list[str]:
    """Every number in the text, as written.

    >>> find_numbers("48/2 = 24 clips, -3 degrees, 1,000 people")
    ['48/2', '24', '-3', '1,000']
    """
    return _NUMBER.findall(text) if isinstance(text, str) else []


def _extract_auto(text: str) -> str | None:
    for extractor in (
        extract_boxed,
        extract_answer_tag,
        extract_gsm8k,
        extract_the_answer_is,
        extract_last_number,
    ):
        answer = extractor(text)
        if answer is not None:
            return answer
    return None


EXTRACTION_STYLES: dict[str, Callable[[str], str | None]] = {
    "auto": _extract_auto,
    "boxed": extract_boxed,
    "answer_tag": extract_answer_tag,
    "gsm8k": extract_gsm8k,
    "last_number": extract_last_number,
}


def extract_answer(text: str, style: str = "auto") -> str | None:
    """The final answer in `text` by one of `EXTRACTION_STYLES`, or None when there is none.

    `auto` tries, in order: the last `\\boxed{}`, the last `<answer>` tag, `####`, "the answer is ...", the last
    number.

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
    if len(text) > 2 and text[0] == text[-1] == "$" and "$" not in text[1:-1]:
        text = text[1:-1].strip()  # align-anything's golds are "$400$"
    return text or None


def gold_answers(
    count: int, answer: Any = None, ground_truth: Any = None, raw: bool = False
) -> list[str | None]:
    """One gold answer per completion from the `answer` column, falling back to `ground_truth` row by row.

    Each is passed through `extract_gold` unless `raw`; a missing one is None.

    >>> gold_answers(2, answer=["#### 72", None], ground_truth=["72", "5"])
    ['72', '5']
    """
    first, second = _column(answer, count), _column(ground_truth, count)
    golds = [a if a is not None else g for a, g in zip(first, second, strict=True)]
    if raw:
        return [None if g is None else str(g) for g in golds]
    return [extract_gold(g) for g in golds]


def _column(values: Any, count: int) -> list[Any]:
    if values is None:
        return [None] * count
    if isinstance(values, (str, int, float)):
        return [values] * count  # one value for the whole batch
    values = list(values)[:count]
    return values + [None] * (count - len(values))
