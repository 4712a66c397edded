"""One sandboxed process from start to cleanup: feed its stdin, read its output within the limits, kill it and
everything it started, and remove what it left in shared temporary folders.

Run as root, every execution gets a user id of its own (`SandboxUser`): RLIMIT_NPROC then counts that execution's
processes only (root itself is exempt from it), the program cannot signal or read anything of ours, and whatever
it started is found, even after `setsid()` or a double fork, by that user id in /proc.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

UID_BASE = 1_000_000_000  # far above real users and subuid ranges; base + pid_max (2**22) * 256 < 2**31
SLOTS_PER_PROCESS = 256
SHARED_TMP = (
    "/tmp",
    "/var/tmp",
    "/dev/shm",
)  # world-writable: where a program of another user can leave files
GRACE = 0.1  # seconds to read what is left in the pipes after the main process exits; then the rest is killed
CHANNEL_BYTES = 1 << 20  # the judge's report: a line per case


@dataclass
class Finished:
    """What a process did, as bytes; the caller decodes and classifies."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    channel: bytes
    timed_out: bool
    output_exceeded: bool
    duration: float


class SandboxUser:
    """A user id for one execution, unique among this machine's live executions: derived from this process's id
    and a free slot, so no lock between reward workers is needed. Any process still running under the id (left by a
    worker killed mid-run) is killed before it is used again."""

    _lock = threading.Lock()
    _slots: set[int] = set()
    _next = 0

    def __init__(self) -> None:
        with self._lock:
            # Round robin, not the lowest free slot: a killed program's processes stay zombies until init reaps
            # them, and zombies still count against the next run's RLIMIT_NPROC under the same id.
            order = [(SandboxUser._next + i) % SLOTS_PER_PROCESS for i in range(SLOTS_PER_PROCESS)]
            free = [slot for slot in order if slot not in self._slots]
            if not free:
                raise RuntimeError(
                    f"more than {SLOTS_PER_PROCESS} sandboxed executions at once in one process"
                )
            self.slot = free[0]
            SandboxUser._next = self.slot + 1
            self._slots.add(self.slot)
        self.uid = UID_BASE + (os.getpid() % (1 << 22)) * SLOTS_PER_PROCESS + self.slot
        kill_user(self.uid)

    def release(self) -> None:
        with self._lock:
            self._slots.discard(self.slot)


def can_switch_user() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def run_process(
    argv: list[str],
    *,
    cwd: str,
    env: dict[str, str],
    uid: int | None,
    stdin: bytes,
    channel: tuple[int, int] | None,
    timeout: float,
    output_bytes: int,
) -> Finished:
    """Run `argv` in a session of its own (as `uid` when given) and read stdout, stderr and the channel's read end
    until they close or `timeout` passes; then kill the session and, with `uid`, every process of that user.

    `channel` is a pipe (read end, write end); the write end is passed to the process and closed here."""
    started = time.monotonic()
    deadline = started + timeout
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(channel[1],) if channel else (),
        start_new_session=True,
        user=uid,
        group=uid,
        extra_groups=[] if uid is not None else None,  # none of root's supplementary groups
    )
    if channel:
        os.close(channel[1])
    out_fd, err_fd = process.stdout.fileno(), process.stderr.fileno()
    outputs = {out_fd: bytearray(), err_fd: bytearray()}
    channel_data = bytearray()
    timed_out = exceeded = False
    exited_at = None
    with selectors.DefaultSelector() as selector:
        for fd in (out_fd, err_fd):
            selector.register(fd, selectors.EVENT_READ)
        if channel:
            selector.register(channel[0], selectors.EVENT_READ)
        pending = memoryview(stdin)
        stdin_fd = process.stdin.fileno()
        if pending:
            os.set_blocking(process.stdin.fileno(), False)
            selector.register(process.stdin.fileno(), selectors.EVENT_WRITE)
        else:
            process.stdin.close()
        exit_fd = _pidfd(process.pid)
        if exit_fd is not None:
            selector.register(exit_fd, selectors.EVENT_READ)
        try:
            while True:
                now = time.monotonic()
                if exited_at is None and _has_exited(process.pid):
                    exited_at = now
                reading = [k for k in selector.get_map().values() if k.fd not in (exit_fd,)]
                if exited_at is not None and (not reading or now - exited_at > GRACE):
                    break
                if now >= deadline:
                    timed_out = True
                    break
                wait = deadline - now
                if exited_at is not None:
                    wait = min(wait, GRACE)
                elif exit_fd is None:
                    wait = min(wait, 0.01)  # no pidfd: poll for the exit
                for key, _ in selector.select(wait):
                    fd = key.fd
                    if fd == exit_fd:
                        selector.unregister(fd)
                    elif fd == stdin_fd:
                        pending = _feed(selector, process, pending)
                    else:
                        data = _read(fd)
                        if not data:
                            selector.unregister(fd)
                        elif fd == (channel[0] if channel else None):
                            channel_data += data[: max(0, CHANNEL_BYTES - len(channel_data))]
                        else:
                            outputs[fd] += data
                            if sum(map(len, outputs.values())) > output_bytes:
                                exceeded = True
                if exceeded:
                    break
        finally:
            kill_session(process.pid)
            if uid is not None:
                kill_user(uid)
            process.wait()
            for stream in (process.stdin, process.stdout, process.stderr):
                stream.close()
            if channel:
                os.close(channel[0])
            if exit_fd is not None:
                os.close(exit_fd)
    stdout, stderr = bytes(outputs[out_fd]), bytes(outputs[err_fd])
    if exceeded:  # keep the first output_bytes in all, stdout first
        stdout = stdout[:output_bytes]
        stderr = stderr[: max(0, output_bytes - len(stdout))]
    return Finished(
        exit_code=process.returncode,
        stdout=stdout,
        stderr=stderr,
        channel=bytes(channel_data),
        timed_out=timed_out,
        output_exceeded=exceeded,
        duration=time.monotonic() - started,
    )


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)  # readable once the process exits (Linux 5.3+)
    except (AttributeError, OSError):
        return None


def _has_exited(pid: int) -> bool:
    """Whether the process exited, without reaping it: its pid, and so its process group id, stays ours to kill."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 16)
    except OSError:
        return b""


def _feed(selector: selectors.BaseSelector, process: subprocess.Popen, pending: memoryview) -> memoryview:
    try:
        pending = pending[os.write(process.stdin.fileno(), pending[: 1 << 16]) :]
    except (BrokenPipeError, BlockingIOError) as exc:
        if isinstance(exc, BlockingIOError):
            return pending
        pending = pending[:0]
    if not pending:
        selector.unregister(process.stdin.fileno())
        process.stdin.close()
    return pending


def kill_session(pid: int) -> None:
    """SIGKILL the process group that `pid` leads (it was started with a session of its own)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _statuses():
    """(pid, fields of /proc/PID/status) for every process."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text()
        except OSError:
            continue  # it exited meanwhile
        yield int(entry.name), dict(line.split(":", 1) for line in status.splitlines() if ":" in line)


def user_processes(uid: int) -> list[int]:
    """Live (not zombie) processes whose real, effective or saved user id is `uid`, from /proc."""
    return [
        pid
        for pid, fields in _statuses()
        if fields.get("State", "").split()[:1] not in (["Z"], ["X"])
        and str(uid) in fields.get("Uid", "").split()[:3]
    ]


def user_tasks(uid: int) -> int:
    """What RLIMIT_NPROC counts for real user `uid`: its threads, zombies (not yet reaped) included."""
    return sum(
        int(fields.get("Threads", "1").strip() or 1)
        for _, fields in _statuses()
        if fields.get("Uid", "").split()[:1] == [str(uid)]
    )


def kill_user(uid: int, rounds: int = 200) -> bool:
    """SIGKILL every process of `uid` until none is left (a fork bomb refills what a round kills, up to its
    process limit). True when none is left."""
    for attempt in range(rounds):
        pids = user_processes(uid)
        if not pids:
            return True
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(min(0.001 * attempt, 0.02))
    return not user_processes(uid)


def remove_user_files(uid: int, folders: tuple[str, ...] = SHARED_TMP) -> list[str]:
    """Remove the entries of `folders` (not recursively searched) owned by `uid`; the paths removed."""
    removed = []
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
                removed.append(entry.path)
            except OSError:
                continue
    return removed


def remove_tree(path: str) -> None:
    """rmtree that also removes what the program made unreadable (chmod 000) inside."""

    def unlock(function, failed_path, _excinfo) -> None:
        try:
            os.chmod(os.path.dirname(failed_path), 0o700)
            os.chmod(failed_path, 0o700)
        except OSError:
            pass
        function(failed_path)

    if os.path.exists(path):
        shutil.rmtree(path, onerror=unlock)
