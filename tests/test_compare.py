"""`rlvr compare` on constructed eval directories: flips, the McNemar p-value, the verdict, refusals."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import pytest

from rlvr.evaluation import cli as ev
from rlvr.evaluation.compare import CompareError, compare_runs, load_run
from rlvr.evaluation.output import write_run


def write_eval_dir(
    path: Path,
    correct: list[bool],
    model: str = "m",
    extra_metrics: dict | None = None,
    shuffle: bool = False,
    questions: list[str] | None = None,
    golds: list[str] | None = None,
) -> Path:
    questions = questions or [f"Question number {i}?" for i in range(len(correct))]
    golds = golds or [str(i) for i in range(len(correct))]
    predictions = [
        {
            "index": i,
            "question": q,
            "gold": g,
            "extracted": g if ok else "-1",
            "correct": ok,
            "reward": float(ok),
        }
        for i, (q, g, ok) in enumerate(zip(questions, golds, correct, strict=True))
    ]
    if shuffle:
        random.Random(0).shuffle(predictions)
    metrics = {
        "accuracy": sum(correct) / len(correct),
        "format_rate": 1.0,
        "num_problems": len(correct),
        **(extra_metrics or {}),
    }
    summary = {
        "metrics": metrics,
        "model": model,
        "dataset": "gsm8k",
        "split": "test",
        "template": "boxed",
        "reward": "accuracy",
        "sampling": {"num_samples": 1, "temperature": 0.0, "max_new_tokens": 256},
    }
    write_run(path, summary, predictions)
    return path


def compare_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    ev.add_compare_arguments(parser)
    return parser.parse_args(list(argv))


# 12 problems: both right 0-2, lost 3, gained 4-9, both wrong 10-11.
BEFORE = [True] * 4 + [False] * 8
AFTER = [True] * 3 + [False] + [True] * 6 + [False] * 2


def test_compare_within_chance(tmp_path, capsys):
    before = write_eval_dir(tmp_path / "before", BEFORE, model="base")
    after = write_eval_dir(
        tmp_path / "after", AFTER, model="tuned", extra_metrics={"pass@4": 0.9}, shuffle=True
    )
    out_json = tmp_path / "results" / "comparison.json"
    assert ev.run_compare(compare_args(str(before), str(after), "--json", str(out_json), "--show", "2")) == 0
    text = capsys.readouterr().out

    result = json.loads(out_json.read_text())
    assert result["table"] == {"both_correct": 3, "lost": 1, "gained": 6, "both_wrong": 2}
    # 7 discordant, the smaller side 1: p = 2 (C(7,0) + C(7,1)) / 2^7 = 2 * 8 / 128 = 0.125
    assert result["mcnemar_p"] == pytest.approx(0.125)
    assert result["significant"] is False
    assert result["accuracy"]["difference"] == pytest.approx(5 / 12)  # 9/12 - 4/12
    low, high = result["accuracy"]["ci95"]
    assert low < 5 / 12 < high
    assert [f["index"] for f in result["gained"]] == [
        4,
        5,
        6,
        7,
        8,
        9,
    ]  # matched by question although shuffled
    assert [f["index"] for f in result["lost"]] == [3]
    assert result["lost"][0]["before"] == "3" and result["lost"][0]["after"] == "-1"

    assert "Within chance" in text and "p = 0.125" in text
    # Newcombe's interval here is about [+2, +67] points, excluding 0 while p = 0.125: the output says so.
    assert low > 0 and "disagree" in text
    assert "gained (wrong -> right): 6, showing 2" in text and "lost (right -> wrong): 1, showing 1" in text
    assert "Question number 4?" in text and "Question number 6?" not in text  # only --show 2 listed
    assert "pass@4" in text  # a figure only one run has is still listed


def test_compare_significant(tmp_path, capsys):
    before = write_eval_dir(tmp_path / "before", [False] * 10 + [True] * 2)
    after = write_eval_dir(tmp_path / "after", [True] * 12)
    comparison = compare_runs(load_run(before), load_run(after))
    # 10 gained, 0 lost: p = 2 C(10,0) / 2^10 = 2 / 1024
    assert comparison["mcnemar_p"] == pytest.approx(2 / 1024)
    assert comparison["verdict"].startswith("Significant: the second run is better by +83.3 points")  # 10/12
    assert "disagree" not in comparison["verdict"]
    assert comparison["settings_differ"] == {}


def test_compare_says_in_plain_words_what_changed(tmp_path, capsys):
    before = write_eval_dir(
        tmp_path / "before",
        BEFORE,
        extra_metrics={"format_rate": 0.25, "truncation_rate": 0.5, "mean_length": 60.0},
    )
    after = write_eval_dir(
        tmp_path / "after",
        AFTER,
        extra_metrics={"format_rate": 0.75, "truncation_rate": 0.0, "mean_length": 20.0},
    )
    assert ev.run_compare(compare_args(str(before), str(after))) == 0
    text = capsys.readouterr().out
    plain = text.split("In plain words:\n")[1]
    assert plain.startswith(
        "Right answers: 9 of 12 problems after, 4 before (6 gained, 1 lost); exact McNemar p = 0.125, "
        "so this could be chance.\n"
        "Answers in the form the prompt asks for (boxed): 75% after, 25% before.\n"
        "Ran out of the 256-token budget: 0% after, 50% before.\n"
        "Mean answer length: 20 tokens after, 60 tokens before."
    )
    significant = compare_runs(load_run(after), load_run(write_eval_dir(tmp_path / "all", [True] * 12)))
    assert (
        "(3 gained, 0 lost); exact McNemar p = 0.25, so this could be chance" in significant["in_plain_words"]
    )
    big = compare_runs(
        load_run(write_eval_dir(tmp_path / "none", [False] * 12)),
        load_run(write_eval_dir(tmp_path / "b", [True] * 12)),
    )
    assert (
        "12 of 12 problems after, 0 before (12 gained, 0 lost); exact McNemar p = 0.000488, unlikely to be chance"
        in (big["in_plain_words"])
    )


def test_compare_with_bootstrap(tmp_path):
    before = write_eval_dir(tmp_path / "before", BEFORE)
    after = write_eval_dir(tmp_path / "after", AFTER)
    comparison = compare_runs(load_run(before), load_run(after), bootstrap=500, seed=1)
    assert comparison["bootstrap"]["num_resamples"] == 500
    assert comparison["bootstrap"]["low"] <= 5 / 12 <= comparison["bootstrap"]["high"]


def test_compare_refuses_runs_on_different_problems(tmp_path, capsys):
    before = write_eval_dir(tmp_path / "before", BEFORE)
    other = [f"Question number {i}?" for i in range(11)] + ["A different question?"]
    after = write_eval_dir(tmp_path / "after", AFTER, questions=other)
    assert ev.run_compare(compare_args(str(before), str(after))) == 2
    err = capsys.readouterr().err
    assert "not on the same problems" in err and "1 questions only in the first run" in err

    shorter = write_eval_dir(tmp_path / "shorter", AFTER[:10])
    with pytest.raises(CompareError, match="not on the same problems"):
        compare_runs(load_run(before), load_run(shorter))


def test_compare_refuses_different_gold_answers(tmp_path):
    before = write_eval_dir(tmp_path / "before", BEFORE)
    after = write_eval_dir(tmp_path / "after", AFTER, golds=["0"] * 12)
    with pytest.raises(CompareError, match="different gold answers"):
        compare_runs(load_run(before), load_run(after))


def test_compare_warns_when_settings_differ(tmp_path, capsys):
    before = write_eval_dir(tmp_path / "before", BEFORE)
    after = write_eval_dir(tmp_path / "after", AFTER)
    summary = json.loads((after / "summary.json").read_text())
    summary["template"] = "plain"
    (after / "summary.json").write_text(json.dumps(summary))
    assert ev.run_compare(compare_args(str(before), str(after))) == 0
    assert "warning: template differs ('boxed' vs 'plain')" in capsys.readouterr().out


def test_compare_needs_eval_directories(tmp_path, capsys):
    assert ev.run_compare(compare_args(str(tmp_path), str(tmp_path))) == 2
    assert "summary.json does not exist" in capsys.readouterr().err


# ------------------------------------------------ benchmarks/async_curve_seeds.py: S = 0 vs S = 2 over seeds
def async_curve_seeds():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "async_curve_seeds.py"
    spec = importlib.util.spec_from_file_location("async_curve_seeds", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("differences", "p"),
    [
        ([-0.1, -0.2, -0.3, -0.05, -0.1], 2 / 32),  # lower on every seed: the two all-one-sign patterns
        ([-0.1, 0.1], 1.0),
        ([-0.3, -0.1, 0.1], 6 / 8),  # |mean| >= 0.1 in 6 of the 8 sign patterns (not +-+ nor -++)
    ],
)
def test_the_sign_flip_test_counts_every_sign_pattern(differences, p):
    assert async_curve_seeds().sign_flip_p(differences) == pytest.approx(p)


def test_the_seeds_table_pairs_each_seed_and_measures_run_to_run_noise(tmp_path, capsys):
    n = 100
    for seed, (right0, right2) in enumerate([(60, 30), (50, 48), (55, 54)]):
        run = tmp_path / f"seed{seed}"
        write_eval_dir(run / "eval_S0_final", [i < right0 for i in range(n)])
        write_eval_dir(run / "eval_S2_final", [i < right2 for i in range(n)])
    write_eval_dir(tmp_path / "seed0" / "eval_S2_checkpoint-10", [i < 45 for i in range(n)])
    (tmp_path / "seed9").mkdir()  # a seed still running: left out
    assert async_curve_seeds().main([str(tmp_path)]) == 0
    text = (tmp_path / "seeds_S2.md").read_text()
    assert text == capsys.readouterr().out
    assert "over 3 seeds" in text
    assert "| 0 | 60.0% | 30.0% | -30.0% | p = 1.9e-09 |" in text  # 30 lost, none gained: 2 / 2**30
    assert "| 1 | 50.0% | 48.0% | -2.0% | p = 0.5 |" in text
    assert "lower on 3 of 3 seeds" in text and "p = 0.25 (the smallest possible with 3 seeds: 0.25)" in text
    assert "run-to-run noise at S = 0: 1 of 3 seed pairs differ at p < 0.05" in text  # 60 vs 50 (p = 0.002)
    assert "at S = 2: 3 of 3 seed pairs" in text and "mean |difference| 16.0%" in text
    # the curve by step: a column per checkpoint evaluated, blank where a run has none
    assert "| seed | run | step 0 | step 10 | final |" in text
    assert "| 0 | S = 2 |  | 45.0% | 30.0% |" in text and "| 1 | S = 0 |  |  | 50.0% |" in text
