"""Where `rlvr eval` writes its results: checked before any model loads, and an earlier result kept unless told.

An evaluation takes minutes to hours; its `--output` is checked first, so a directory that already holds a
result (a baseline, say) or that cannot be written stops the command at once, with nothing changed. The check
creates nothing: a command that fails later leaves no empty directory behind. At the end `write_run` writes
the result, and keeps one that another evaluation wrote there meanwhile (the result goes to a rescue directory).
"""

from __future__ import annotations

import json
import math
import platform
import tempfile
from pathlib import Path
from typing import Any

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


def package_versions() -> dict[str, str]:
    import torch
    import transformers

    import rlvr

    return {
        "rlvr": rlvr.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def json_safe(value: Any) -> Any:
    """NaN and infinities as null: JSON has no NaN, and a missing figure reads as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_run(
    output: Path, summary: dict[str, Any], predictions: list[dict[str, Any]], replace: bool = True
) -> None:
    """predictions.jsonl, then summary.json (what scripts test to skip an evaluation: it means both are whole),
    each written whole to a temporary name and then renamed; on a full or read-only disk, or (`replace`
    false) when another evaluation wrote its result there meanwhile, both go to a rescue directory and
    `ResultNotWritten` says where (`outputs`)."""
    from rlvr.outputs import write_files_or_rescue

    files = {
        "predictions.jsonl": "".join(
            json.dumps(json_safe(p), ensure_ascii=False) + "\n" for p in predictions
        ),
        "summary.json": json.dumps(json_safe(summary), indent=2, ensure_ascii=False) + "\n",
    }
    write_files_or_rescue(output, files, "eval", replace)
