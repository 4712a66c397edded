"""reasoning-gym tasks as datasets and rewards: loading by name, held-out splits, the task's scorer as the
reward, per-task evaluation figures, and the error when the optional extra is missing."""

from __future__ import annotations

import json
import sys

import pytest
import reasoning_gym
import torch

from rlvr import GRPOConfig, GRPOTrainer
from rlvr.cli import main
from rlvr.config import ConfigError
from rlvr.data import DataError, load_problems
from rlvr.data.reasoning_gym import HELD_OUT_SEED_OFFSETS, read_task_options, task_mix
from rlvr.evaluation import evaluate as evaluation
from rlvr.evaluation.evaluate import Generations
from rlvr.rewards import get_reward
from rlvr.utils import read_jsonl

# chain_sum with two one-digit terms has 10 * 10 * 2 = 200 distinct questions: seeds collide often.
SMALL_CHAIN_SUM = {"chain_sum": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_task_loads_by_name_as_the_librarys_own_instances():
    rows = load_problems("reasoning_gym:leg_counting", "train", reasoning_gym={"size": 20, "seed": 7})
    library = reasoning_gym.create_dataset("leg_counting", size=20, seed=7)
    assert [r["question"] for r in rows] == [library[i]["question"] for i in range(20)]
    assert rows[3]["answer"] == rows[3]["ground_truth"] == library[3]["answer"]
    assert rows[3]["metadata"] == library[3]["metadata"]
    assert {r["task"] for r in rows} == {"leg_counting"}
    assert len(load_problems("reasoning_gym:leg_counting", "train", limit=5, reasoning_gym={"size": 20})) == 5


def test_a_weighted_mix_comes_from_the_librarys_composite():
    options = {"size": 400, "tasks": {"chain_sum": {"weight": 3, "max_terms": 3}, "leg_counting": {}}}
    rows = load_problems("reasoning_gym:chain_sum+leg_counting", "train", reasoning_gym=options)
    share = sum(r["task"] == "chain_sum" for r in rows) / len(rows)
    assert 0.68 < share < 0.82  # weight 3 : 1 is 0.75 (binomial sd 0.02)
    chain = [r for r in rows if r["task"] == "chain_sum"]
    assert all(r["task_config"] == {"max_terms": 3} for r in chain)  # the scorer is made with these
    assert max(r["metadata"]["num_terms"] for r in chain) == 3
    # a bare `reasoning_gym` takes its tasks from the options
    assert load_problems("reasoning_gym", "train", reasoning_gym=options) == rows


@pytest.mark.parametrize("dataset", ["reasoning_gym:chain_sum", "reasoning_gym:chain_sum+leg_counting"])
def test_held_out_splits_never_hold_a_training_question(dataset):
    tasks = {**SMALL_CHAIN_SUM, "leg_counting": {}} if "+" in dataset else SMALL_CHAIN_SUM
    options = {"size": 100, "eval_size": 40, "seed": 5, "tasks": tasks}
    train = {r["question"] for r in load_problems(dataset, "train", reasoning_gym=options)}
    validation = [r["question"] for r in load_problems(dataset, "validation", reasoning_gym=options)]
    test = [r["question"] for r in load_problems(dataset, "test", reasoning_gym=options)]
    assert len(test) == len(set(test)) == 40
    assert not train & set(test) and not train & set(validation) and not set(validation) & set(test)
    # The filter does the work: the library's instances from the test seed repeat training questions.
    raw = reasoning_gym.create_dataset(
        "chain_sum", size=40, seed=5 + HELD_OUT_SEED_OFFSETS["test"], **tasks["chain_sum"]
    )
    assert train & {raw[i]["question"] for i in range(40)}
    # A longer held-out split starts with the shorter one, so --limit N evaluates the first N of it.
    assert [r["question"] for r in load_problems(dataset, "test", limit=10, reasoning_gym=options)] == test[
        :10
    ]


def test_a_task_too_small_for_the_split_asked_for_is_an_error():
    options = {"size": 400, "eval_size": 100, "tasks": SMALL_CHAIN_SUM}
    with pytest.raises(DataError, match="few distinct questions"):
        load_problems("reasoning_gym:chain_sum", "test", reasoning_gym=options)


def test_the_tasks_scorer_is_the_reward_partial_credit_kept():
    rows = load_problems("reasoning_gym:chain_sum", "train", reasoning_gym={"size": 3})
    row = rows[0]
    library = reasoning_gym.create_dataset("chain_sum", size=3, seed=0)
    gold = row["answer"]
    answers = [gold, f"{gold} in total", str(int(gold) + 1)]  # right, right with words around it, wrong
    completions = [[{"role": "assistant", "content": f"Adding up. <answer>{a}</answer>"}] for a in answers]
    completions.append([{"role": "assistant", "content": f"The answer is {gold}."}])  # no <answer> tags
    columns = {
        k: [row[k]] * 4 for k in ("question", "answer", "ground_truth", "metadata", "task_config", "task")
    }
    rewards = get_reward("reasoning_gym")(prompts=["q"] * 4, completions=completions, **columns)
    expected = [library.score_answer(a, library[0]) for a in [*answers, None]]
    assert rewards == expected
    assert rewards[0] == 1.0 and 0 < rewards[1] < 1 and rewards[2] == 0.0 and rewards[3] == 0.0
    assert rewards[1] == pytest.approx(len(gold) / len(f"{gold} in total"))  # the base scorer's credit


def test_the_reward_asks_for_reasoning_gym_rows():
    with pytest.raises(ValueError, match="metadata"):
        get_reward("reasoning_gym")(prompts=["q"], completions=["<answer>1</answer>"], answer=["1"])


def test_a_mixed_task_eval_reports_figures_per_task(tiny_model_dir, tmp_path, monkeypatch, capsys):
    options = {"size": 50, "eval_size": 12, "seed": 1}
    dataset = "reasoning_gym:chain_sum+leg_counting"
    problems = load_problems(dataset, "test", reasoning_gym=options)
    tasks = {r["question"]: (r["task"], r["answer"]) for r in problems}

    def answer_chain_sums(model, tokenizer, prompt_texts, num_samples=1, *args, **kwargs):
        # right on chain_sum, the gold followed by words on leg_counting (partial credit), in <answer> tags
        completions = []
        for text in prompt_texts:
            task, gold = next(tasks[q] for q in tasks if q in text)
            completions.append(
                f"<answer>{gold}</answer>" if task == "chain_sum" else f"<answer>{gold} legs</answer>"
            )
        n = len(completions)
        return Generations(completions, [5] * n, [False] * n, 0)

    monkeypatch.setattr(evaluation, "generate_completions", answer_chain_sums)
    options_file = tmp_path / "train.yaml"
    options_file.write_text(f"data:\n  reasoning_gym: {json.dumps(options)}\n")  # a training config's section
    out = tmp_path / "eval"
    argv = ["eval", "--model", str(tiny_model_dir), "--dataset", dataset, "--task-options", str(options_file)]
    assert main([*argv, "--no-progress", "--output", str(out)]) == 0

    summary = json.loads((out / "summary.json").read_text())
    metrics = summary["metrics"]
    counts = {t: sum(task == t for task, _ in tasks.values()) for t in ("chain_sum", "leg_counting")}
    assert summary["template"] == summary["reward"] == "reasoning_gym"  # the defaults for reasoning-gym tasks
    assert summary["task_options"]["eval_size"] == 12
    assert metrics["num_problems"] == 12 and min(counts.values()) > 0
    assert metrics["accuracy/chain_sum"] == 1.0 and metrics["mean_reward/chain_sum"] == 1.0
    assert metrics["accuracy/leg_counting"] == 0.0 and 0 < metrics["mean_reward/leg_counting"] < 1
    assert metrics["num_problems/chain_sum"] == counts["chain_sum"]
    assert metrics["accuracy"] == pytest.approx(counts["chain_sum"] / 12)
    assert {p["task"] for p in read_jsonl(out / "predictions.jsonl")} == set(counts)
    assert "accuracy/leg_counting" in capsys.readouterr().out


def test_training_on_a_task_scores_with_its_reward(tiny_model_dir, tmp_path):
    config = GRPOConfig.from_dict(
        {
            "model": {"name_or_path": str(tiny_model_dir)},
            "data": {
                "dataset": "reasoning_gym:chain_sum",
                "template": "reasoning_gym",
                "reasoning_gym": {"size": 8},
            },
            "rewards": {"functions": ["reasoning_gym"]},
            "generation": {"num_generations": 2, "max_completion_length": 4},
            "training": {"output_dir": str(tmp_path / "run"), "max_steps": 1, "batch_size": 4},
            "algorithm": {"beta": 0.0},
        }
    )
    trainer = GRPOTrainer(config)
    assert len(trainer.problems) == 8 and trainer.problems[0]["metadata"]["source_dataset"] == "chain_sum"
    trainer.train()
    [metrics] = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert metrics["rewards/reasoning_gym"] == 0.0  # four random tokens hold no <answer> tags


def test_missing_extra_is_a_clear_error_before_any_model_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # `import reasoning_gym` now raises ImportError
    monkeypatch.setattr("rlvr.models.load_policy", lambda *a, **k: pytest.fail("the model was loaded"))
    argv = ["eval", "--model", "smollm2-135m-instruct", "--dataset", "reasoning_gym:chain_sum"]
    assert main([*argv, "--output", str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err
    assert 'pip install -e ".[tasks]"' in err and "reasoning-gym==0.1.25" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ImportError, match=r"\.\[tasks\]"):
        get_reward("reasoning_gym")(prompts=["q"], completions=["<answer>1</answer>"], metadata=[{}])


@pytest.mark.parametrize(
    ("dataset", "options", "message"),
    [
        ("reasoning_gym:chain_sun", None, "no task 'chain_sun'; did you mean chain_sum"),
        ("reasoning_gym:", None, "names no task"),
        (
            "reasoning_gym:chain_sum",
            {"tasks": {"leg_counting": {}}},
            "does not name",
        ),  # a task not in the mix
        ("reasoning_gym:chain_sum", {"tasks": {"chain_sum": {"weight": 0}}}, "weight must be a number > 0"),
        ("reasoning_gym:chain_sum", {"tasks": {"chain_sum": {"seed": 3}}}, "set data.reasoning_gym.seed"),
        ("reasoning_gym:chain_sum", {"tasks": {"chain_sum": {"max_term": 3}}}, "max_term"),  # the task's own
        ("reasoning_gym:chain_sum", {"tasks": {"chain_sum": {"min_terms": 0}}}, "min_terms must be positive"),
    ],
)
def test_bad_task_settings_are_errors_that_say_which(dataset, options, message):
    with pytest.raises(DataError, match=message):
        load_problems(dataset, "train", reasoning_gym=options)


def test_options_are_checked_by_the_config_system():
    with pytest.raises(ConfigError, match="data.reasoning_gym.sise"):
        task_mix("reasoning_gym:chain_sum", {"sise": 10})
    with pytest.raises(ConfigError, match="data.template=reasoning_gym"):
        GRPOConfig.from_dict({"data": {"template": "boxed"}, "rewards": {"functions": ["reasoning_gym"]}})
    with pytest.raises(ConfigError, match="data.template=reasoning_gym"):
        GRPOConfig.from_dict({"data": {"template": "plain"}, "training": {"eval_reward": "reasoning_gym"}})
    assert read_task_options("{seed: 3}") == {"size": 1000, "eval_size": 200, "seed": 3, "tasks": {}}
    with pytest.raises(DataError, match="neither a YAML file nor a YAML mapping"):
        read_task_options("no/such/file.yaml")
