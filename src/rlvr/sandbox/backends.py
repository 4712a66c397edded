"""The sandboxes that run model-written Python: bubblewrap, subprocess, or none, behind one interface.

`get_sandbox("auto")` gives bubblewrap when it is installed and works on this machine, else the subprocess
backend, and logs which. A sandbox named explicitly that cannot start raises `SandboxUnavailable` (fail closed);
running without one needs `none`. docs/code.md says what each protects against and what it does not.

>>> sandbox = get_sandbox("auto")  # doctest: +SKIP
>>> sandbox.run("print(6 * 7)").stdout  # doctest: +SKIP
'42\\n'
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rlvr.sandbox.process import (
    Finished,
    SandboxUser,
    can_switch_user,
    remove_tree,
    remove_user_files,
    run_process,
    user_tasks,
)
from rlvr.sandbox.types import ExecutionResult, Limits

SandboxName = Literal["auto", "bubblewrap", "subprocess", "none"]
SANDBOXES = ("auto", "bubblewrap", "subprocess", "none")
BOOT = (Path(__file__).parent / "inside.py").read_text(encoding="utf-8")
"""The in-sandbox script, passed as text to `python -c`."""
WORK_DIR = "/sandbox"  # the work directory as bubblewrap's programs see it
_log = logging.getLogger("rlvr.sandbox")


class SandboxUnavailable(RuntimeError):
    """The configured sandbox cannot run code on this machine; the message says why and what to do."""


@dataclass
class Job:
    """What one execution runs: `inside.py` in `mode` with these files in its work directory."""

    mode: Literal["run", "judge"]
    files: Mapping[str, str | bytes]
    stdin: bytes
    limits: Limits


class Sandbox:
    """Runs Python programs in a fresh temporary work directory, within `Limits`, and cleans up after them.

    `run(code)` runs a program and returns what it printed; `rlvr.sandbox.harness.run_tests` judges one against
    tests. `python`: the interpreter inside the sandbox (its standard library only: it runs with -I -S); None picks
    this process's interpreter, or the system's python3 where a sandbox user cannot reach this one.
    """

    name = "none"
    isolates = False  # limits, a user of its own and a scrubbed environment

    def __init__(self, python: str | None = None) -> None:
        self.switch_user = self.isolates and can_switch_user()
        self.python = python or default_python(self.switch_user)

    def run(
        self,
        code: str,
        *,
        stdin: str = "",
        files: Mapping[str, str | bytes] | None = None,
        limits: Limits | None = None,
    ) -> ExecutionResult:
        """Run `code` as `main.py` (with `files` beside it) and return its status, exit code and output.

        >>> get_sandbox("subprocess").run("import sys; print(sys.stdin.read()[::-1])", stdin="abc").stdout
        'cba\\n'
        """
        files = dict(files or {})
        files["main.py"] = code
        job = Job("run", files, stdin.encode(), limits or Limits())
        finished = self.execute(job)
        messages = read_channel(finished.channel)
        started = [m for m in messages if m.get("status") in ("started", "syntax_error")]
        result = self.result(finished, "", job.limits)
        if result.status in ("timeout", "output_limit"):
            return result
        if not started:
            raise SandboxUnavailable(
                f"the {self.name} sandbox did not start Python ({self.python}): exit code "
                f"{finished.exit_code}, stderr: {finished.stderr.decode(errors='replace')[-2000:]!r}"
            )
        if started[0]["status"] == "syntax_error":
            result.status, result.detail = "syntax_error", str(started[0].get("detail", ""))
        return result

    def execute(self, job: Job) -> Finished:
        """Run a job: what the process did, its output, and what the in-sandbox script wrote on its channel."""
        user = SandboxUser() if self.switch_user else None
        uid = user.uid if user else None
        workdir = tempfile.mkdtemp(prefix="rlvr-sandbox-")
        try:
            for name, content in job.files.items():
                if "/" in name or name.startswith("."):
                    raise ValueError(f"sandbox file names must be plain names, got {name!r}")
                data = content.encode() if isinstance(content, str) else content
                Path(workdir, name).write_bytes(data)
                if uid is not None:
                    os.chown(Path(workdir, name), uid, uid)
            if uid is not None:
                os.chown(workdir, uid, uid)
            channel = os.pipe()
            spec = {"limits": self.rlimits(job.limits, uid), "channel": channel[1], "main": "main.py"}
            inside = [self.python, "-I", "-S", "-B", "-X", "utf8", "-c", BOOT, job.mode, json.dumps(spec)]
            argv, cwd, env = self.command(inside, workdir, job)
            try:
                finished = run_process(
                    argv,
                    cwd=cwd,
                    env=env,
                    uid=uid,
                    stdin=job.stdin,
                    channel=channel,
                    timeout=job.limits.timeout,
                    output_bytes=job.limits.output_bytes,
                )
            except OSError as exc:
                os.close(channel[0])
                os.close(channel[1])
                raise SandboxUnavailable(f"the {self.name} sandbox could not start {argv[0]}: {exc}") from exc
        finally:
            try:
                remove_tree(workdir)
            except OSError as exc:
                _log.warning("could not remove the sandbox work directory %s: %s", workdir, exc)
            if user is not None:
                remove_user_files(user.uid)
                user.release()
        return finished

    def command(self, inside: list[str], workdir: str, job: Job) -> tuple[list[str], str, dict[str, str]]:
        """(argv, cwd, environment) that run `inside` with the job's files in `workdir`."""
        return inside, workdir, dict(os.environ)

    def rlimits(self, limits: Limits, uid: int | None) -> dict[str, list[int]]:
        """The resource limits the in-sandbox script sets on itself before the program runs."""
        if not self.isolates:
            return {}
        cpu = limits.cpu_limit
        processes = limits.processes
        if uid is None and self.name == "subprocess":
            # RLIMIT_NPROC counts every task of our user (threads, unreaped zombies): allow ours plus the sandbox's.
            processes += user_tasks(os.getuid())
        return {
            "RLIMIT_CPU": [cpu, cpu + 1],  # SIGXCPU at the soft limit, SIGKILL a second later
            "RLIMIT_AS": [limits.memory_bytes] * 2,
            "RLIMIT_FSIZE": [limits.file_size_bytes] * 2,
            "RLIMIT_NOFILE": [limits.open_files] * 2,
            "RLIMIT_NPROC": [processes] * 2,
            "RLIMIT_CORE": [0, 0],  # no core files in the work directory
        }

    def result(self, finished: Finished, detail: str, limits: Limits) -> ExecutionResult:
        """The execution's status from what the process did (exit code, limits hit), not from what it said."""
        code = self.exit_code(finished.exit_code)
        if finished.output_exceeded:
            status, detail = "output_limit", f"more than {limits.output_bytes} bytes of output"
        elif finished.timed_out:
            status, detail = "timeout", f"still running after {limits.timeout:g}s"
        elif code == -signal.SIGXCPU:
            status, detail = "timeout", f"used {limits.cpu_limit}s of CPU time"
        elif code < 0:
            status, detail = "crash", f"killed by {_signal_name(-code)}"
        else:
            status = "ok" if code == 0 else "error"
        return ExecutionResult(
            status=status,
            exit_code=code,
            stdout=finished.stdout.decode("utf-8", errors="replace"),
            stderr=finished.stderr.decode("utf-8", errors="replace"),
            duration=finished.duration,
            detail=detail,
            backend=self.name,
        )

    def exit_code(self, code: int) -> int:
        return code

    def environment(self, home: str) -> dict[str, str]:
        """A scrubbed environment: nothing of ours (tokens, keys, paths) reaches the program."""
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": home,
            "TMPDIR": home,
            "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }


class SubprocessSandbox(Sandbox):
    """A child process with resource limits, a scrubbed environment and, run as root, a user of its own."""

    name = "subprocess"
    isolates = True

    def command(self, inside: list[str], workdir: str, job: Job) -> tuple[list[str], str, dict[str, str]]:
        return inside, workdir, self.environment(workdir)


class BubblewrapSandbox(Sandbox):
    """The subprocess backend's limits inside bubblewrap's namespaces: no network, its own process tree, a
    read-only view of the system's programs and libraries only, and a size-limited work directory as the one
    writable place."""

    name = "bubblewrap"
    isolates = True

    def command(self, inside: list[str], workdir: str, job: Job) -> tuple[list[str], str, dict[str, str]]:
        argv = [
            shutil.which("bwrap") or "bwrap",
            "--unshare-all",  # network, pids, IPC, UTS, cgroup
            "--unshare-user",
            "--disable-userns",  # no user namespaces inside: a large kernel attack surface
            "--die-with-parent",
            "--new-session",  # no TIOCSTI into our terminal
            "--cap-drop",
            "ALL",
            "--hostname",
            "sandbox",
            *_system_binds(self.python),
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--remount-ro",
            "/dev",  # a writable /dev would be an unbounded tmpfs
            "--size",
            str(job.limits.disk_bytes),
            "--tmpfs",
            WORK_DIR,
        ]
        for name in job.files:
            argv += ["--ro-bind", str(Path(workdir, name)), f"{WORK_DIR}/{name}"]
        argv += ["--chdir", WORK_DIR, "--remount-ro", "/", "--", *inside]
        return argv, "/", self.environment(WORK_DIR)

    def exit_code(self, code: int) -> int:
        # bwrap exits 128 + N when the program dies of signal N (a program's own exit(130) reads the same)
        return -(code - 128) if 128 < code < 160 else code


def _system_binds(python: str) -> list[str]:
    """Read-only binds of /usr and its merged-/usr links, and of the interpreter's prefix when it lives elsewhere."""
    binds: list[str] = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            binds += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            binds += ["--ro-bind", top, top]
    prefix = _prefix(python)
    if not (prefix + "/").startswith("/usr/"):
        binds += ["--ro-bind", prefix, prefix]
    return binds


def _prefix(python: str) -> str:
    real = os.path.realpath(python)
    for prefix in (sys.base_prefix, sys.prefix):
        if real.startswith(os.path.realpath(prefix) + os.sep):
            return os.path.realpath(prefix)
    return str(Path(real).parent.parent)  # <prefix>/bin/python3


def default_python(switch_user: bool) -> str:
    """This process's interpreter, or where a sandbox user (any other user) cannot run it, the system's python3."""
    candidates = [os.path.realpath(sys.executable)]
    if not switch_user:
        return candidates[0]
    candidates += ["/usr/bin/python3", "/usr/local/bin/python3"]
    for candidate in candidates:
        if os.path.exists(candidate) and _others_can_run(candidate):
            return os.path.realpath(candidate)
    raise SandboxUnavailable(
        f"no Python interpreter that a sandbox user can run: {sys.executable} is under a folder other users "
        "cannot enter, and there is no /usr/bin/python3; install python3 (apt-get install python3) or name an "
        "interpreter others can run"
    )


def _others_can_run(path: str) -> bool:
    """Whether a user who is neither the owner nor in the group can execute `path` and reach its standard library."""
    real = Path(os.path.realpath(path))
    prefix = Path(_prefix(str(real)))
    for folder in [*real.parents, prefix / "lib"]:
        if folder.exists() and not folder.stat().st_mode & stat.S_IXOTH:
            return False
    return bool(real.stat().st_mode & stat.S_IXOTH)


def read_channel(channel: bytes, nonce: str | None = None) -> list[dict]:
    """The JSON objects on the channel, one a line; with `nonce`, only lines led by it (and a space)."""
    messages = []
    for line in channel.decode("utf-8", errors="replace").splitlines():
        if nonce is not None:
            if not line.startswith(nonce + " "):
                continue
            line = line[len(nonce) + 1 :]
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict):
            messages.append(message)
    return messages


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# ------------------------------------------------------------------------------------------- choosing a sandbox
_chosen: dict[tuple[str, str | None], Sandbox] = {}
_choosing = threading.Lock()


def get_sandbox(name: str = "auto", python: str | None = None) -> Sandbox:
    """The sandbox named `name` (auto, bubblewrap, subprocess, none), checked to work on this machine once per
    process; `SandboxUnavailable` says why one cannot start. auto: bubblewrap where usable, else subprocess."""
    if name not in SANDBOXES:
        raise ValueError(f"unknown sandbox {name!r}; choose one of {', '.join(SANDBOXES)}")
    with _choosing:
        key = (name, python)
        if key not in _chosen:
            _chosen[key] = _choose(name, python)
        return _chosen[key]


def _choose(name: str, python: str | None) -> Sandbox:
    if name == "none":
        _log.warning("sandbox: none; model-written code runs with this process's user, files and network")
        return Sandbox(python)
    if name in ("auto", "bubblewrap"):
        problem = bubblewrap_problem(python)
        if problem is None:
            sandbox = BubblewrapSandbox(python)
            _log.info("sandbox: bubblewrap (python %s)", sandbox.python)
            return sandbox
        if name == "bubblewrap":
            raise SandboxUnavailable(
                f"sandbox 'bubblewrap' cannot run code here: {problem}. Install it with `make setup-sandbox` "
                "(apt-get install bubblewrap), or choose sandbox: subprocess (weaker; see docs/code.md)"
            )
        _log.info("sandbox: subprocess (bubblewrap is not usable: %s)", problem)
    sandbox = SubprocessSandbox(python)
    problem = _start_problem(sandbox)
    if problem is not None:
        raise SandboxUnavailable(f"sandbox 'subprocess' cannot run code here: {problem}")
    _log.info(
        "sandbox: subprocess (python %s; %s)",
        sandbox.python,
        "a user of its own per run" if sandbox.switch_user else "not root: runs as this user",
    )
    return sandbox


def bubblewrap_problem(python: str | None = None) -> str | None:
    """Why bubblewrap cannot run code on this machine (not installed, namespaces refused), or None."""
    if shutil.which("bwrap") is None:
        return "bwrap is not installed"
    try:
        sandbox = BubblewrapSandbox(python)
    except SandboxUnavailable as exc:
        return str(exc)
    return _start_problem(sandbox)


def _start_problem(sandbox: Sandbox) -> str | None:
    try:
        result = sandbox.run("print('ok')", limits=Limits(timeout=30))
    except SandboxUnavailable as exc:
        return str(exc)
    if result.status != "ok" or result.stdout != "ok\n":
        return f"a test program ended {result.status} ({result.detail or result.stderr.strip()[-500:]})"
    return None
