"""The `python` environment: a `run_python(code)` tool whose code runs in a sandbox, behind `CodeRunner`.

Model-written code never runs in this process: the environment hands it to a `CodeRunner`, by default rlvr's
sandbox (`sandbox: auto`: bubblewrap where it works, else a subprocess with limits; docs/code.md). A sandbox named
that cannot start is an error, never a silent fallback to running the code unsandboxed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from rlvr.environments.tools import ToolEnvironment

MAX_OUTPUT_CHARS = 2000  # the last characters of stdout and of stderr each, in the tool's reply; max_observation_tokens cuts further


class CodeResult(Protocol):
    stdout: str
    stderr: str
    status: str  # "ok", or why not: "error" (an exception, a non-zero exit), "timeout", ...


class CodeRunner(Protocol):
    def run(self, code: str, timeout: float) -> CodeResult:
        """Run `code` in a sandbox for at most `timeout` seconds."""
        ...


@dataclass
class RunResult:
    """A plain `CodeResult`."""

    stdout: str = ""
    stderr: str = ""
    status: str = "ok"


class PythonEnvironment(ToolEnvironment):
    """Offer `run_python(code)`; its reply is the run's stdout, then stderr and the status when not ok.

    >>> class Echo:
    ...     def run(self, code, timeout):
    ...         return RunResult(stdout=f"ran {len(code)} characters")
    >>> env = PythonEnvironment(runner=Echo())
    >>> env.step({"role": "assistant", "content": '<tool_call>{"name": "run_python", "arguments": {"code": "print(1)"}}</tool_call>'}).messages[0]["content"]
    'ran 8 characters'
    """

    def __init__(
        self,
        runner: CodeRunner | None = None,
        run_timeout: float = 10.0,
        sandbox: str = "auto",
        max_tool_calls: int | None = None,
        tool_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise TypeError(f"the python environment takes no argument {', '.join(kwargs)}")
        if runner is None:
            runner = SandboxRunner(sandbox)
        self.runner = runner
        self.run_timeout = run_timeout

        def run_python(code: str) -> str:
            """Run Python code in a sandbox and return what it printed.

            Args:
                code: The Python program to run; print what you want to see.

            Returns:
                The program's output, and its errors if it failed.
            """
            return format_result(self.runner.run(code, self.run_timeout))

        # the sandbox enforces run_timeout itself; the thread's timeout only catches a runner that hangs
        super().__init__([run_python], max_tool_calls, tool_timeout or run_timeout + 5.0)


def format_result(result: CodeResult) -> str:
    """stdout, then stderr and the status when they say something.

    >>> format_result(RunResult(stdout="3\\n", stderr="Traceback ...", status="error"))
    '3\\n\\nstderr:\\nTraceback ...\\nstatus: error'
    """
    parts = [result.stdout[-MAX_OUTPUT_CHARS:]]
    if result.stderr:
        parts.append(f"\nstderr:\n{result.stderr[-MAX_OUTPUT_CHARS:]}")
    if result.status != "ok":
        parts.append(f"\nstatus: {result.status}")
    return "".join(parts) if any(parts) else "(no output)"


class SandboxRunner:
    """`CodeRunner` on rlvr's sandbox (`rlvr.sandbox`): each run in a fresh, limited, isolated process."""

    def __init__(self, sandbox: str = "auto") -> None:
        from rlvr.sandbox.backends import get_sandbox

        self.sandbox = get_sandbox(
            sandbox
        )  # SandboxUnavailable, naming what to install, when it cannot start

    def run(self, code: str, timeout: float) -> CodeResult:
        from rlvr.sandbox.types import Limits

        return self.sandbox.run(code, limits=Limits(timeout=timeout))
