"""`rlvr plot` on a constructed metrics.jsonl: which PNGs, that they are real images, and index.html."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from rlvr.evaluation import cli as ev
from rlvr.evaluation.plot import (
    kl_note,
    moving_average,
    plan_plots,
    plot_run,
    read_metrics,
    read_run_config,
    series,
)


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


def write_run(run_dir, kl, config: str | None) -> None:
    rows = [{"step": s, "reward": 0.1 * s, **({} if kl == "missing" else {"kl": kl})} for s in range(1, 6)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if config is not None:
        (run_dir / "config.yaml").write_text(config)


NO_REFERENCE = "no reference model (beta = 0)"


@pytest.mark.parametrize(
    ("kl", "config", "note"),
    [
        (0.0, "algorithm:\n  beta: 0.0\n", NO_REFERENCE),  # today's trainer logs kl 0 without a reference
        (None, "algorithm:\n  beta: 0\n", NO_REFERENCE),  # kl null: the lead's metrics.jsonl
        ("missing", "algorithm:\n  beta: 0\n", NO_REFERENCE),
        (None, None, "no reference model (kl is null at every step)"),  # no config.yaml to ask
        (0.001, "algorithm:\n  beta: 0.04\n", None),  # a reference: the curve is drawn
        (0.0, None, None),  # a measured 0 with no config.yaml to say otherwise is a value
    ],
    ids=[
        "kl-0-beta-0",
        "kl-null-beta-0",
        "kl-missing-beta-0",
        "kl-null-no-config",
        "beta-0.04",
        "kl-0-no-config",
    ],
)
def test_kl_panel_says_no_reference(tmp_path, kl, config, note):
    write_run(tmp_path, kl, config)
    written = plot_run(tmp_path)
    index = (tmp_path / "plots" / "index.html").read_text()
    assert tmp_path / "plots" / "kl.png" in written
    assert kl_note(read_metrics(tmp_path / "metrics.jsonl"), read_run_config(tmp_path)) == note
    if note:
        assert f"<figcaption>{note}</figcaption>" in index
        assert "kl" not in index.split("not logged in this run:")[1].split("</p>")[0]
    else:
        assert "no reference model" not in index


def test_kl_panel_without_a_reference_is_text_not_a_line(tmp_path):
    import matplotlib.image

    write_run(tmp_path, 0.0, "algorithm:\n  beta: 0\n")
    plot_run(tmp_path)
    kl = matplotlib.image.imread(tmp_path / "plots" / "kl.png")[..., :3]
    reward = matplotlib.image.imread(tmp_path / "plots" / "reward.png")[..., :3]
    # a flat line at 0 has axes, ticks and a grid: many more dark pixels than a title and one sentence
    assert (kl < 0.5).mean() < (reward < 0.5).mean() / 2
