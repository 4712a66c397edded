"""Small helpers shared across the package."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside `target`; on success it replaces `target` by a rename.

    A crash mid-write leaves the previous `target` (or nothing), never a half-written one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        # ASCII escapes: model output may hold U+0085 or U+2028, which str.splitlines() treats as line ends
        f.write(json.dumps(record, default=_json_default) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


# CPython's way to raise in another thread; None elsewhere (PyPy)
_SET_ASYNC_EXC = getattr(getattr(ctypes, "pythonapi", None), "PyThreadState_SetAsyncExc", None)


def raise_in_thread(thread: int, exc: type[BaseException] | None) -> bool:
    """Raise `exc` in thread `thread` (an ident) when it next runs Python code; None withdraws one not raised
    yet. A thread waiting in C code or a system call takes it only when the wait ends. Returns whether it was
    sent (False: no such thread, or not CPython)."""
    if _SET_ASYNC_EXC is None:
        return False
    return _SET_ASYNC_EXC(ctypes.c_ulong(thread), None if exc is None else ctypes.py_object(exc)) == 1
