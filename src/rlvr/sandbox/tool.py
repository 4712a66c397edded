"""The `python` tool of agentic episodes: run a snippet in the sandbox, give back what it printed, as text a model
reads. A tool is a typed function with a docstring (its JSON schema comes from transformers' `get_json_schema`)."""

from __future__ import annotations

from rlvr.sandbox.backends import get_sandbox
from rlvr.sandbox.types import ExecutionResult, Limits

TOOL_LIMITS = Limits(timeout=10.0, output_bytes=1 << 20)
MAX_CHARS = 4000  # of output shown to the model: the start and the end (where a traceback ends) are kept


def python(code: str) -> str:
    """Run a Python program in a sandbox (no network, no files kept between calls) and return what it printed.

    Args:
        code: A complete Python program; print the values you want to see.
    """
    return run_python(code)


def run_python(
    code: str, *, sandbox: str = "auto", limits: Limits | None = None, max_chars: int = MAX_CHARS
) -> str:
    """`python` with its options: which sandbox, which limits, how much output the model sees.

    >>> run_python("print(6 * 7)")  # doctest: +SKIP
    '42\\n'
    """
    return format_result(get_sandbox(sandbox).run(code, limits=limits or TOOL_LIMITS), max_chars)


def format_result(result: ExecutionResult, max_chars: int = MAX_CHARS) -> str:
    """stdout, then stderr, then a bracketed note when the program did not end normally; cut in the middle past
    `max_chars`.

    >>> format_result(ExecutionResult("error", 1, "", "ZeroDivisionError: division by zero\\n", 0.1))
    'ZeroDivisionError: division by zero\\n[exit code 1]'
    """
    notes = {
        "ok": "",
        "error": f"[exit code {result.exit_code}]",
        "syntax_error": f"[syntax error, nothing ran]\n{result.detail}",
        "timeout": f"[stopped: {result.detail}]",
        "crash": f"[crashed: {result.detail}]",
        "output_limit": f"[stopped: {result.detail}]",
    }
    text = result.stdout + result.stderr + notes[result.status]
    if not text:
        return "[no output]"
    if len(text) > max_chars:
        half = max_chars // 2
        text = f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"
    return text
