"""What a sandboxed execution is given (`Limits`) and what it gives back (`ExecutionResult`, `TestReport`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

RunStatus = Literal["ok", "error", "crash", "syntax_error", "timeout", "output_limit"]
"""ok: exit code 0; error: another exit code (an uncaught exception, `sys.exit(3)`, a MemoryError at the memory
limit); crash: killed by a signal; syntax_error: the program did not compile, nothing of it ran; timeout: past the
wall-clock or CPU-time limit; output_limit: more than `Limits.output_bytes` on stdout and stderr, killed."""

TestStatus = Literal["passed", "failed", "error", "crash", "syntax_error", "timeout", "output_limit"]
"""passed: every case passed; failed: some case failed or raised; error: the program raised (or exited) while
being defined, so no case ran; crash: a process died during the tests (the program, or the judge, e.g. killed by
the program); syntax_error, timeout, output_limit: as for a run."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one execution. Process-level limits (CPU, memory, files) hold for each process of it."""

    timeout: float = 10.0
    """Wall-clock seconds for the whole execution, interpreter start-up included; then everything is killed."""
    cpu_seconds: int | None = None
    """CPU seconds per process (RLIMIT_CPU); None: the timeout rounded up, plus one."""
    memory_bytes: int = 1 << 30
    """Address space per process (RLIMIT_AS); past it allocations fail (Python raises MemoryError)."""
    file_size_bytes: int = 16 << 20
    """Largest file a process may write (RLIMIT_FSIZE)."""
    open_files: int = 64
    """Open file descriptors per process (RLIMIT_NOFILE)."""
    processes: int = 16
    """Processes and threads the sandbox may hold at once (RLIMIT_NPROC on its own user); the sandbox's own
    processes count: 2 for a run, 3 for tests, plus 2 more under bubblewrap."""
    output_bytes: int = 1 << 20
    """stdout and stderr together; past this the execution is killed (status output_limit)."""
    disk_bytes: int = 64 << 20
    """bubblewrap: size of the work directory (a tmpfs). The subprocess backend has no total, only file_size."""

    def __post_init__(self) -> None:
        if not (self.timeout > 0 and math.isfinite(self.timeout)):
            raise ValueError(f"Limits.timeout must be a positive number of seconds, got {self.timeout!r}")
        for name in (
            "memory_bytes",
            "file_size_bytes",
            "open_files",
            "processes",
            "output_bytes",
            "disk_bytes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive integer, got {value!r}")
        if self.processes < 4:
            raise ValueError(f"Limits.processes must be at least 4 (the sandbox's own), got {self.processes}")

    @property
    def cpu_limit(self) -> int:
        return self.cpu_seconds if self.cpu_seconds is not None else math.ceil(self.timeout) + 1


@dataclass
class ExecutionResult:
    """One execution of a program. stdout and stderr are decoded UTF-8 (undecodable bytes replaced)."""

    status: RunStatus
    exit_code: int | None
    """The process's exit code; negative: killed by that signal; None when it never started."""
    stdout: str
    stderr: str
    duration: float
    """Wall-clock seconds, start to cleanup."""
    detail: str = ""
    """Why, in a few words: the syntax error, the limit that was hit."""
    backend: str = ""
    """The sandbox that ran it: bubblewrap, subprocess or none."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class CaseResult:
    """One test case as the judge saw it."""

    outcome: Literal["pass", "fail", "error"]
    """pass; fail: its assert failed; error: it raised something else (the program raised, or is gone)."""
    detail: str = ""


@dataclass
class TestReport:
    """A program judged against tests: the outcome of each case the judge reached, and the execution."""

    __test__ = False  # not a pytest test class

    status: TestStatus
    cases: list[CaseResult]
    """In order; cases the judge never reached are missing (see `total`)."""
    total: int
    """Number of cases in the tests (0 when the judge did not get as far as reading them)."""
    execution: ExecutionResult
    detail: str = ""

    @property
    def passed(self) -> int:
        return sum(case.outcome == "pass" for case in self.cases)

    @property
    def fraction(self) -> float:
        """Cases passed over all cases; 0.0 when there are none."""
        return self.passed / self.total if self.total else 0.0
