"""Where `rlvr eval` writes its results: checked before any model loads, and an earlier result kept unless told.

An evaluation takes minutes to hours; its `--output` is checked first, so a directory that already holds a
result (a baseline, say) or that cannot be written stops the command at once, with nothing changed. The check
creates nothing: a command that fails later leaves no empty directory behind.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rlvr.evaluation.evaluate import EvaluationError

# What `rlvr eval` writes; either present means the directory holds a result
RESULT_FILES = ("summary.json", "predictions.jsonl")


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse an `--output` that holds an earlier result (unless `overwrite`), is a file, or cannot be written.

    A directory that does not exist yet is checked where it would be made: its nearest existing parent must
    be a directory this process can create files in.
    """
    if output.exists() and not output.is_dir():
        raise EvaluationError(
            f"--output {output} is a file; give a directory for summary.json and predictions.jsonl"
        )
    found = [name for name in RESULT_FILES if (output / name).exists()]
    if found and not overwrite:
        raise EvaluationError(
            f"--output {output} already holds an evaluation ({', '.join(found)}); nothing was changed. Give "
            "another --output, or replace that result with --overwrite"
        )
    parent = output
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise EvaluationError(
            f"--output {output} cannot be made: {parent} is a file, not a directory; choose another --output"
        )
    try:  # an unnamed file where possible (O_TMPFILE): nothing is left even if this process is killed here
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        where = "" if parent == output else f" (it would be made in {parent})"
        raise EvaluationError(
            f"--output {output} cannot be written{where}: {exc.strerror or exc}; choose another --output"
        ) from None
