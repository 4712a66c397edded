"""Settings act, or are refused before the model loads, in the words of the command that was run (issue 24,
point 9 and its classes): misspelled evaluation settings, numbers the libraries below refuse, optional packages
that are missing, a reward URL that is no reward server, damaged model files and eval outputs, conflicting inputs,
and messages that named settings or flags the command does not have."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import test_user_errors
import torch
from test_user_errors import _filled, run_cli

from rlvr import GRPOConfig
from rlvr.config import ConfigError, LoraConfig, ModelConfig
from rlvr.models import ModelError
from rlvr.models.loading import load_policy
from rlvr.rewards import RemoteReward, RemoteRewardError
from rlvr.server.app import GoldIndex

inputs, no_model = test_user_errors.inputs, test_user_errors.no_model  # its fixtures

# a config key in a message (data.split, model.device=...): what `rlvr eval` and friends must not name
CONFIG_KEY = re.compile(
    r"(?<![\w.-])(model|data|training|generation|rewards|vllm|environment|algorithm)\.[a-z_]+"
)

# `rlvr train --config base.yaml OVERRIDES`: a phrase of the one-line message, exit 2 before the model loads
TRAIN_CASES = [
    # misspelled: no best checkpoint was ever kept, exit 0
    ("training.metric_for_best_model=eval/acuracy", "did you mean 'eval/accuracy'?"),
    ("training.metric_for_best_model=accuracy", "did you mean 'eval/accuracy'?"),
    # found at the first evaluation, after the steps before it
    ("training.eval_dataset=arithmetc training.eval_steps=1", "did you mean 'arithmetic'?"),
    (
        "training.eval_dataset=arithmetic training.eval_steps=1 training.eval_split=tst",
        "set training.eval_split",
    ),
    ("training.eval_dataset=arithmetic training.eval_steps=1 training.eval_reward=xml_format", "scores form"),
    ("training.eval_dataset=arithmetic training.eval_steps=1 training.eval_reward=acuracy", "unknown reward"),
    (
        "training.eval_dataset=arithmetic",
        "training.eval_steps is 0, so it would never be evaluated",
    ),  # was: never
    # numbers NumPy, httpx and thread joins refuse after the model loads (or at the first request)
    ("training.seed=-1", "training.seed must be from 0 to 2147483647"),
    ("training.seed=4294967296", "training.seed must be from 0 to 2147483647"),
    ("rewards.remote_timeout=1e10", "rewards.remote_timeout must be above 0 and at most 86400 seconds"),
    ("vllm.server_timeout=1e300", "vllm.server_timeout must be above 0 and at most 86400"),
    ("environment.tool_timeout=1e300", "environment.tool_timeout must be above 0 and at most 86400"),
]


@pytest.mark.parametrize(("override", "phrase"), TRAIN_CASES)
def test_train_settings_are_checked_before_the_model(inputs, no_model, capsys, override, phrase):
    code, err = run_cli(["train", "--config", str(inputs / "base.yaml"), *override.split()], capsys)
    assert (code, "Traceback" in err) == (2, False), err
    assert err.strip().splitlines()[-1].startswith("rlvr train: error: ") and phrase in err, err


def test_settings_nothing_reads_are_named_at_start(inputs, no_model, capsys):
    overrides = [
        "model.lora.merge=true",
        "vllm.mode=server",
        "environment.max_turns=8",
        "training.eval_limit=5",
    ]
    overrides += ["rewards.remote_retries=9", "data.reasoning_gym.size=5", "model.name_or_path=/nonexistent"]
    code, err = run_cli(["train", "--config", str(inputs / "base.yaml"), *overrides], capsys)
    assert code == 2 and "warning: set, but nothing in this run reads them:" in err, err  # was: nothing said
    for said in [
        "model.lora.merge=True (model.lora.enabled is false)",  # no final-merged/ would be written
        "vllm.mode=server (generation.engine is hf)",
        "environment.max_turns=8 (environment.name is single_turn)",
        "training.eval_limit=5 (training.eval_dataset is not set)",
        "rewards.remote_retries=9 (no reward is remote:)",
        "data.reasoning_gym.size=5 (no dataset is reasoning_gym)",
    ]:
        assert said in err, said
    code, err = run_cli(
        ["train", "--config", str(inputs / "base.yaml"), "model.name_or_path=/nonexistent"], capsys
    )
    assert "warning" not in err  # the defaults say nothing


def test_per_task_figures_can_pick_the_best_checkpoint_of_a_mix():
    mix = {"eval_dataset": "reasoning_gym:chain_sum+leg_counting", "eval_steps": 1}
    GRPOConfig.from_dict({"training": {**mix, "metric_for_best_model": "eval/accuracy/chain_sum"}})
    one = {"eval_dataset": "reasoning_gym:chain_sum", "eval_steps": 1}  # one task logs no per-task figures
    with pytest.raises(ConfigError, match="is not a figure the evaluation logs"):
        GRPOConfig.from_dict({"training": {**one, "metric_for_best_model": "eval/accuracy/chain_sum"}})


# ---------------------------------------------------------------------------------- optional packages
# package made unimportable, the command, a phrase of its message; every case exits 2 before the model loads
MISSING = [
    ("wandb", ["training.report_to=[wandb]"], "training.report_to wandb needs wandb"),  # was: after the model
    ("tensorboard", ["training.report_to=[tensorboard]"], "training.report_to tensorboard needs tensorboard"),
    ("peft", ["model.lora.enabled=true"], "model.lora.enabled needs peft"),
    (
        "reasoning_gym",
        ["data.template=reasoning_gym", "rewards.functions=[reasoning_gym]"],
        "reasoning_gym reward",
    ),
    ("vllm", ["generation.engine=vllm"], "generation.engine=vllm needs vLLM"),  # already before the model
]


@pytest.mark.parametrize(("package", "overrides", "phrase"), MISSING)
def test_a_missing_optional_package_is_named_before_the_model(
    inputs,
    no_model,
    capsys,
    monkeypatch,
    package,
    overrides,
    phrase,
):
    monkeypatch.setitem(
        sys.modules, package, None
    )  # `import package` raises ImportError, find_spec says None
    code, err = run_cli(["train", "--config", str(inputs / "base.yaml"), *overrides], capsys)
    assert (code, "Traceback" in err) == (2, False), err
    assert phrase in err and "not installed" in err, err


def test_serve_rewards_says_reasoning_gym_is_missing_before_serving(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)
    monkeypatch.setattr(
        "rlvr.server.app.create_app", lambda *a, **k: pytest.fail("served without the package")
    )
    code, err = run_cli(["serve-rewards", "--reward", "reasoning_gym", "--port", "8"], capsys)
    assert code == 2 and "--reward reasoning_gym needs reasoning_gym" in err, err


# --------------------------------------------------------------------- a URL that is no reward server
# the answer of the URL to a scoring request, and why it is not a reward server's (None: it is one)
ANSWERS = [
    (httpx.Response(200, text="<!DOCTYPE html><html>...</html>"), "body that is not JSON"),  # a web page
    (httpx.Response(501, text="<html>Unsupported method</html>"), "body that is not JSON"),
    (httpx.Response(404, json={"error": "Not Found: POST /"}), "404"),  # rlvr's server, at another path
    (httpx.Response(405, json={"detail": "Method Not Allowed"}), "405"),
    (
        httpx.Response(200, json={"id": "cmpl-1", "choices": []}),
        "answers {'rewards': [...]}",
    ),  # a vLLM server
    (httpx.Response(200, json={"rewards": [1.0, 0.0]}), "answers {'rewards': [...]}"),  # two for one
    (httpx.Response(401, json={"error": "missing or wrong API key"}), "RLVR_API_KEY"),
    (httpx.Response(200, json={"rewards": [0.0]}), None),
    (
        httpx.Response(500, json={"error": "reward function 'f' raised KeyError"}),
        None,
    ),  # refuses this probe only
    (httpx.Response(422, json={"error": "prompts[0] ..."}), None),
]


@pytest.mark.parametrize(("answer", "problem"), ANSWERS)
def test_the_start_up_check_sends_a_scoring_request(answer, problem):
    reward = RemoteReward("http://127.0.0.1:6000/get_reward", retries=0)
    reward._client = httpx.Client(transport=httpx.MockTransport(lambda request: answer))
    if problem is None:
        reward.check_reachable()
    else:
        with pytest.raises(RemoteRewardError, match=re.escape(problem)):
            reward.check_reachable()


class _WebPage(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html>a web page</html>")

    def do_GET(self):  # noqa: N802
        self.do_POST()

    def log_message(self, *args):
        pass


def test_train_refuses_a_web_page_as_a_reward_server_before_the_model(inputs, no_model, capsys):
    server = http.server.HTTPServer(("127.0.0.1", 0), _WebPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/get_reward"
    try:
        argv = ["train", "--config", str(inputs / "base.yaml"), f"rewards.functions=[remote:{url}]"]
        code, err = run_cli(argv, capsys)  # was: the model loaded, generated, then failed on the answer
    finally:
        server.shutdown()
    assert code == 2 and "answers, but not as a reward server" in err, err


# ------------------------------------------------------------------------ damaged model files and outputs
@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("model.safetensors", lambda b: b[: len(b) // 2]),  # a copy cut short: was SafetensorError
        ("tokenizer.json", lambda b: b[: len(b) // 2]),  # was JSONDecodeError
        ("config.json", lambda b: b[:40]),
    ],
)
@pytest.mark.parametrize("command", ["eval", "train"])
def test_damaged_model_files_are_one_message(tiny_model_dir, tmp_path, capsys, name, damage, command):
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    (model / name).write_bytes(damage((model / name).read_bytes()))
    if command == "eval":
        argv = ["eval", "--model", str(model), "--dataset", "arithmetic", "--output", str(tmp_path / "e")]
    else:
        config = tmp_path / "c.yaml"
        config.write_text(f"model: {{name_or_path: {model}}}\ndata: {{dataset: arithmetic}}\n")
        argv = ["train", "--config", str(config), f"training.output_dir={tmp_path / 'run'}"]
    code, err = run_cli(argv, capsys)
    assert (code, "Traceback" in err) == (2, False), err
    assert "cannot load the" in err and "damaged or incomplete" in err and str(model) in err, err


def test_a_gguf_file_cut_short_is_one_message(tmp_path, capsys):
    gguf = tmp_path / "cut.gguf"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00")  # the header's first 8 bytes, then nothing
    argv = ["prepare-model", str(gguf), "--cache-dir", str(tmp_path / "cache")]
    code, err = run_cli(argv, capsys)  # was: struct.error traceback
    assert (code, "Traceback" in err) == (2, False), err
    assert "cannot read the GGUF file" in err and "download it again" in err, err


def test_lora_target_modules_that_match_nothing_name_the_models_modules(tiny_model_dir, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(
        f"model: {{name_or_path: {tiny_model_dir}, lora: {{enabled: true, target_modules: [qproj]}}}}\n"
        f"data: {{dataset: arithmetic}}\ntraining: {{output_dir: {tmp_path / 'run'}}}\n"
    )
    code, err = run_cli(["train", "--config", str(config)], capsys)  # was: peft's traceback
    assert code == 2 and "does not fit this model" in err and "q_proj" in err, err


def test_a_quantized_model_is_evaluated_but_not_trained(monkeypatch):
    fake = SimpleNamespace(
        is_quantized=True,
        config=SimpleNamespace(),
        generation_config=SimpleNamespace(pad_token_id=0),
        to=lambda device: fake,
    )
    tokenizer = SimpleNamespace(pad_token="<pad>", pad_token_id=0, padding_side="right")
    monkeypatch.setattr("rlvr.models.loading.resolve_model_path", lambda name, cache: name)
    monkeypatch.setattr(
        "rlvr.models.loading._from_pretrained",
        lambda cls, path, **k: tokenizer if "Tokenizer" in cls.__name__ else fake,
    )
    assert load_policy(ModelConfig(name_or_path="q"), torch.device("cpu"), train=False)[0] is fake
    with pytest.raises(ModelError, match="does not train"):  # was: "enable model.lora", which was refused too
        load_policy(ModelConfig(name_or_path="q", lora=LoraConfig(enabled=True)), torch.device("cpu"))


def _eval_output(directory: Path, summary: str, predictions: str) -> Path:
    directory.mkdir()
    (directory / "summary.json").write_text(summary)
    (directory / "predictions.jsonl").write_text(predictions)
    return directory


GOOD_SUMMARY = json.dumps({"metrics": {"accuracy": 1.0}, "sampling": {}, "dataset": "d"})
GOOD_PREDICTION = json.dumps({"index": 0, "question": "q", "gold": "1", "correct": True}) + "\n"


@pytest.mark.parametrize(
    ("summary", "predictions", "phrase"),
    [
        (
            GOOD_SUMMARY[:30],
            GOOD_PREDICTION,
            "summary.json is not valid JSON at line 1",
        ),  # was JSONDecodeError
        (
            GOOD_SUMMARY,
            GOOD_PREDICTION + GOOD_PREDICTION[:20],
            "predictions.jsonl is not valid JSON at line 2",
        ),
        ("[1, 2]", GOOD_PREDICTION, "summary.json is not an eval summary"),  # was AttributeError
        (GOOD_SUMMARY, '{"x": 1}\n', "predictions.jsonl line 1 is not an eval prediction"),  # was KeyError
        (GOOD_SUMMARY, "\n", "holds no predictions"),
    ],
)
def test_compare_names_a_damaged_eval_output(tmp_path, capsys, summary, predictions, phrase):
    good = _eval_output(tmp_path / "good", GOOD_SUMMARY, GOOD_PREDICTION)
    bad = _eval_output(tmp_path / "bad", summary, predictions)
    code, err = run_cli(["compare", str(good), str(bad)], capsys)
    assert (code, "Traceback" in err) == (2, False), err
    assert phrase in err and "run `rlvr eval ... --output" in err, err


# `rlvr ARGV`: numbers each flag's library refuses, now argparse's one line before anything loads
@pytest.mark.parametrize(
    "argv",
    [
        ["compare", "a", "b", "--bootstrap", "-5"],  # was: numpy "negative dimensions are not allowed"
        ["compare", "a", "b", "--seed", "-1"],  # was: numpy "expected non-negative integer"
        ["inspect", "runs/x", "--top", "-1"],
        ["generate", "--model", "m", "--prompt", "q", "--seed", "4294967296"],
        ["serve-rollouts", "--model", "m", "--gpu-memory-utilization", "2"],  # was: vLLM's, minutes later
    ],
)
def test_numbers_the_libraries_refuse_are_refused_by_the_flag(no_model, capsys, argv):
    code, err = run_cli(argv, capsys)
    assert code == 2 and "must be" in err, err


def test_a_vllm_engine_longer_than_the_model_is_refused_before_vllm_starts(
    tiny_model_dir, tmp_path, capsys, monkeypatch
):
    """The tiny model has 512 positions; 512 + 256 tokens is what vLLM refuses, after a minute of starting."""
    import importlib.machinery
    import types

    fake = types.ModuleType("vllm")
    fake.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    fake.LLM = lambda *a, **k: pytest.fail("vLLM was started")
    monkeypatch.setitem(sys.modules, "vllm", fake)
    argv = [
        "eval",
        "--model",
        str(tiny_model_dir),
        "--engine",
        "vllm",
        "--dataset",
        "arithmetic",
        "--limit",
        "1",
    ]
    code, err = run_cli([*argv, "--max-new-tokens", "256", "--output", str(tmp_path / "e")], capsys)
    assert (
        code == 2
        and "the vLLM engine would hold 768 tokens (--max-prompt-length + --max-new-tokens), more "
        "than the 512 positions"
        in err
    ), err


# ------------------------------------------------------------------------------ conflicting inputs
def test_a_key_given_twice_is_refused(inputs, no_model, capsys):
    config = inputs / "twice.yaml"
    base = (inputs / "base.yaml").read_text()
    config.write_text(base + "  max_steps: 1\n  max_steps: 50\n")  # the training section goes on
    code, err = run_cli(["train", "--config", str(config)], capsys)  # was: 50 steps, the first line ignored
    n = base.count("\n")
    assert code == 2 and f"'max_steps' is given twice (lines {n + 1} and {n + 2}): keep one" in err, err
    few_shot = "[{question: a, answer: b, answer: c}]"
    argv = ["eval", "--model", str(inputs / "model"), "--few-shot", few_shot, "--output", str(inputs / "e")]
    code, err = run_cli(argv, capsys)
    assert code == 2 and "'answer' is given twice" in err, err


def test_a_gold_file_giving_one_question_two_answers_is_refused(tmp_path):
    gold = tmp_path / "gold.jsonl"
    rows = [{"question": "What is 2 + 3?", "answer": "5"}, {"question": "What is  2 + 3?", "answer": "6"}]
    gold.write_text("".join(json.dumps(r) + "\n" for r in rows))  # was: the first answer won every lookup
    with pytest.raises(ValueError, match=r"gold.jsonl:2: the question of line 1 again, with another answer"):
        GoldIndex.from_file(gold)


# ------------------------------------------------------------------ messages in the command's own terms
# `rlvr ARGV` and a phrase of its message, which must name no config key
COMMAND_TERMS = [
    (
        ["eval", "--model", "{missing.jsonl}", "--dataset", "arithmetic"],
        "--model: ",
    ),  # was: model.name_or_path
    (["eval", "--model", "{model}", "--dataset", "{noq.jsonl}"], "set --question-field to the column"),
    (["eval", "--model", "{model}", "--dataset", "{no_split}"], "set --split, or point --dataset at a file"),
    (["eval", "--model", "{model}", "--dataset", "svamp"], "set --data-dir (or RLVR_DATA_DIR)"),
    (
        ["eval", "--model", "{model}", "--reward", "remote:http://127.0.0.1:{port}/x"],
        "correct the URL in --reward",
    ),
    (
        ["eval", "--model", "{model}", "--environment", "retry", "--environment-args", "{nope: 1}"],
        "--environment-args",
    ),
    (
        [
            "eval",
            "--model",
            "{model}",
            "--dataset",
            "reasoning_gym:chain_sum",
            "--task-options",
            "{tasks: {chain_sum: {weight: 0}}}",
        ],
        "--task-options tasks.chain_sum.weight must be a number > 0",
    ),
    (["generate", "--model", "{missing.jsonl}", "--prompt", "q"], "--model: "),
]


@pytest.mark.parametrize(
    ("argv", "phrase"), COMMAND_TERMS, ids=lambda v: " ".join(v)[:60] if isinstance(v, list) else ""
)
def test_messages_name_the_flags_of_the_command_that_ran(inputs, no_model, capsys, monkeypatch, argv, phrase):
    monkeypatch.delenv("RLVR_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (inputs / "noq.jsonl").write_text('{"text": "2 + 3?", "answer": "5"}\n')
    argv = [_filled(arg, inputs) for arg in argv]
    if argv[0] == "eval":
        argv += ["--output", str(inputs / "eval"), "--no-progress"]
    code, err = run_cli(argv, capsys)
    message = err.strip().splitlines()[-1]
    assert (code, "Traceback" in err) == (2, False), err
    assert phrase in message and not CONFIG_KEY.search(message), message


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["eval", "--model", "m", "--engine", "vllm"], "--engine=vllm needs vLLM, which is not installed"),
        (
            ["serve-rollouts", "--model", "m"],
            "rlvr serve-rollouts needs vLLM",
        ),  # was: "set generation.engine=hf"
    ],
)
def test_vllm_missing_is_said_in_the_commands_terms(no_model, capsys, monkeypatch, tmp_path, argv, phrase):
    monkeypatch.setitem(sys.modules, "vllm", None)
    argv = [*argv, "--output", str(tmp_path / "e")] if argv[0] == "eval" else argv
    code, err = run_cli(argv, capsys)
    message = err.strip().splitlines()[-1]
    assert code == 2 and phrase in message and not CONFIG_KEY.search(message), message


@pytest.mark.parametrize(
    "module",
    [
        "rlvr.flags",
        "rlvr.data.lengths",
        "rlvr.data.datasets",
        "rlvr.optional",
        "rlvr.config.checks",
        "rlvr.config.training",
    ],
)
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
