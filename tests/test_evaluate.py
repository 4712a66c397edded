"""`rlvr eval` end to end on the tiny model, and evaluate_model on models in train mode and with LoRA."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from rlvr.evaluation import cli as ev
from rlvr.evaluation.evaluate import EvaluationError, evaluate_model
from rlvr.utils import read_jsonl

QUESTIONS = [
    ("What is 2 + 3?", "5", 1),
    ("Natalia sold 48 clips in April and half as many in May. How many clips in all?", "72", 0),
    ("What is 0.5 written as a fraction?", "1/2", 1),
    ("How many 0s are in the number 10203040?", "4", 0),
    ("What is 7 + 5?", "12", 0),
]

# A reward that reads a dataset column, so which problems count as correct is known in advance: it checks that
# the columns reach the reward aligned with their completions, and makes accuracy a number worth asserting.
REWARD_FILE = """
def from_column(prompts, completions, expect, **kwargs):
    return [float(e) for e in expect]
"""


@pytest.fixture(autouse=True)
def one_thread():
    # Two OpenMP threads on a busy 2-core machine make the tiny model 100x slower; one is plenty for it.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def problems_file(tmp_path) -> Path:
    path = tmp_path / "problems.jsonl"
    path.write_text(
        "".join(json.dumps({"question": q, "answer": a, "expect": e}) + "\n" for q, a, e in QUESTIONS)
    )
    (tmp_path / "reward.py").write_text(REWARD_FILE)
    return path


def eval_args(model_dir: Path, problems: Path, output: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    ev.add_eval_arguments(parser)
    return parser.parse_args(
        [
            "--model",
            str(model_dir),
            "--dataset",
            str(problems),
            "--output",
            str(output),
            "--max-new-tokens",
            "8",
            "--batch-size",
            "2",
            "--reward",
            f"{problems.parent / 'reward.py'}:from_column",
            "--no-progress",
            *extra,
        ]
    )


def test_eval_end_to_end(tiny_model_dir, problems_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert ev.run_eval(eval_args(tiny_model_dir, problems_file, out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    predictions = read_jsonl(out / "predictions.jsonl")
    metrics = summary["metrics"]

    assert [p["question"] for p in predictions] == [
        q for q, _, _ in QUESTIONS
    ]  # input order, not length order
    assert [p["gold"] for p in predictions] == [a for _, a, _ in QUESTIONS]
    assert [p["correct"] for p in predictions] == [bool(e) for _, _, e in QUESTIONS]
    assert metrics["accuracy"] == 0.4  # 2 of 5 by the reward's column
    assert metrics["accuracy"] == sum(p["correct"] for p in predictions) / len(predictions)
    assert metrics["mean_reward"] == pytest.approx(sum(p["reward"] for p in predictions) / 5)
    assert metrics["mean_length"] == pytest.approx(sum(p["length"] for p in predictions) / 5)
    assert metrics["truncation_rate"] == sum(p["truncated"] for p in predictions) / 5
    assert metrics["format_rate"] == sum(p["formatted"] for p in predictions) / 5
    assert all(1 <= p["length"] <= 8 for p in predictions)
    assert all(p["length"] == 8 for p in predictions if p["truncated"])  # no EOS within max_new_tokens
    assert metrics["num_problems"] == 5 and metrics["problems_per_second"] > 0
    assert "pass@1" not in metrics  # one greedy sample: no pass@k
    low, high = summary["accuracy_ci95"]
    assert low < 0.4 < high
    assert summary["sampling"]["greedy"] is True and summary["sampling"]["max_new_tokens"] == 8
    assert summary["template"] == "boxed" and summary["split"] == "test"
    assert set(summary["versions"]) >= {"rlvr", "torch", "transformers"}
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "summary.json" in printed


def test_eval_with_samples_reports_pass_and_maj(tiny_model_dir, problems_file, tmp_path):
    out = tmp_path / "sampled"
    args = eval_args(
        tiny_model_dir, problems_file, out, "--num-samples", "3", "--temperature", "1.0", "--limit", "3"
    )
    assert ev.run_eval(args) == 0
    metrics = json.loads((out / "summary.json").read_text())["metrics"]
    predictions = read_jsonl(out / "predictions.jsonl")
    assert len(predictions) == 3 and all(len(p["samples"]) == 3 for p in predictions)
    assert all(p["completion"] == p["samples"][0]["completion"] for p in predictions)
    # The reward repeats each problem's column for all its samples: problem 1 and 3 right 3/3, problem 2 0/3.
    assert [p["num_correct"] for p in predictions] == [3, 0, 3]
    assert metrics["pass@1"] == pytest.approx(2 / 3)  # (3/3 + 0/3 + 3/3) / 3
    assert metrics["pass@3"] == pytest.approx(2 / 3)  # k = n: any right sample
    assert metrics["maj@3"] == sum(p["maj_correct"] for p in predictions) / 3
    assert metrics["num_samples"] == 3


def test_eval_reports_user_errors(tiny_model_dir, problems_file, tmp_path, capsys):
    greedy_k = eval_args(tiny_model_dir, problems_file, tmp_path / "x", "--num-samples", "4")
    assert ev.run_eval(greedy_k) == 2
    assert "temperature" in capsys.readouterr().err
    no_copy = eval_args(tiny_model_dir, problems_file, tmp_path / "y")
    no_copy.dataset, no_copy.data_dir = "svamp", str(tmp_path)  # svamp has no hub copy and none in data_dir
    assert ev.run_eval(no_copy) == 2
    assert "rlvr eval: error" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from rlvr.models import load_tokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), load_tokenizer(str(tiny_model_dir))


def test_evaluate_model_switches_a_training_model_to_eval_and_back(tiny):
    model, tokenizer = tiny
    seen = []
    hook = model.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    model.train()
    try:
        evaluate_model(
            model,
            tokenizer,
            [{"question": "What is 2 + 3?", "answer": "5"}],
            max_new_tokens=3,
            show_progress=False,
        )
    finally:
        hook.remove()
    assert seen and not any(seen)  # every forward pass ran in eval mode
    assert model.training  # and the caller's mode is back


def test_evaluate_model_on_a_peft_model(tiny):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = tiny
    problems = [{"question": q, "answer": a} for q, a, _ in QUESTIONS[:3]]
    base = evaluate_model(model, tokenizer, problems, max_new_tokens=6, show_progress=False)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    try:
        peft_model.train()
        wrapped = evaluate_model(peft_model, tokenizer, problems, max_new_tokens=6, show_progress=False)
        assert peft_model.training
    finally:
        peft_model.unload()  # give the shared fixture model back without adapters
    # LoRA starts with B = 0, so the adapted model is the base model: greedy decoding agrees token for token.
    assert [p["completion"] for p in wrapped["predictions"]] == [p["completion"] for p in base["predictions"]]
    assert wrapped["mean_length"] == base["mean_length"]


def test_evaluate_model_rejects_bad_settings(tiny):
    model, tokenizer = tiny
    problems = [{"question": "What is 2 + 3?", "answer": "5"}]
    for kwargs in ({"num_samples": 2}, {"template": "nope"}, {"reward": "xml_format"}, {"temperature": -1.0}):
        with pytest.raises(EvaluationError):
            evaluate_model(model, tokenizer, problems, show_progress=False, **kwargs)
    with pytest.raises(EvaluationError):
        evaluate_model(model, tokenizer, [], show_progress=False)


NAG = """
from rlvr.environments import Environment, Step


class Nag(Environment):
    def step(self, message):
        return Step([{"role": "user", "content": "Say it again."}], done=False, reward=0.5)
"""


def test_eval_plays_episodes_and_reports_turns(tiny_model_dir, problems_file, tmp_path):
    from test_episodes import eos_prone_model
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTIONS[0][0]}], add_generation_prompt=True
    )
    model_dir = tmp_path / "eos_prone"
    eos_prone_model(tiny_model_dir, tokenizer, prompt["input_ids"]).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    (tmp_path / "nag.py").write_text(NAG)
    out = tmp_path / "run"
    args = eval_args(
        model_dir, problems_file, out, "--environment", f"{tmp_path / 'nag.py'}:Nag", "--max-turns", "3"
    )
    assert ev.run_eval(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    metrics, predictions = summary["metrics"], read_jsonl(out / "predictions.jsonl")
    assert summary["environment"]["max_turns"] == 3
    assert 1 < metrics["env/turns"] <= 3 and metrics["env/episodes"] == 5
    assert metrics["env/truncation/max_turns"] > 0  # Nag is never done: the turn limit ends its episodes
    episode = predictions[0]["episode"]
    assert episode["messages"][0]["role"] == "assistant" and episode["turns"] == len(episode["step_rewards"])
    assert [p["correct"] for p in predictions] == [bool(e) for _, _, e in QUESTIONS]  # columns still aligned


def test_eval_names_an_unknown_environment_before_loading(tiny_model_dir, problems_file, tmp_path, capsys):
    args = eval_args(tiny_model_dir, problems_file, tmp_path / "run", "--environment", "calculatr")
    assert ev.run_eval(args) == 2
    assert "calculatr" in capsys.readouterr().err
