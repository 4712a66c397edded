"""Running model-written code: sandboxes (bubblewrap, subprocess, none) behind one interface, and a test harness
whose verdict the program cannot forge. docs/code.md says what each sandbox protects against."""

from rlvr.sandbox.backends import SANDBOXES, Sandbox, SandboxUnavailable, bubblewrap_problem, get_sandbox
from rlvr.sandbox.harness import TestSpec, run_tests
from rlvr.sandbox.types import CaseResult, ExecutionResult, Limits, TestReport

__all__ = [
    "SANDBOXES",
    "CaseResult",
    "ExecutionResult",
    "Limits",
    "Sandbox",
    "SandboxUnavailable",
    "TestReport",
    "TestSpec",
    "bubblewrap_problem",
    "get_sandbox",
    "run_tests",
]
