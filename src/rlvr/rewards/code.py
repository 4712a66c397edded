"""The test-based code reward: run the program a completion holds against its row's tests, in a sandbox.

Tests come from the row's columns: HumanEval's `test` (a `def check(candidate)`) with `entry_point`; `tests`, a
list of assert statements (MBPP's `test_list`, renamed); or, where neither is given (the reward server), the gold
answer (`answer`/`ground_truth`) holding test code, or JSON `{"test": ..., "entry_point": ...}` or `{"tests": [...]}`.
A `starter_code` column (HumanEval's `prompt`: imports, helpers, the signature) goes before the completion's code.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rlvr.rewards.extraction import completion_text
from rlvr.rewards.registry import register_reward
from rlvr.sandbox import SANDBOXES, Limits, SandboxUnavailable, get_sandbox
from rlvr.sandbox.harness import TestSpec, run_tests

_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)```", re.DOTALL)
_OPEN_FENCE = re.compile(r"```[ \t]*(?:python3?|py3?)[ \t]*\n", re.IGNORECASE)
PYTHON_TAGS = ("python", "python3", "py", "py3")
_log = logging.getLogger("rlvr.rewards.code")


def extract_code(text: str, entry_point: str | None = None) -> str:
    """The program in a reply.

    The last ```python block (py, python3 too) that defines `entry_point`, else the last ```python block, else the
    last fenced block with no language, else what follows an unclosed ```python fence (a reply cut at the length
    limit), else the whole reply. Last, not longest: a reply that revises its code ends with the final version,
    and open-r1's code reward takes the last block too; a trailing "example usage" block is skipped when it does
    not define the entry point.

    >>> extract_code("Here:\\n```python\\ndef f():\\n    return 1\\n```\\nUsage:\\n```python\\nprint(f())\\n```", "f")
    'def f():\\n    return 1\\n'
    >>> extract_code("def f(): return 2")
    'def f(): return 2'
    """
    blocks = [(tag.lower(), body) for tag, body in _FENCE.findall(text)]
    python = [body for tag, body in blocks if tag in PYTHON_TAGS]
    if python and entry_point:
        defining = [body for body in python if re.search(rf"\bdef\s+{re.escape(entry_point)}\s*\(", body)]
        if defining:
            return defining[-1]
    if python:
        return python[-1]
    plain = [body for tag, body in blocks if not tag]
    if plain:
        return plain[-1]
    unclosed = list(_OPEN_FENCE.finditer(text))
    if unclosed:
        return text[unclosed[-1].end() :]
    return text


def build_program(code: str, starter_code: str | None = None) -> str:
    """The program to run: the starter code (imports, helpers, the signature and docstring), then the completion's
    code. A full function from an instruct model redefines the stub; a bare body from a base model continues it
    (blank lines do not end a function in Python).

    >>> build_program("    return a + b\\n", "def add(a, b):\\n    '''Sum.'''\\n")
    "def add(a, b):\\n    '''Sum.'''\\n\\n    return a + b\\n"
    """
    if not starter_code:
        return code
    return starter_code.rstrip("\n") + "\n\n" + code


@register_reward("code_tests")
def code_tests(
    prompts,
    completions,
    test=None,
    entry_point=None,
    tests=None,
    starter_code=None,
    answer=None,
    ground_truth=None,
    *,
    sandbox: str = "auto",
    partial_credit: bool = True,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    max_parallel: int | None = None,
    **kwargs,
) -> list[float | None]:
    """The fraction of the row's test cases the completion's program passes (`partial_credit`), or 1.0 only when
    all pass; 0.0 for a syntax error, a timeout, a crash, too much output, or a program that raised while being
    defined (each outcome counted in the log); None for a row without tests.

    Options (`rewards.options: {code_tests: {...}}` in a config, `--reward-options` of the reward server, or
    functools.partial): `sandbox` auto|bubblewrap|subprocess|none (a named sandbox that cannot start raises),
    `partial_credit`, `timeout` seconds and `memory_mb` per program, `max_parallel` programs at once (default:
    this process's CPUs).

    >>> code_tests(prompts=["q"], completions=["```python\\ndef add(a, b):\\n    return a + b\\n```"],
    ...            tests=[["assert add(1, 2) == 3", "assert add(2, 2) == 5"]])  # doctest: +SKIP
    [0.5]
    """
    count = len(completions)
    texts = [completion_text(c) for c in completions]
    entry_points, starters = _column(entry_point, count), _column(starter_code, count)
    specs = row_tests(count, test, entry_point, tests, answer, ground_truth)
    limits = Limits(timeout=timeout, memory_bytes=int(memory_mb) << 20)
    box = get_sandbox(sandbox)

    def score(i: int) -> tuple[float | None, str]:
        if specs[i] is None:
            return None, "no tests"
        code = extract_code(texts[i], entry_points[i] if isinstance(entry_points[i], str) else None)
        report = run_tests(build_program(code, starters[i]), specs[i], sandbox=box, limits=limits)
        if report.status not in ("passed", "failed"):
            return 0.0, report.status
        if partial_credit:
            return report.fraction, report.status
        return float(report.status == "passed"), report.status

    workers = max(1, min(count, max_parallel or len(os.sched_getaffinity(0))))
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(score, range(count)))
    outcomes = Counter(status for _, status in results)
    _log.info(
        "code_tests (%s sandbox): %s", box.name, ", ".join(f"{n} {s}" for s, n in outcomes.most_common())
    )
    return [value for value, _ in results]


def check_code_options(
    sandbox: str = "auto",
    partial_credit: bool = True,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    max_parallel: int | None = None,
) -> None:
    """ValueError for option values `code_tests` cannot run with, before any program runs: rlvr checks
    `rewards.options` and `--reward-options` with it (`rlvr.rewards.options`). A sandbox named explicitly must
    start here (it fails closed)."""
    if sandbox not in SANDBOXES:
        close = difflib.get_close_matches(str(sandbox), SANDBOXES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"sandbox must be one of {', '.join(SANDBOXES)}, got {sandbox!r}{hint}")
    if not (0 < timeout <= 3600):
        raise ValueError(f"timeout must be above 0 and at most 3600 seconds per program, got {timeout}")
    if memory_mb < 16:
        raise ValueError(f"memory_mb must be at least 16 (the interpreter's own needs), got {memory_mb}")
    if max_parallel is not None and max_parallel < 1:
        raise ValueError(f"max_parallel must be at least 1 (null: one per CPU), got {max_parallel}")
    try:
        get_sandbox(sandbox)
    except SandboxUnavailable as exc:
        raise ValueError(str(exc)) from None


code_tests.check_options = check_code_options  # type: ignore[attr-defined]


def row_tests(count: int, test=None, entry_point=None, tests=None, answer=None, ground_truth=None):
    """One `TestSpec` (or None: no tests) per row from the columns; a ValueError names a row whose tests are broken.

    >>> row_tests(1, tests=[["assert f() == 1"]])[0].kind
    'asserts'
    """
    columns = [_column(c, count) for c in (test, entry_point, tests, answer, ground_truth)]
    cache: dict[Any, TestSpec | None] = {}  # a group's completions share their row's tests
    specs = []
    for i, (row_test, row_entry, row_asserts, row_answer, row_truth) in enumerate(zip(*columns, strict=True)):
        key = json.dumps([row_test, row_entry, row_asserts, row_answer, row_truth], default=str)
        if key not in cache:
            try:
                cache[key] = _spec(
                    row_test, row_entry, row_asserts, row_answer if row_answer is not None else row_truth
                )
            except ValueError as exc:
                raise ValueError(f"row {i} has tests code_tests cannot use: {exc}") from None
        specs.append(cache[key])
    return specs


def _spec(test: Any, entry_point: Any, asserts: Any, gold: Any) -> TestSpec | None:
    if test is not None:
        return TestSpec.humaneval(test, entry_point) if entry_point else TestSpec.from_code(test)
    if asserts is not None:
        if isinstance(asserts, str):  # a list stored as JSON text
            asserts = json.loads(asserts) if asserts.lstrip().startswith("[") else [asserts]
        return TestSpec.from_asserts(list(asserts))
    if isinstance(gold, (list, tuple)) and gold:  # a list column of test lines (rlvr's data keeps it a list)
        return TestSpec.from_asserts([str(line) for line in gold])
    if not isinstance(gold, str) or not gold.strip():
        return None
    text = gold.strip()
    if text.startswith(("{", "[")):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"the gold looks like JSON but is not: {exc}") from None
        if isinstance(data, list):
            return TestSpec.from_asserts(data)
        if isinstance(data, dict) and data.get("test") is not None:
            return _spec(data["test"], data.get("entry_point"), None, None)
        if isinstance(data, dict) and data.get("tests") is not None:
            return _spec(None, None, data["tests"], None)
        raise ValueError('JSON tests need "test" (with "entry_point") or "tests"')
    return TestSpec.from_code(text)


def _column(values: Any, count: int) -> list[Any]:
    """One value per row: None, one value for every row, or a list."""
    if values is None or isinstance(values, str):
        return [values] * count
    return (list(values) + [None] * count)[:count]
