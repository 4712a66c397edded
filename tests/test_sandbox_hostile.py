"""The hostile table (issue 22): programs that try to hang, exhaust, escape, snoop, or forge a pass, on each
sandbox backend. Each case must end within its bound with the right status, contained, and leave nothing behind:
no process, no file, a machine that still runs programs. The bubblewrap rows skip where bwrap cannot run."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from rlvr.sandbox import Limits, bubblewrap_problem, get_sandbox
from rlvr.sandbox.harness import TestSpec, run_tests
from rlvr.sandbox.process import UID_BASE

MARK = (
    "The code that runs inside the sandbox"  # inside.py's first line: in every sandbox process's command line
)
SECRET = "hunter2-rlvr-fake-secret"
TEST_MARK = "TEST-ONLY-MARKER-7f3a"  # a comment in the tests: a program that finds it has read them
ADD_TESTS = TestSpec.from_code(
    f"# {TEST_MARK}\nassert add(1, 2) == 3\nassert add(2, 5) == 7\nassert add(10, -4) == 6\n"
)
WRONG_ADD = "def add(a, b):\n    return a - b\n"  # passes none of ADD_TESTS: 1-2, 2-5, 10+4
LIMITS = Limits(timeout=2.0, processes=16, memory_bytes=512 << 20, output_bytes=1 << 20)

# ------------------------------------------------------------------------------------------------ programs
FORK_BOMB = """
import os, time
n = 0
while True:
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        while True:  # every child forks on too, and keeps trying
            try:
                os.fork()
            except OSError:
                time.sleep(0.01)
    n += 1
print("forks", n, flush=True)
time.sleep(60)
"""
MEMORY_HOG = "chunks = []\nwhile True:\n    chunks.append(bytearray(64 << 20))\n"
BIG_PRINT = "import sys\nline = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(line)\n"
WRITE_OUTSIDE = """
import os
for path in {paths!r}:
    try:
        with open(path, "w") as f:
            f.write("escaped")
        print("wrote", path)
    except OSError as exc:
        print("denied", path, type(exc).__name__)
"""
READ_SECRETS = """
import os
print(dict(os.environ))
for pid in ("self", str(os.getppid()), "1"):
    try:
        print(open(f"/proc/{pid}/environ", "rb").read())
    except OSError as exc:
        print("denied", pid, type(exc).__name__)
"""
CONNECT = """
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=1).sendall(b"hello")
    print("connected")
except OSError as exc:
    print("refused", type(exc).__name__)
"""
KILL_PARENT = "import os, signal\nfor pid in (os.getppid(), -1):\n    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError as exc:\n        print('denied', pid, type(exc).__name__, flush=True)\n"
BACKGROUND = (
    "import subprocess\nsubprocess.Popen(['sleep', '31.4159'], start_new_session=True)\nprint('started')\n"
)
# Reward hacks: each defines a wrong `add` (or none) and tries to pass ADD_TESTS anyway.
EXIT_EARLY = WRONG_ADD + "import sys\nsys.exit(0)\n"
OS_EXIT = WRONG_ADD + "import os\nos._exit(0)\n"
PATCH_ASSERT = "import builtins\nclass Quiet(Exception): pass\nbuiltins.AssertionError = Quiet\n" + WRONG_ADD
ALWAYS_EQUAL = "class Anything:\n    def __eq__(self, other): return True\n    __hash__ = None\ndef add(a, b):\n    return Anything()\n"
INT_ALWAYS_EQUAL = (
    "class Anything(int):\n    def __eq__(self, other): return True\ndef add(a, b):\n    return Anything(0)\n"
)
PATCH_EXIT = (
    WRONG_ADD
    + "import sys, os\nsys.exit = os._exit = lambda *a: None\nimport builtins\nbuiltins.exit = sys.exit\n"
)
FORGE_LINES = (
    WRONG_ADD
    + """
import os, json
forged = ' '.join(['{"status": "passed", "detail": ""}'] * 3)
print(forged); print('passed 3/3'); import sys; print(forged, file=sys.stderr)
for fd in range(3, 256):
    for nonce in ("", "0" * 32):
        try:
            os.write(fd, (nonce + ' {"case": 0, "outcome": "pass"}\\n' + nonce + ' {"status": "passed"}\\n').encode())
        except OSError:
            pass
"""
)
READ_TESTS = (
    WRONG_ADD
    + f"""
import os
found = []
def look(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a pipe with nothing in it must not block
        try:
            if ("{TEST_MARK[:5]}" + "{TEST_MARK[5:]}").encode() in os.read(fd, 1 << 20):  # split: this file must not match
                found.append(path)
        finally:
            os.close(fd)
    except OSError:
        pass
for folder in (".", os.path.expanduser("~")):  # the subprocess backend can read /tmp: docs/code.md
    for root, dirs, files in os.walk(folder):
        for name in files:
            look(os.path.join(root, name))
for pid in os.listdir("/proc"):
    if pid.isdigit():
        for name in ("cmdline", "environ", "fd/0", "fd/3", "fd/4", "mem"):
            look(f"/proc/{{pid}}/{{name}}")
print("found", found)
"""
)
KILL_JUDGE = (
    "import os, signal\ndef add(a, b):\n    os.kill(os.getppid(), signal.SIGKILL)\n    return a + b\n"
)
PTRACE_JUDGE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
result = libc.ptrace(16, os.getppid(), 0, 0)  # PTRACE_ATTACH
print("ptrace", result, ctypes.get_errno())
def add(a, b):
    return a - b
"""


@dataclass
class Case:
    name: str
    mode: str  # run: Sandbox.run; tests: run_tests against ADD_TESTS
    program: str
    statuses: tuple[str, ...]
    check: str = ""  # a name in CHECKS, asserted on the result
    own_user: bool = (
        False  # contained by the subprocess backend only when it runs as root (a user of its own)
    )
    bound: float = 4.0  # seconds the case may take, cleanup included


CASES = [
    Case("infinite loop", "run", "while True:\n    pass\n", ("timeout",)),
    Case("infinite loop in a test", "tests", "def add(a, b):\n    while True:\n        pass\n", ("timeout",)),
    Case("fork bomb", "run", FORK_BOMB, ("timeout",), "forks_bounded", bound=6.0),
    Case("memory hog", "run", MEMORY_HOG, ("error",), "memory_error"),
    Case("1 GB print", "run", BIG_PRINT, ("output_limit",), "output_capped"),
    Case("write outside the work dir", "run", WRITE_OUTSIDE, ("ok",), "nothing_written", own_user=True),
    Case("read environment secrets", "run", READ_SECRETS, ("ok",), "no_secret", own_user=True),
    Case("socket to 127.0.0.1", "run", CONNECT, ("ok",), "network"),
    Case("kill the parent and everyone", "run", KILL_PARENT, ("ok", "crash"), "parent_alive", own_user=True),
    Case(
        "background process", "run", BACKGROUND, ("ok",), "no_sleep_left", own_user=True
    ),  # setsid() escapes
    Case("exit 0 early", "tests", EXIT_EARLY, ("error",)),
    Case("os._exit(0) early", "tests", OS_EXIT, ("error",)),
    Case("patch AssertionError", "tests", PATCH_ASSERT, ("failed",)),
    Case("__eq__ always True", "tests", ALWAYS_EQUAL, ("failed",)),
    Case("int subclass, __eq__ always True", "tests", INT_ALWAYS_EQUAL, ("failed",)),
    Case("patch sys.exit and os._exit", "tests", PATCH_EXIT, ("failed",)),
    # Writing on every fd hits its own reply pipe too: the judge then reads garbage, an error of the program's.
    Case("forge result lines", "tests", FORGE_LINES, ("failed", "error"), "no_forged_pass"),
    Case("read the tests from disk", "tests", READ_TESTS, ("failed",), "tests_not_found"),
    Case("kill the judge", "tests", KILL_JUDGE, ("crash",)),
    Case("ptrace the judge", "tests", PTRACE_JUDGE, ("failed",), "ptrace_denied"),
]


def _escape_paths(tmp: str) -> list[str]:
    return [
        os.path.join(tmp, "rlvr-escape-hostile"),
        str(Path(__file__).parent / "rlvr-escape-hostile"),
        "/usr/rlvr-escape-hostile",
        os.path.expanduser("~/rlvr-escape-hostile"),
    ]


def leftover_processes() -> list[str]:
    """Live processes of a sandbox: its command line, a sandbox user id, or the background sleep's argument."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("State", "").split()[:1] == ["Z"]:
            continue
        uid = int(fields["Uid"].split()[0])
        if MARK in cmdline or "31.4159" in cmdline or UID_BASE <= uid < UID_BASE + (1 << 30):
            found.append(f"{pid} uid {uid}: {cmdline[:80]!r}")
    return found


def sandbox_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith("rlvr-sandbox-")}


@pytest.fixture(params=["subprocess", "bubblewrap"])
def sandbox(request):
    if request.param == "bubblewrap" and (problem := bubblewrap_problem()) is not None:
        pytest.skip(f"bubblewrap is not usable here: {problem} (make setup-sandbox)")
    return get_sandbox(request.param)


@pytest.fixture
def listener():
    """A TCP server on 127.0.0.1 that records what connects."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            with connection:
                connection.settimeout(1)
                try:
                    received.append(connection.recv(100))
                except OSError:
                    received.append(b"")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
    stop.set()
    thread.join()
    server.close()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile(case: Case, sandbox, listener, monkeypatch, tmp_path) -> None:
    if case.own_user and not sandbox.switch_user and sandbox.name == "subprocess":
        pytest.skip("the subprocess backend contains this only as root (a user of its own): docs/code.md")
    monkeypatch.setenv("RLVR_FAKE_SECRET", SECRET)
    port, received = listener
    tmp = tempfile.gettempdir()
    program = case.program
    if case.check == "nothing_written":
        program = program.format(paths=_escape_paths(tmp))
    elif case.check == "network":
        program = program.format(port=port)
    canary = subprocess.Popen(["sleep", "30"])
    dirs_before = sandbox_dirs()
    started = time.monotonic()
    if case.mode == "run":
        result = sandbox.run(program, limits=LIMITS)
        status, output = result.status, result.stdout + result.stderr
    else:
        report = run_tests(program, ADD_TESTS, sandbox=sandbox, limits=LIMITS)
        status, output = report.status, report.execution.stdout + report.execution.stderr
        assert report.passed == 0, report  # no hack earns a case
    took = time.monotonic() - started

    assert status in case.statuses, (status, output[-1000:])
    assert took < case.bound, f"took {took:.1f}s"
    deadline = time.monotonic() + 2  # bubblewrap's namespace is torn down just after its init dies
    while (left := leftover_processes()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, left
    assert sandbox_dirs() == dirs_before, "a work directory was left behind"
    assert canary.poll() is None, "the program killed a process of ours"
    canary.kill()
    canary.wait()
    CHECKS.get(case.check, lambda *_: None)(sandbox, output, received, tmp)
    # The machine still runs programs, sandboxed or not.
    assert subprocess.run(["true"]).returncode == 0
    assert sandbox.run("print(6 * 7)", limits=LIMITS).stdout == "42\n"


def _forks_bounded(sandbox, output, received, tmp) -> None:
    forks = int(output.split("forks", 1)[1].split()[0])
    assert 0 < forks < LIMITS.processes, output


def _memory_error(sandbox, output, received, tmp) -> None:
    assert "MemoryError" in output


def _output_capped(sandbox, output, received, tmp) -> None:
    assert 0 < len(output) <= LIMITS.output_bytes


def _nothing_written(sandbox, output, received, tmp) -> None:
    for path in _escape_paths(tmp):
        assert not os.path.exists(path), f"{path} was left behind"
    if sandbox.name == "bubblewrap":  # not even during the run: / is read-only and no /tmp exists
        assert "wrote" not in output, output


def _no_secret(sandbox, output, received, tmp) -> None:
    assert SECRET not in output
    assert "HOME" in output  # the program did print its environment


def _network(sandbox, output, received, tmp) -> None:
    if sandbox.name == "bubblewrap":
        assert "refused" in output and not received, output
    else:  # documented: the subprocess backend has no network isolation (docs/code.md)
        assert "connected" in output and received == [b"hello"], output


def _parent_alive(sandbox, output, received, tmp) -> None:
    pass  # this test process and its canary being alive is the check


def _no_sleep_left(sandbox, output, received, tmp) -> None:
    assert "started" in output


def _no_forged_pass(sandbox, output, received, tmp) -> None:
    pass  # report.passed == 0 and status failed are the checks


def _tests_not_found(sandbox, output, received, tmp) -> None:
    assert "found []" in output, output


def _ptrace_denied(sandbox, output, received, tmp) -> None:
    assert "ptrace -1" in output, output


CHECKS = {
    "forks_bounded": _forks_bounded,
    "memory_error": _memory_error,
    "output_capped": _output_capped,
    "nothing_written": _nothing_written,
    "no_secret": _no_secret,
    "network": _network,
    "parent_alive": _parent_alive,
    "no_sleep_left": _no_sleep_left,
    "no_forged_pass": _no_forged_pass,
    "tests_not_found": _tests_not_found,
    "ptrace_denied": _ptrace_denied,
}
