"""The verl and OpenRLHF adapters, loaded the way those frameworks load a reward file: by path."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

import rlvr.rewards.adapters as adapters
from rlvr.rewards.adapters import (
    reward_func,
    reward_specs,
    reward_weights,
    split_response,
    verl_compute_score,
)


def load_by_path(name: str):
    """What verl's `custom_reward_function.path` and OpenRLHF's `--remote_rm_url file.py` do."""
    spec = importlib.util.spec_from_file_location(name, adapters.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("reward", "solution", "ground_truth", "expected"),
    [
        ("gsm8k_correctness", "<answer>72</answer>", "72", 2.0),
        ("gsm8k_correctness", "<answer>72.0</answer>", "72", 1.5),
        ("math_verifier", "<think>t</think><answer>\\frac{1}{2}</answer>", "0.5", 1.5),
        ("boxed_exact", "\\boxed{72}", "72", 1.0),
        ("accuracy", "\\boxed{71}", "72", 0.0),
        ("xml_format", "<reasoning>r</reasoning>", "72", 0.4),
        (["accuracy", "xml_format"], "<answer>72</answer>", "72", 1.4),  # summed
        ("accuracy", "\\boxed{5}", None, 0.0),  # no gold: not applicable counts 0
    ],
)
def test_verl_compute_score(reward, solution, ground_truth, expected):
    module = load_by_path("verl_reward_file")
    score = module.verl_compute_score(
        "openai/gsm8k", solution, ground_truth, extra_info={"index": 0}, reward=reward
    )
    assert score == pytest.approx(expected)


def test_verl_reward_from_the_environment_and_weights(monkeypatch):
    monkeypatch.setenv("RLVR_REWARDS", "accuracy,xml_format")
    monkeypatch.setenv("RLVR_REWARD_WEIGHTS", "1.0,0.5")
    # 1.0 * 1.0 + 0.5 * 0.4
    assert verl_compute_score("gsm8k", "<answer>72</answer>", "72") == pytest.approx(1.2)


def test_verl_default_is_accuracy(monkeypatch):
    monkeypatch.delenv("RLVR_REWARDS", raising=False)
    assert verl_compute_score("math", "\\boxed{\\frac{1}{2}}", "0.5") == 1.0


def test_openrlhf_reward_func(monkeypatch):
    monkeypatch.setenv("RLVR_REWARDS", "accuracy,xml_format")
    monkeypatch.delenv("RLVR_REWARD_WEIGHTS", raising=False)
    module = load_by_path("openrlhf_reward_file")
    prompts = ["<|user|>2+3?<|assistant|>", "<|user|>1+1?<|assistant|>"]
    queries = [prompts[0] + "<answer>5</answer>", prompts[1] + "\\boxed{3}"]
    out = module.reward_func(queries, prompts, ["5", "2"])
    assert set(out) == {"rewards", "scores", "extra_logs"}
    assert isinstance(out["rewards"], torch.Tensor)
    assert out["rewards"].tolist() == pytest.approx([1.4, 0.0])
    assert out["scores"].tolist() == pytest.approx([1.4, 0.0])
    assert out["extra_logs"]["accuracy"].tolist() == [1.0, 0.0]
    assert out["extra_logs"]["xml_format"].tolist() == pytest.approx([0.4, 0.0])


def test_openrlhf_without_labels_logs_nan(monkeypatch):
    monkeypatch.setenv("RLVR_REWARDS", "accuracy")
    out = reward_func(["q a"], ["q"])
    assert out["rewards"].tolist() == [0.0]
    assert math.isnan(out["extra_logs"]["accuracy"][0].item())


@pytest.mark.parametrize(
    ("query", "prompt", "response"),
    [
        ("Q: 1+1? A: 2", "Q: 1+1? A:", " 2"),
        ("A: 2", "Q: 1+1?", "A: 2"),  # the query does not start with the prompt: all of it
        ("anything", "", "anything"),
    ],
)
def test_split_response(query, prompt, response):
    assert split_response(query, prompt) == response


def test_reward_specs_and_weights_errors(monkeypatch):
    monkeypatch.delenv("RLVR_REWARDS", raising=False)
    assert reward_specs(None) == ("accuracy",)
    assert reward_specs(["a", " b "]) == ("a", "b")
    with pytest.raises(ValueError, match="no reward named"):
        reward_specs(" , ")
    with pytest.raises(ValueError, match="2 reward weights for 3 rewards"):
        reward_weights("1,2", 3)
