"""`rlvr plot` on a constructed metrics.jsonl: which PNGs, that they are real images, and index.html."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from rlvr.evaluation import cli as ev
from rlvr.evaluation.plot import moving_average, plan_plots, read_metrics, series


def write_metrics(run_dir, steps: int = 30) -> None:
    lines = []
    for step in range(1, steps + 1):
        record = {
            "step": step,
            "reward": 0.1 + 0.02 * step,
            "rewards/accuracy": 0.05 * (step % 4),
            "rewards/xml_format": 0.8,
            "kl": None
            if step == 1
            else 0.001 * step,  # null where a value is missing, as RunLogger writes NaN
            "completion_length/mean": 100.0 - step,
            "clip_ratio/low": 0.0,
            "clip_ratio/high": 0.01,
            "eval/accuracy": 0.3 + 0.01 * step if step % 10 == 0 else None,
            "learning_rate": 1e-6,
        }
        lines.append(json.dumps(record))
    lines.insert(5, json.dumps({"step": 3, "reward": 99.0}))  # an older copy of step 3, before a resume
    lines.append(json.dumps({"step": 3, "reward": 0.16}))  # the resumed run's step 3 wins
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def plot_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    ev.add_plot_arguments(parser)
    return parser.parse_args(list(argv))


def test_plot_writes_images_and_index(tmp_path, capsys):
    import matplotlib.image

    write_metrics(tmp_path)
    (tmp_path / "config.yaml").write_text("model:\n  name_or_path: <tiny & model>\n")
    assert ev.run_plot(plot_args(str(tmp_path))) == 0
    plots = tmp_path / "plots"
    expected = [
        "reward",
        "rewards_accuracy",
        "rewards_xml_format",
        "eval_accuracy",
        "kl",
        "completion_length",
        "clip_ratio",
    ]
    assert sorted(p.stem for p in plots.glob("*.png")) == sorted(expected)  # no entropy.png: never logged
    for name in expected:
        image = matplotlib.image.imread(plots / f"{name}.png")
        assert image.shape[:2] == (400, 640)  # 6.4 x 4 inches at 100 dpi
        assert image[..., :3].std() > 0.05  # not a blank canvas
    index = (plots / "index.html").read_text()
    assert all(f'src="{name}.png"' in index for name in expected)
    assert "&lt;tiny &amp; model&gt;" in index  # the config, escaped
    assert "not logged in this run: entropy" in index
    assert str(plots / "index.html") in capsys.readouterr().out


def test_read_metrics_keeps_the_last_record_of_a_step(tmp_path):
    write_metrics(tmp_path, steps=5)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert records[2] == {"step": 3, "reward": 0.16}


def test_series_and_plans_skip_missing_values():
    records = [
        {"step": 1, "kl": None, "reward": 0.5, "entropy": math.nan},
        {"step": 2, "kl": 0.1, "reward": True},
    ]
    assert series(records, "kl") == ([2], [0.1])
    assert series(records, "reward") == ([1], [0.5])  # a bool is not a value
    assert series(records, "entropy") == ([], [])
    assert [name for name, _, _ in plan_plots(records)] == ["reward", "kl"]
    assert plan_plots([{"step": 1, "clip_ratio/high": 0.2}]) == [
        ("clip_ratio", "share of tokens with the ratio clipped", ["clip_ratio/high"])
    ]


@pytest.mark.parametrize(
    ("values", "window", "expected"),
    [
        ([1.0, 3.0, 5.0, 7.0], 2, [1.0, 2.0, 4.0, 6.0]),  # (1), (1+3)/2, (3+5)/2, (5+7)/2
        ([2.0, 4.0, 6.0], 5, [2.0, 3.0, 4.0]),  # window longer than the data: running mean
        ([4.0], 1, [4.0]),
    ],
)
def test_moving_average(values, window, expected):
    assert moving_average(values, window) == expected


def test_plot_needs_metrics(tmp_path, capsys):
    assert ev.run_plot(plot_args(str(tmp_path))) == 2
    assert "metrics.jsonl does not exist" in capsys.readouterr().err
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "reward": null}\n')
    assert ev.run_plot(plot_args(str(tmp_path))) == 2
    assert "no values to plot" in capsys.readouterr().err
