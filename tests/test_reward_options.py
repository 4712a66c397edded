"""A reward's options (`rewards.options`, `--reward-options`): checked with the function's signature and its own
`check_options`, bound so that they reach the function in this process, in reward workers and behind the server."""

from __future__ import annotations

import pickle

import pytest
from fastapi.testclient import TestClient

from rlvr.config import ConfigError, GRPOConfig
from rlvr.rewards.options import BoundReward, bind_options, check_options
from rlvr.rewards.pool import RewardPool, load_rewards
from rlvr.rewards.registry import RewardSpecError, get_reward, needs_gold
from rlvr.server.app import ServerConfig, create_app

ADD_TESTS = ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]
HALF_RIGHT = "```python\ndef add(a, b):\n    return 3\n```"  # passes the first case only
RIGHT = "```python\ndef add(a, b):\n    return a + b\n```"


def config(options: dict, functions: list[str] | None = None, workers: int = 0) -> GRPOConfig:
    raw = {"rewards": {"functions": functions or ["code_tests"], "options": options, "num_workers": workers}}
    return GRPOConfig.from_dict(raw)


BAD_OPTIONS = [
    # (reward, options, phrase of the error)
    ("code_tests", {"timout": 5}, "has no option 'timout'; did you mean 'timeout'?"),
    ("code_tests", {"prompts": ["x"]}, "has no option 'prompts'"),  # what every call passes is no option
    ("code_tests", {"partial_credit": "no"}, "code_tests.partial_credit must be bool, got 'no'"),
    ("code_tests", {"memory_mb": 1.5}, "code_tests.memory_mb must be int, got 1.5"),
    ("code_tests", {"sandbox": "docker"}, "sandbox must be one of auto, bubblewrap, subprocess, none"),
    ("code_tests", {"timeout": -1}, "timeout must be above 0"),
    ("code_tests", {"max_parallel": 0}, "max_parallel must be at least 1"),
    ("code_tests", [1], "must be a mapping of option: value"),
    ("answer_tag_strict", {"tags": "label"}, "did you mean 'tag'?"),
]


@pytest.mark.parametrize(("reward", "options", "phrase"), BAD_OPTIONS)
def test_bad_options_name_the_option(reward, options, phrase) -> None:
    with pytest.raises(RewardSpecError, match="rewards.options." + reward) as error:
        check_options(get_reward(reward), reward, options, "rewards.options")
    assert phrase in str(error.value)


def test_options_are_checked_before_anything_runs() -> None:
    with pytest.raises(ConfigError, match="options for 'code_test', .*did you mean 'code_tests'"):
        config({"code_test": {"timeout": 5}})
    with pytest.raises(
        ConfigError, match="remote reward 'remote:http://h:1/get_reward': set them on its server"
    ):
        config({"remote": {"timeout": 5}}, ["remote:http://h:1/get_reward"])
    with pytest.raises(RewardSpecError, match="code_tests.timeout must be float"):
        load_rewards(config({"code_tests": {"timeout": "soon"}}).rewards)


def test_a_named_sandbox_that_cannot_start_fails_when_the_options_are_checked(monkeypatch) -> None:
    monkeypatch.setattr(
        "rlvr.sandbox.backends.bubblewrap_problem", lambda python=None: "bwrap is not installed"
    )
    monkeypatch.setattr("rlvr.sandbox.backends._chosen", {})
    with pytest.raises(RewardSpecError, match="rewards.options.code_tests: sandbox 'bubblewrap' cannot run"):
        check_options(get_reward("code_tests"), "code_tests", {"sandbox": "bubblewrap"}, "rewards.options")


def test_bound_reward_calls_with_its_options_and_pickles_as_its_spec() -> None:
    refs, fns = load_rewards(config({"code_tests": {"partial_credit": False, "timeout": 5}}).rewards)
    bound = refs[0]
    assert isinstance(bound, BoundReward) and fns[0] is bound and bound.options["timeout"] == 5.0
    assert bound.reward_name == "code_tests" and needs_gold(bound)  # code_tests reads `answer` too
    completions = [RIGHT, HALF_RIGHT]
    assert bound(prompts=["q"] * 2, completions=completions, tests=[ADD_TESTS] * 2) == [1.0, 0.0]
    assert get_reward("code_tests")(prompts=["q"] * 2, completions=completions, tests=[ADD_TESTS] * 2) == [
        1.0,
        0.5,
    ]
    # an option wins over a dataset column of the same name
    assert bound(prompts=["q"], completions=[HALF_RIGHT], tests=[ADD_TESTS], partial_credit=[True]) == [0.0]
    copy = pickle.loads(pickle.dumps(bound))
    assert copy._fn is None and copy.options == bound.options  # sent as spec and options, resolved on use
    # by spec or by short name; a reward without options stays a plain spec
    refs, _ = bind_options(
        ["accuracy", "rlvr.rewards.functions:answer_tag_strict"],
        ["accuracy", "rlvr.rewards.functions:answer_tag_strict"],
        [get_reward("accuracy"), get_reward("answer_tag_strict")],
        {"answer_tag_strict": {"tag": "label"}},
        "rewards.options",
    )
    assert refs[0] == "accuracy" and refs[1].options == {"tag": "label"}


def test_in_the_reward_pool() -> None:
    refs, fns = load_rewards(config({"code_tests": {"partial_credit": False}}).rewards)
    pool = RewardPool(refs, num_workers=2, timeout=60, fns=fns)
    try:
        values = pool.score_values(
            ["q"] * 4, [RIGHT, HALF_RIGHT] * 2, {"tests": [ADD_TESTS] * 4}, group_size=2
        )
    finally:
        pool.close()
    assert pool.names == ["code_tests"] and values == [[1.0, 0.0, 1.0, 0.0]]  # all-or-none in the workers


def test_behind_the_reward_server() -> None:
    options = {"code_tests": {"partial_credit": False, "sandbox": "subprocess"}}
    app = create_app(
        ServerConfig(rewards=["code_tests"], workers=1, request_timeout=60, reward_options=options)
    )
    body = {
        "prompts": ["Write add."] * 2,
        "responses": [RIGHT, HALF_RIGHT],
        "golden_responses": ["\n".join(ADD_TESTS)] * 2,
    }
    with TestClient(app) as client:
        answer = client.post("/get_reward", json=body)
        missing = client.post("/get_reward", json={"prompts": ["q"], "responses": ["x"]})
    assert answer.status_code == 200 and answer.json()["rewards"] == [1.0, 0.0]
    assert (
        missing.status_code == 422 and "no gold answer" in missing.json()["error"]
    )  # needs_gold seen through
    with pytest.raises(RewardSpecError, match="--reward-options.code_tests has no option 'sandboxes'"):
        create_app(ServerConfig(rewards=["code_tests"], reward_options={"code_tests": {"sandboxes": "none"}}))


def test_the_held_out_evaluation_scores_with_the_rewards_options(tiny_model_dir, tmp_path):
    """training.eval_reward that has rewards.options is called with them, as in training (before: the bare
    function, so eval figures and the best checkpoint came from its defaults)."""
    from rlvr import GRPOTrainer
    from rlvr.utils import read_jsonl

    (tmp_path / "scaled.py").write_text(
        "def scaled(prompts, completions, scale=1.0, **kwargs):\n    return [scale] * len(completions)\n"
    )
    spec = f"{tmp_path / 'scaled.py'}:scaled"
    rows = [{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(4)]
    raw = {
        "model": {"name_or_path": str(tiny_model_dir)},
        "generation": {"num_generations": 2, "max_completion_length": 4},
        "rewards": {"functions": [spec], "options": {"scaled": {"scale": 0.25}}},
        "algorithm": {"beta": 0.0},
        "training": {
            "output_dir": str(tmp_path / "run"),
            "max_steps": 1,
            "batch_size": 2,
            "save_steps": 0,
            "eval_steps": 1,
            "eval_reward": spec,
            "eval_limit": 2,
        },
    }
    GRPOTrainer(GRPOConfig.from_dict(raw), train_dataset=rows, eval_dataset=rows[:2]).train()
    evaluated = [m for m in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "eval/mean_reward" in m]
    assert [m["eval/mean_reward"] for m in evaluated] == [0.25]


def test_serve_rewards_refuses_reward_options_that_give_a_key_twice():
    from rlvr.server.cli import UsageError, _reward_options

    with pytest.raises(UsageError, match="--reward-options is not valid YAML"):
        _reward_options("{code_tests: {timeout: 5, timeout: 9}}")  # before: 9, silently
    assert _reward_options("{code_tests: {timeout: 5}}") == {"code_tests": {"timeout": 5}}


def test_a_program_timeout_at_or_above_the_reward_call_limit_is_refused():
    with pytest.raises(
        ConfigError, match=r"rewards.options.code_tests.timeout=900 s per program is not below"
    ):
        config({"code_tests": {"timeout": 900}})  # rewards.timeout is 600 by default
    assert config({"code_tests": {"timeout": 5}}).rewards.options == {"code_tests": {"timeout": 5}}
