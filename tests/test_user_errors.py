"""Hostile input: a missing gold answer stays None, and every user error on the command line ends in one message
(what is wrong, what to do), exit status 2, no traceback; what needs no model is checked before one loads."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from rlvr.cli import main
from rlvr.data import load_problems
from rlvr.rewards import get_reward

# ------------------------------------------------------------------------------- a missing gold is None
GOLD_ROWS = [{"question": "1 + 1?", "answer": None}, {"question": "2 + 2?", "answer": "4"}]
NUMERIC = [{"question": "2 + 2?", "answer": 4}, {"question": "2 + 3?", "answer": 5}]


def write_rows(path: Path, rows: list[dict]) -> Path:
    """`rows` in the format `path`'s suffix names (a directory: save_to_disk, as a hub download is kept)."""
    if path.suffix == ".csv":  # a missing value is an empty cell
        lines = ["question,answer"] + [
            f"{r['question']},{'' if r['answer'] is None else r['answer']}" for r in rows
        ]
        path.write_text("\n".join(lines) + "\n")
        return path
    ds = datasets.Dataset.from_list(rows)
    {
        ".jsonl": lambda: ds.to_json(path),
        ".json": lambda: ds.to_json(path, lines=False),
        ".parquet": lambda: ds.to_parquet(path),
        "": lambda: ds.save_to_disk(path),
    }[path.suffix]()
    return path


@pytest.mark.parametrize("name", ["data.jsonl", "data.json", "data.csv", "data.parquet", "saved"])
def test_a_null_gold_answer_loads_as_none(tmp_path, name):
    rows = load_problems(str(write_rows(tmp_path / name, GOLD_ROWS)))
    assert [(r["answer"], r["ground_truth"]) for r in rows] == [(None, None), ("4", "4")]
    assert "solution" not in rows[0]  # no worked solution invented from the null


@pytest.mark.parametrize("name", ["data.jsonl", "data.csv"])  # CSV: NaN in a numeric column
@pytest.mark.parametrize("completion", ["The answer is None", r"\boxed{None}", r"\boxed{nan}", "nan"])
@pytest.mark.parametrize("reward", ["accuracy", "boxed_exact", "gsm8k_correctness"])
def test_a_completion_cannot_match_a_missing_gold(tmp_path, reward, completion, name):
    # Before: the gold was the text "None" (or "nan") and `accuracy` paid 1.0 for saying it.
    rows = load_problems(str(write_rows(tmp_path / name, [{"question": "1 + 1?", "answer": None}] + NUMERIC)))
    columns = {key: [row[key] for row in rows] for key in ("answer", "ground_truth")}
    values = get_reward(reward)(prompts=["q"] * 3, completions=[completion] * 3, **columns)
    assert values[0] is None  # not applicable: the row has no gold


def test_eval_skips_problems_without_a_gold_answer(tmp_path, tiny_model_dir, capsys):
    data = write_rows(tmp_path / "data.jsonl", GOLD_ROWS)
    out = tmp_path / "eval"
    argv = ["eval", "--model", str(tiny_model_dir), "--dataset", str(data), "--output", str(out)]
    assert main([*argv, "--max-new-tokens", "2", "--no-progress"]) == 0
    assert "skipped 1 problem without a gold answer" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["num_problems"] == 1 and summary["skipped_without_gold"] == 1
    assert [json.loads(line)["gold"] for line in (out / "predictions.jsonl").open()] == ["4"]
