"""`rlvr inspect` on constructed completions: hacking cases flagged, clean ones not."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from rlvr.evaluation import cli as ev
from rlvr.evaluation.inspect import analyse_completion, inspect_run, repeated_share, reward_eval_divergence

QUESTION = "Natalia sold clips to 48 of her friends in April and then she sold half as many clips in May"


def record(step: int, completion: str, answer: str = "72", accuracy: float = 0.0, xml: float = 0.0) -> dict:
    return {
        "step": step,
        "prompt": QUESTION,
        "completion": completion,
        "answer": answer,
        "rewards": {"accuracy": accuracy, "xml_format": xml},
        "reward": accuracy + xml,
        "advantage": 0.0,
        "length": len(completion.split()),
        "truncated": False,
    }


CLEAN = record(
    1, "<reasoning>48 / 2 = 24 and 48 + 24 = 72</reasoning><answer>72</answer>", accuracy=1.0, xml=0.8
)
CLEAN_WRONG = record(1, "She sold 48 + 20 = 68 clips.")  # wrong, but nothing paid for it
FORMAT_HACK = record(1, "<reasoning>clips</reasoning><answer>12</answer>", xml=0.8)
COPY_HACK = record(2, QUESTION + " <answer>72</answer>", accuracy=1.0, xml=0.4)
LOOP_HACK = record(2, "The answer is 72. " * 10, accuracy=1.0)
TEXT_ANSWER = record(2, r"so $\boxed{\frac{1}{2}}$", answer="0.5", accuracy=1.0)  # equal, written differently


@pytest.mark.parametrize(
    ("rec", "correct", "flags"),
    [
        (CLEAN, True, []),
        (CLEAN_WRONG, False, []),
        (FORMAT_HACK, False, ["rewarded_wrong_answer"]),
        (COPY_HACK, True, ["copies_question"]),  # right answer, but the whole 20-word question copied
        (LOOP_HACK, True, ["repetition"]),
        (TEXT_ANSWER, True, []),
        ({**FORMAT_HACK, "answer": None}, None, []),  # no gold: correctness unknown, nothing to flag
        ({**CLEAN_WRONG, "rewards": {"accuracy": None}}, False, []),  # null reward paid nothing
    ],
)
def test_analyse_completion(rec, correct, flags):
    analysis = analyse_completion(rec)
    assert analysis["correct"] is correct
    assert list(analysis["flags"]) == flags


def test_flag_reasons_name_the_evidence():
    assert (
        analyse_completion(FORMAT_HACK)["flags"]["rewarded_wrong_answer"]
        == "xml_format=0.8 paid for 12 (gold 72)"
    )
    assert analyse_completion(COPY_HACK)["flags"]["copies_question"] == "20 consecutive words of the question"
    # "the answer is 72 ." 10 times: 50 tokens, 47 4-grams, 5 distinct; 42 / 47 = 89% repeats
    assert analyse_completion(LOOP_HACK)["flags"]["repetition"] == "89% of its 4-grams are repeats"


def test_a_short_restatement_is_not_a_copy():
    # 7 words of the question (< 8) are what a careful solution restates
    rec = record(1, "Natalia sold clips to 48 of her friends, so 48 + 24 = 72.", accuracy=1.0)
    assert analyse_completion(rec)["flags"] == {}


def test_repeated_share_of_ordinary_reasoning_is_low():
    text = (
        "Natalia sold 48 clips in April. In May she sold half as many, 48 / 2 = 24 clips. "
        "Altogether she sold 48 + 24 = 72 clips. The answer is 72."
    )
    assert repeated_share(text) < 0.1


def metrics(rewards: list[float], evals: dict[int, float], num_problems: int = 100) -> list[dict]:
    rows = []
    for step, reward in enumerate(rewards, 1):
        row = {"step": step, "reward": reward}
        if step in evals:
            row.update({"eval/accuracy": evals[step], "eval/num_problems": num_problems})
        rows.append(row)
    return rows


RISING = [0.1 + 0.02 * s for s in range(1, 31)]


def test_reward_up_eval_down_flagged():
    d = reward_eval_divergence(metrics(RISING, {10: 0.5, 20: 0.6, 30: 0.3}))
    # margin = 2 sqrt(0.6 * 0.4 / 100) = 2 * 0.04899 = 0.09798; 0.3 < 0.6 - 0.098
    assert d["margin"] == pytest.approx(0.09798, abs=1e-5)
    # reward over the 5 steps up to 20: 0.1 + 0.02 * mean(16..20) = 0.46; up to 30: 0.1 + 0.02 * 28 = 0.66
    assert (d["reward_at_peak"], d["reward_at_last"]) == pytest.approx((0.46, 0.66))
    assert (d["peak_step"], d["last_step"], d["flagged"]) == (20, 30, True)


@pytest.mark.parametrize(
    ("rewards", "evals"),
    [
        (RISING, {10: 0.5, 20: 0.6, 30: 0.58}),  # a drop of 0.02 is within the 0.098 noise margin
        (RISING, {10: 0.5, 20: 0.6, 30: 0.7}),  # both rose
        (RISING[::-1], {10: 0.5, 20: 0.6, 30: 0.3}),  # accuracy fell, but so did the reward
    ],
)
def test_reward_up_eval_down_not_flagged(rewards, evals):
    assert reward_eval_divergence(metrics(rewards, evals))["flagged"] is False


def test_reward_up_eval_down_needs_two_evaluations():
    assert reward_eval_divergence(metrics(RISING, {30: 0.3})) is None
    # without eval/num_problems any drop counts: 0.59 < 0.6
    rows = metrics(RISING, {20: 0.6, 30: 0.59})
    for row in rows:
        row.pop("eval/num_problems", None)
    assert reward_eval_divergence(rows)["flagged"] is True
    assert reward_eval_divergence(rows)["margin"] == 0.0


def write_run(run_dir, records: list[dict], metric_rows: list[dict] | None = None) -> None:
    (run_dir / "completions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if metric_rows is not None:
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metric_rows))


def inspect_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    ev.add_inspect_arguments(parser)
    return parser.parse_args(list(argv))


def test_inspect_report(tmp_path, capsys):
    records = [CLEAN, CLEAN_WRONG, FORMAT_HACK, COPY_HACK, LOOP_HACK, TEXT_ANSWER]
    write_run(tmp_path, records, metrics(RISING, {10: 0.5, 20: 0.6, 30: 0.3}))
    report = inspect_run(tmp_path, top=1)
    assert report["flag_counts"] == {"rewarded_wrong_answer": 1, "copies_question": 1, "repetition": 1}
    assert [f["line"] for f in report["flagged"]] == [3, 4, 5]
    step1, step2 = report["shown_steps"]
    assert step1["best"][0]["completion"] == CLEAN["completion"]  # reward 1.8
    assert step1["worst"][0]["completion"] == CLEAN_WRONG["completion"]  # reward 0
    assert step1["mean_reward"] == pytest.approx((1.8 + 0 + 0.8) / 3)
    assert step2["flag_counts"] == {"rewarded_wrong_answer": 0, "copies_question": 1, "repetition": 1}
    assert report["reward_up_eval_down"]["flagged"] is True

    assert ev.run_inspect(inspect_args(str(tmp_path), "--step", "1")) == 0
    text = capsys.readouterr().out
    assert "step 1: 3 completions" in text and "step 2:" not in text.split("rewarded_wrong_answer: latest")[0]
    assert "! rewarded_wrong_answer: xml_format=0.8 paid for 12 (gold 72)" in text
    assert "! reward_up_eval_down" in text


def test_inspect_clean_run_flags_nothing(tmp_path, capsys):
    write_run(tmp_path, [CLEAN, CLEAN_WRONG, TEXT_ANSWER], metrics(RISING, {10: 0.5, 20: 0.6, 30: 0.7}))
    assert ev.run_inspect(inspect_args(str(tmp_path), "--json")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["flag_counts"] == {"rewarded_wrong_answer": 0, "copies_question": 0, "repetition": 0}
    assert report["flagged"] == [] and report["reward_up_eval_down"]["flagged"] is False
    assert report["steps"] == [1, 2]


def test_inspect_errors(tmp_path, capsys):
    assert ev.run_inspect(inspect_args(str(tmp_path))) == 2
    assert "completions.jsonl does not exist" in capsys.readouterr().err
    write_run(tmp_path, [CLEAN])
    assert ev.run_inspect(inspect_args(str(tmp_path), "--step", "7")) == 2
    assert "step 7 has no completions" in capsys.readouterr().err
    assert not math.isnan(inspect_run(tmp_path)["shown_steps"][0]["mean_reward"])


@pytest.mark.parametrize(
    ("config", "metric_steps", "expected"),
    [
        # 3 steps trained, completions every 10: the run is recognised, the reason given
        (
            "training:\n  log_completions_steps: 10\n  max_steps: 20\n",
            [1, 2, 3],
            "no completions logged yet: training.log_completions_steps = 10 and the run has reached step 3 "
            "of 20; the first are logged at step 10",
        ),
        # max_steps below the interval: it never will
        (
            "training:\n  log_completions_steps: 10\n  max_steps: 4\n",
            [1, 2],
            "step 2 of 4, so it will log none; set training.log_completions_steps to 4 or less",
        ),
        (
            "training:\n  log_completions_steps: 0\n",
            [1],
            "training.log_completions_steps = 0: this run logs no",
        ),
        # metrics.jsonl alone (no config.yaml): still a run, the setting unknown
        (
            None,
            [1, 2],
            "no completions logged yet: the run has reached step 2 (config.yaml gives no training.log",
        ),
        # config.yaml alone, nothing logged: a run that has not finished a step
        (
            "training:\n  log_completions_steps: 5\n",
            None,
            "= 5 and the run has no steps logged yet; the first",
        ),
    ],
    ids=["short-run", "never-logs", "logging-off", "metrics-only", "no-step-yet"],
)
def test_inspect_a_run_without_completions(tmp_path, capsys, config, metric_steps, expected):
    if config is not None:
        (tmp_path / "config.yaml").write_text(config)
    if metric_steps is not None:
        (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in metric_steps))
    assert ev.run_inspect(inspect_args(str(tmp_path))) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "give a training output directory" not in err and err.count("\n") == 1  # one line, no traceback


def test_inspect_a_run_whose_completions_file_is_empty(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("training:\n  log_completions_steps: 2\n")
    (tmp_path / "completions.jsonl").write_text("")  # created, nothing written yet
    assert ev.run_inspect(inspect_args(str(tmp_path))) == 2
    assert "no completions logged yet: training.log_completions_steps = 2" in capsys.readouterr().err


def test_inspect_a_missing_directory(tmp_path, capsys):
    assert ev.run_inspect(inspect_args(str(tmp_path / "nope"))) == 2
    assert f"{tmp_path / 'nope'} does not exist or is not a directory" in capsys.readouterr().err
