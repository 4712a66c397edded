"""Judging a program against tests in a sandbox, by what a judge process saw, not by what the program said.

The program runs in a process of its own and only answers calls; the tests run in a judge process that receives
them on a pipe (they are never written to disk), calls the program's functions, compares plain values, and reports
each case on a channel the program cannot reach, every line led by a fresh nonce (`inside.judge`). So exiting 0
early, patching `AssertionError`, builtins or `sys.exit`, returning an object whose `__eq__` is always True, or
printing a forged result line earns nothing; killing the judge ends the run as a crash.

>>> report = run_tests("def add(a, b):\\n    return a + b", TestSpec.from_asserts(["assert add(1, 2) == 3"]))
>>> report.status, report.passed, report.total  # doctest: +SKIP
('passed', 1, 1)
"""

from __future__ import annotations

import ast
import json
import secrets
from dataclasses import dataclass
from typing import Literal

from rlvr.sandbox.backends import BOOT, Job, Sandbox, SandboxUnavailable, get_sandbox, read_channel
from rlvr.sandbox.types import CaseResult, Limits, TestReport

PROGRAM_FILE = "solution.py"


@dataclass(frozen=True)
class TestSpec:
    """Tests in one of three shapes (`kind`):

    - `check`: HumanEval's `test` text defining `def check(candidate)` and the `entry_point` the candidate is;
      each top-level statement of check's body that holds an `assert` is one case, the others are setup.
    - `asserts`: a list of assert statements (MBPP's `test_list`), each one case, calling the program's
      functions by name.
    - `code`: a module of its own; its top-level statements holding an `assert` are the cases.
    """

    __test__ = False  # not a pytest test class

    kind: Literal["check", "asserts", "code"]
    code: str = ""
    entry_point: str | None = None
    asserts: tuple[str, ...] = ()

    @classmethod
    def humaneval(cls, test: str, entry_point: str) -> TestSpec:
        return cls("check", code=test, entry_point=entry_point)._checked()

    @classmethod
    def from_asserts(cls, asserts: list[str] | tuple[str, ...]) -> TestSpec:
        return cls("asserts", asserts=tuple(asserts))._checked()

    @classmethod
    def from_code(cls, code: str) -> TestSpec:
        return cls("code", code=code)._checked()

    def _checked(self) -> TestSpec:
        """Self, once the tests compile here (they are trusted data): a broken row fails before anything runs."""
        if self.kind == "check":
            if not isinstance(self.entry_point, str) or not self.entry_point.isidentifier():
                raise ValueError(f"entry_point must be a function name, got {self.entry_point!r}")
            module = _parse(self.code, "test")
            if not any(
                isinstance(s, ast.FunctionDef) and s.name == "check" and s.args.args for s in module.body
            ):
                raise ValueError("the test defines no `def check(candidate)`; give plain asserts as `tests`")
        elif self.kind == "asserts":
            if not self.asserts or not all(isinstance(a, str) for a in self.asserts):
                raise ValueError(
                    f"tests must be a non-empty list of assert statements, got {list(self.asserts)!r}"
                )
            for i, text in enumerate(self.asserts):
                _parse(text, f"tests[{i}]")
        else:
            module = _parse(self.code, "test code")
            if not any(isinstance(node, ast.Assert) for node in ast.walk(module)):
                raise ValueError("the test code holds no assert statement, so it has no cases")
        return self

    def as_json(self) -> dict:
        return {
            "kind": self.kind,
            "code": self.code,
            "entry_point": self.entry_point,
            "asserts": list(self.asserts),
        }


def _parse(text: object, what: str) -> ast.Module:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{what} must be non-empty Python source, got {text!r:.80}")
    try:
        return ast.parse(text)
    except SyntaxError as exc:
        raise ValueError(
            f"{what} does not compile: {exc.msg} (line {exc.lineno}): fix the dataset row"
        ) from None


def run_tests(
    program: str, tests: TestSpec, *, sandbox: Sandbox | str = "auto", limits: Limits | None = None
) -> TestReport:
    """Run `program`'s functions against `tests` in `sandbox` and report each case (see the module docstring).

    Status: passed, failed, error (the program raised while being defined), crash, syntax_error, timeout,
    output_limit. The limits hold for the whole run, program start-up and every case."""
    if isinstance(sandbox, str):
        sandbox = get_sandbox(sandbox)
    limits = limits or Limits()
    nonce = secrets.token_hex(16)
    config = {"nonce": nonce, "boot": BOOT, "program": PROGRAM_FILE, "tests": tests.as_json()}
    job = Job("judge", {PROGRAM_FILE: program}, json.dumps(config).encode(), limits)
    finished = sandbox.execute(job)
    execution = sandbox.result(finished, "", limits)
    messages = read_channel(finished.channel, nonce)
    totals = [m["cases"] for m in messages if isinstance(m.get("cases"), int)]
    cases = [
        CaseResult(m["outcome"], str(m.get("detail", "")))
        for m in messages
        if m.get("outcome") in ("pass", "fail", "error")
    ]
    verdicts = [m for m in messages if "status" in m]
    total = totals[0] if totals else 0
    if execution.status in ("output_limit", "timeout"):
        status, detail = execution.status, execution.detail
    elif verdicts:
        status, detail = verdicts[-1]["status"], str(verdicts[-1].get("detail", ""))
        if status == "test_error":
            raise ValueError(f"the tests could not be run: {detail}")
    elif totals:  # the judge started the program and then died without a verdict: the program killed it
        status, detail = (
            "crash",
            f"the judge ended without a verdict ({execution.detail or execution.exit_code})",
        )
    else:
        raise SandboxUnavailable(
            f"the {sandbox.name} sandbox did not start the judge ({sandbox.python}): exit code "
            f"{execution.exit_code}, stderr: {execution.stderr[-2000:]!r}"
        )
    return TestReport(status=status, cases=cases, total=total, execution=execution, detail=detail)
