"""Writing a user's results where the disk may be full or read-only: a check before the work, a rescue after.

A training run or an evaluation takes minutes to days and its results exist only in memory until written. So
the directory is tried with a real write before the work starts (`write_problem`), and a result that cannot be
written where asked goes, whole, to a rescue directory elsewhere (`write_or_rescue`) instead of being lost: the
system's temporary directory, then the home directory. What failed names the cause; nothing half-written is
left in either place (each write goes through a temporary directory and a rename).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

from rlvr.utils import atomic_directory

PROBE_BYTES = 4096  # one block: a full disk refuses it, where creating an empty file may still succeed


class ResultNotWritten(Exception):
    """A result could not be written where asked: `reason` says why, `rescued` where it went instead (None:
    nowhere), `tried` why each rescue directory failed."""

    def __init__(self, target: Path, reason: str, rescued: Path | None, tried: list[str]) -> None:
        super().__init__(f"{target} could not be written ({reason})")
        self.target, self.reason, self.rescued, self.tried = target, reason, rescued, tried

    def outcome(self) -> str:
        """`It was written to X instead` or `It could not be written elsewhere either (...)`."""
        if self.rescued is not None:
            return f"It was written to {self.rescued} instead"
        return f"It could not be written elsewhere either ({'; '.join(self.tried) or 'no other directory'})"


def describe(exc: BaseException) -> str:
    """A write error in a few words: `No space left on device`, or the library's own message (torch and
    safetensors raise their own errors for a full disk)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"


def write_problem(directory: Path) -> str | None:
    """Why files cannot be written in `directory`, or None when they can. A directory that does not exist yet
    is checked where it would be made, in its nearest existing parent. Writes and removes one block.

    >>> write_problem(Path("/proc/no/such/dir")) is not None
    True
    """
    parent = directory
    while not parent.exists():
        parent = parent.parent
    where = "" if parent == directory else f" (it would be made in {parent})"
    if not parent.is_dir():
        return f"{parent} is a file, not a directory"
    try:
        probe(parent)
    except OSError as exc:
        return f"{describe(exc)}{where}"
    return None


def probe(directory: Path) -> None:
    """Write one block to a new file in `directory`, make sure it reached the disk, and remove it."""
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".rlvr-write-check-") as f:
        f.write(b"\0" * PROBE_BYTES)
        f.flush()
        os.fsync(f.fileno())


def free_bytes(directory: Path) -> int | None:
    """Free space where `directory` is or would be made; None when it cannot be told."""
    parent = directory
    while not parent.exists():
        parent = parent.parent
    try:
        return shutil.disk_usage(parent).free
    except OSError:
        return None


def rescue_directories() -> list[Path]:
    """Where a result goes when it cannot be written where asked: the temporary directory, then home."""
    found: list[Path] = []
    for base in (Path(tempfile.gettempdir()), Path.home()):
        if base not in found:
            found.append(base)
    return found


def write_or_rescue(target: Path, write: Callable[[Path], None], label: str) -> Path:
    """Run `write(directory)` to fill `target` (through a temporary directory and a rename); when that fails,
    fill `rescue_directories()/rlvr-rescued/<label>-<time>-<pid>/<target name>` instead and raise
    `ResultNotWritten` saying where it went. Returns `target`."""
    try:
        with atomic_directory(target) as tmp:
            write(tmp)
        return target
    except Exception as exc:
        _rescue(target, write, label, _with_free_space(describe(exc), target))


def write_files_or_rescue(directory: Path, files: dict[str, str], label: str, replace: bool = True) -> None:
    """Write each text file into `directory` (which may hold other files), each whole: every one to a temporary
    name first, then renamed in order, so a full disk never leaves a new file beside an old one of the same
    result. When one fails no temporary file is left, and all of them go to a rescue directory as in
    `write_or_rescue`. With `replace` false, a file of the same name that appeared in `directory` meanwhile
    (another process's result) is kept and these go to the rescue directory. The check and the renames hold
    a lock on `directory`, so two writers never mix their files."""
    tmps = [(directory / f".{name}.tmp", directory / name, text) for name, text in files.items()]
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with _locked(directory):
            found = [] if replace else [name for name in files if (directory / name).exists()]
            if not found:
                try:
                    for tmp, _, text in tmps:
                        tmp.write_text(text, encoding="utf-8")
                    for tmp, final, _ in tmps:
                        tmp.replace(final)
                finally:
                    for tmp, _, _ in tmps:
                        with contextlib.suppress(OSError):
                            tmp.unlink(missing_ok=True)
                return
        reason = f"{', '.join(found)} appeared there while this ran, written by another process; that result is kept"
    except Exception as exc:
        reason = _with_free_space(describe(exc), directory)

    def write(tmp: Path) -> None:
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")

    _rescue(directory, write, label, reason)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold an flock on `directory` itself (no lock file is left). Where there is none (Windows) or it is
    refused (NFS emulates flock with fcntl locks, which need a file open for writing), no lock."""
    try:
        import fcntl

        fd = os.open(directory, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)  # another writer holds it for a few renames
        yield
    finally:
        os.close(fd)  # closing releases it


def _with_free_space(reason: str, target: Path) -> str:
    """The reason with the free space beside `target`: torch and safetensors name a full disk obscurely
    (`unexpected pos 369024 vs 368916`)."""
    free = free_bytes(target.parent)
    return (
        reason
        if free is None
        else f"{reason}; {free / 1e6:.1f} MB free there after removing the partial files"
    )


def _rescue(target: Path, write: Callable[[Path], None], label: str, reason: str) -> NoReturn:
    """Write into the first rescue directory that takes it; raise ResultNotWritten either way."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tried = []
    for base in rescue_directories():
        rescued = base / "rlvr-rescued" / f"{label}-{stamp}-{os.getpid()}" / target.name
        try:
            with atomic_directory(rescued) as tmp:
                write(tmp)
        except Exception as exc:
            tried.append(f"{base}: {describe(exc)}")
            shutil.rmtree(rescued.parent, ignore_errors=True)  # the empty folders made for it
            continue
        raise ResultNotWritten(target, reason, rescued, tried)
    raise ResultNotWritten(target, reason, None, tried)
