"""Hostile input: a missing gold answer stays None, and every user error on the command line ends in one message
(what is wrong, what to do), exit status 2, no traceback; what needs no model is checked before one loads."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import httpx
import numpy as np
import pytest
import torch

from rlvr.cli import main
from rlvr.data import load_problems
from rlvr.rewards import RemoteReward, RemoteRewardError, RewardCallError, get_reward
from rlvr.rewards.registry import check_reward_values
from rlvr.rewards.scoring import RewardError, score

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


# --------------------------------------------------------------------- one message, exit 2, no traceback
@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if any command gets as far as reading model weights or a tokenizer."""

    def refuse(cls, path, **kwargs):
        raise AssertionError(f"{cls.__name__} was loaded from {path} before the input was checked")

    monkeypatch.setattr("rlvr.models.loading._from_pretrained", refuse)


@pytest.fixture
def inputs(tmp_path) -> Path:
    """A folder of bad (and a few good) inputs, with `base.yaml`: a small valid run on a model that is never read."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "tiny-base"}))
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "blank.jsonl").write_text("\n\n")
    (tmp_path / "bad_line.jsonl").write_text(
        '{"question": "a", "answer": "1"}\n{"question": "b", "answer": 2\n'
    )
    (tmp_path / "bad.json").write_text(
        '[{"question": "a", "answer": "1"},\n {"question": "b" "answer": "2"}]\n'
    )
    (tmp_path / "bad.csv").write_text('question,answer\n"1 + 1?,2\n')
    (tmp_path / "bad.parquet").write_text("not parquet")
    (tmp_path / "null_question.jsonl").write_text(
        '{"question": "a", "answer": "1"}\n{"question": null, "answer": "2"}\n'
    )
    (tmp_path / "no_split").mkdir()
    (tmp_path / "a_file").write_text("")
    (tmp_path / "bad_yaml.yaml").write_text("model:\n  name_or_path: x\n  dtype: [float32\n")
    (tmp_path / "base.yaml").write_text(
        f"model:\n  name_or_path: {model}\ndata:\n  dataset: arithmetic\ngeneration:\n  num_generations: 4\n"
        f"training:\n  output_dir: {tmp_path / 'run'}\n  batch_size: 8\n"
    )
    return tmp_path


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """Exit status and stderr of `rlvr ARGV` (argparse's own errors exit through SystemExit)."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


# `rlvr train --config base.yaml OVERRIDE`: the override, and a phrase of the one-line message.
TRAIN_OVERRIDES = [
    ("training.batch_size=0", "training.batch_size must be at least 1"),  # was: max() of an empty sequence
    ("training.learning_rate=-1e-5", "training.learning_rate must be at least 0"),  # was: torch's ValueError
    ("generation.temperature=.nan", "generation.temperature must be a finite number"),
    ("generation.temperature=inf", "generation.temperature must be a finite number"),
    ("generation.top_p=0", "generation.top_p must be in (0, 1]"),  # was: trained, exit 0
    ("generation.top_p=1.5", "generation.top_p must be in (0, 1]"),  # was: trained, exit 0
    ("generation.top_k=-1", "generation.top_k must be at least 0"),
    ("generation.min_p=2", "generation.min_p must be in [0, 1]"),
    ("generation.repetition_penalty=0", "generation.repetition_penalty must be > 0"),
    ("generation.num_generations=1", "num_generations must be at least 2"),
    ("generation.num_generations=3", "must be divisible by generation.num_generations"),
    ("training.max_grad_norm=.inf", "training.max_grad_norm must be a finite number, got inf (null: no"),
    ("training.warmup_ratio=1.5", "training.warmup_ratio must be in [0, 1]"),
    ("training.adam_beta2=1", "training.adam_beta2 must be in [0, 1)"),
    ("training.save_steps=-1", "training.save_steps must be at least 0"),
    ("training.logging_steps=0", "training.logging_steps must be at least 1"),
    ("training.save_total_limit=0", "training.save_total_limit must be at least 1, got 0 (null: keep"),
    ("model.lora.r=0", "model.lora.r must be at least 1"),
    ("rewards.weights=[1.0e400]", "rewards.weights[0] must be a finite number"),
    ("rewards.remote_timeout=0", "rewards.remote_timeout must be above 0"),
    ("data.limit=0", "data.limit must be at least 1"),
    ("training.max_steps=[1", "override 'training.max_steps=[1': the value is not valid YAML"),
    ("training.eval_steps=5", "training.eval_steps=5 but training.eval_dataset is not set"),  # was: no eval
    ("training.output_dir={a_file}", "is a file, not a directory"),  # was: FileExistsError after loading
    ("data.dataset={empty.jsonl}", "empty.jsonl is empty"),  # was: StopIteration
    ("data.dataset={blank.jsonl}", "blank.jsonl is empty"),
    ("data.dataset={bad_line.jsonl}", "bad_line.jsonl line 2 is not valid JSON"),  # was: a pyarrow ValueError
    ("data.dataset={bad.json}", "bad.json line 2 is not valid JSON"),
    ("data.dataset={bad.csv}", "cannot read {bad.csv} as csv: Error tokenizing data"),
    ("data.dataset={bad.parquet}", "cannot read {bad.parquet} as parquet"),
    ("data.dataset={null_question.jsonl}", "row 1 of {null_question.jsonl} has no question"),
    ("data.dataset={no_split}", "holds no 'train' split"),
    ("data.dataset={missing.jsonl}", "data file {missing.jsonl} does not exist; give the path"),  # was: "hub"
    ("data.dataset=./missing_dir/x.jsonl", "(nor does the folder missing_dir)"),
    ("model.name_or_path={adapter}", "holds a LoRA adapter, not a full model, and cannot be trained in full"),
    ("model.lora.enabled=true model.name_or_path={adapter}", "cannot be trained with another adapter on top"),
    ("rewards.functions=[remote:http://127.0.0.1:{port}/get_reward]", "cannot reach the reward server"),
    ("rewards.functions=[nope]", "unknown reward 'nope'"),
    (
        "rewards.options.accuracyy.style=boxed",
        "rewards.options has options for 'accuracyy', which is not one of the rewards (accuracy); did you mean",
    ),
    ("rewards.options.accuracy=5", "rewards.options.accuracy must be a mapping of option: value"),
    (
        "rewards.functions=[code_tests] rewards.options.code_tests.timout=5",
        "rewards.options.code_tests has no option 'timout'; did you mean 'timeout'? its options: test,",
    ),
    (
        "rewards.functions=[code_tests] rewards.options.code_tests.timeout=soon",
        "rewards.options.code_tests.timeout must be float, got 'soon'",
    ),
    (
        "rewards.functions=[code_tests] rewards.options.code_tests.sandbox=bubblewrapp",
        "rewards.options.code_tests: sandbox must be one of auto, bubblewrap, subprocess, none, got "
        "'bubblewrapp'; did you mean 'bubblewrap'?",
    ),
    (
        "rewards.functions=[code_tests] rewards.options.code_tests.timeout=0",
        "rewards.options.code_tests: timeout must be above 0",
    ),
]


def _filled(text: str, inputs: Path) -> str:
    """`text` with each `{name}` replaced by the path of that input (`{port}`: a port nothing listens on)."""
    from conftest import free_port

    for name in [p.name for p in inputs.iterdir()] + ["missing.jsonl"]:
        text = text.replace("{" + name + "}", str(inputs / name))
    return text.replace("{port}", str(free_port()))


@pytest.mark.parametrize(("override", "phrase"), TRAIN_OVERRIDES)
def test_train_input_errors_are_one_message_before_the_model(inputs, no_model, capsys, override, phrase):
    overrides = _filled(override, inputs).split() + ["rewards.remote_retries=0"]
    code, err = run_cli(["train", "--config", str(inputs / "base.yaml"), *overrides], capsys)
    assert (code, "Traceback" in err) == (2, False), err
    message = err.strip().splitlines()[-1]  # after any progress bar of the datasets library
    assert message.startswith("rlvr train: error: ") and _filled(phrase, inputs) in message, err


# `rlvr ARGV`: the arguments, and a phrase of the one-line message.
COMMANDS = [
    (["train", "--config", "{bad_yaml.yaml}"], "bad_yaml.yaml is not valid YAML: line 4, column 1"),
    (["train", "--config", "{no_split}"], "is a directory; give a YAML file"),  # was: IsADirectoryError
    (["train", "--config", "{missing.jsonl}"], "does not exist; give a YAML file"),
    (["generate", "--model", "{model}", "--prompt", "q", "--template", "nope"], "unknown --template 'nope'"),
    (
        ["generate", "--model", "{model}", "--prompt", "q", "--max-new-tokens", "0"],
        "--max-new-tokens: must be",
    ),
    (
        ["generate", "--model", "{model}", "--prompt", "q", "--max-new-tokens", "-3"],
        "--max-new-tokens: must be",
    ),
    (["generate", "--model", "{model}", "--prompt", "q", "--num-samples", "0"], "--num-samples: must be at"),
    (["generate", "--model", "{model}", "--prompt", "q", "--temperature", "-1"], "--temperature: must be a"),
    (["generate", "--model", "{model}", "--prompt", "q", "--temperature", "nan"], "--temperature: must be a"),
    (["generate", "--model", "{model}", "--prompt", "q", "--num-samples", "2"], "with greedy decoding"),
    (
        ["eval", "--model", "{model}", "--dataset", "arithmetic", "--limit", "0"],
        "--limit: must be at least 1",
    ),
    (
        ["eval", "--model", "{model}", "--dataset", "arithmetic", "--limit", "-2"],
        "--limit: must be at least 1",
    ),
    (["eval", "--model", "{model}", "--dataset", "arithmetic", "--batch-size", "0"], "--batch-size: must be"),
    (["eval", "--model", "{model}", "--dataset", "arithmetic", "--top-p", "0"], "--top-p: must be in (0, 1]"),
    (
        ["eval", "--model", "{model}", "--dataset", "arithmetic", "--temperature", "nan"],
        "--temperature: must",
    ),
    (
        ["eval", "--model", "{model}", "--dataset", "arithmetic", "--max-prompt-length", "0"],
        "must be at least",
    ),
    (["eval", "--model", "{model}", "--dataset", "nope"], "dataset 'nope' is not a file, a directory"),
    (["eval", "--model", "{model}", "--dataset", "{missing.jsonl}"], "does not exist; give the path"),
    (["eval", "--model", "{model}", "--dataset", "{empty.jsonl}"], "empty.jsonl is empty"),
    (["eval", "--model", "{model}", "--dataset", "arithmetic", "--template", "nope"], "unknown template"),
    (["eval", "--model", "{model}", "--dataset", "arithmetic", "--reward", "nope"], "unknown reward 'nope'"),
    (
        ["eval", "--model", "{model}", "--dataset", "arithmetic", "--output", "{a_file}"],
        "--output {a_file} is a",
    ),
    (
        ["eval", "--model", "{model}", "--reward", "remote:http://127.0.0.1:{port}/x"],
        "cannot reach the reward",
    ),
    (
        ["serve-rewards", "--reward", "code_tests", "--reward-options", "{code_tests: {partial: false}}"],
        "--reward-options.code_tests has no option 'partial'; did you mean 'partial_credit'?",
    ),
    (
        ["serve-rewards", "--reward", "accuracy", "--reward-options", "[1"],
        "--reward-options is not valid YAML",
    ),
    (
        ["serve-rewards", "--reward", "accuracy", "--reward-options", "{code_tests: {timeout: 5}}"],
        "--reward-options has options for 'code_tests', which is not one of the rewards (accuracy)",
    ),
    (["compare", "{missing.jsonl}", "{no_split}"], "summary.json does not exist"),
    (["plot", "{missing.jsonl}"], "metrics.jsonl does not exist"),
    (["inspect", "{no_split}"], "completions.jsonl does not exist"),
    (["prepare-model", "{missing.jsonl}.gguf"], "does not exist; give the path of a .gguf file"),
]


@pytest.mark.parametrize(
    ("argv", "phrase"), COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_command_input_errors_are_one_message_before_the_model(inputs, no_model, capsys, argv, phrase):
    argv = [_filled(arg, inputs) for arg in argv]
    if argv[0] == "eval" and "--output" not in argv:
        argv += ["--output", str(inputs / "eval")]
    code, err = run_cli(argv, capsys)
    assert (code, "Traceback" in err) == (2, False), err
    message = err.strip().splitlines()[-1]
    assert message.startswith(f"rlvr {argv[0]}: error: ") and _filled(phrase, inputs) in message, err


# --------------------------------------------------------------------------- rewards are numbers or None
@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("1.0", "str"),  # was: float("1.0"), accepted
        (b"1", "bytes"),
        (True, "bool"),  # was: 1.0
        (np.bool_(False), "bool"),
        (torch.tensor(True), "Tensor"),
    ],
)
def test_text_and_bools_are_not_rewards(value, kind):
    with pytest.raises(RewardCallError, match=r"returned .*, which is not a number or None"):
        check_reward_values("r", [0.5, value], 2)
    with pytest.raises(
        RewardError, match=r"'<lambda>' failed: returned .*completion 1:\n---\nb\n---"
    ):  # as training
        score([lambda prompts, completions, **kw: [0.5, value]], ["p", "p"], ["a", "b"], {})
    assert check_reward_values("r", [np.float32(0.5), torch.tensor(2.0), np.int64(1)], 3) == [0.5, 2.0, 1.0]


def remote_reward(answer: httpx.Response) -> RemoteReward:
    """A RemoteReward whose server answers every request with `answer`."""
    reward = RemoteReward("http://reward-server:6000/get_reward", retries=0)
    reward._client = httpx.Client(transport=httpx.MockTransport(lambda request: answer))
    return reward


def test_a_remote_reward_that_answers_text_is_refused():
    reward = remote_reward(httpx.Response(200, json={"rewards": [1.0, "1.0"]}))
    with pytest.raises(RemoteRewardError, match=r"answered an unusable reward: .*returned '1.0'"):
        reward(prompts=["q", "q"], completions=["a", "b"])


def test_a_reward_server_of_another_make_passes_the_start_up_check():
    """Only the answer to a scoring request counts: a server without rlvr's /health route is a reward server."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/get_reward":
            return httpx.Response(200, json={"rewards": [0.0]})
        return httpx.Response(404, text="no such route")

    reward = RemoteReward("http://reward-server:6000/get_reward", retries=0)
    reward._client = httpx.Client(transport=httpx.MockTransport(answer))
    reward.check_reachable()
