"""Objective ablation on the arithmetic task: GRPO, DAPO, GSPO, CISPO and DAPO's dynamic sampling, each
trained from configs/demo.yaml with the same seed and number of steps (dynamic sampling generates more per step:
up to 1 + max_resample_rounds rounds), then measured on the same held-out problems.

    PYTHONPATH=src python scripts/ablation.py run docs/results/ablation --steps 12 --seeds 0 1
    PYTHONPATH=src python scripts/ablation.py run docs/results/ablation --steps 12 --dry-run   # commands only
    PYTHONPATH=src python scripts/ablation.py summarize docs/results/ablation

`run` writes OUT/base/eval (the untrained model, once) and, per variant and seed, OUT/<variant>/seed<S>/
{train, eval, compare.json, timing.json}; a (variant, seed) whose eval/summary.json exists is skipped, so an
interrupted run continues where it stopped. Seeds are the outer loop: seed 0 of every variant comes first.
`summarize` writes OUT/rewards.png, OUT/summary.md and OUT/summary.json.

Every variant runs with algorithm.mu=2: at mu=1 each update is on-policy, the ratio is exactly 1, GSPO's
gradient equals GRPO's and CISPO's equals DAPO's token-level REINFORCE. With two updates per batch the second
is off-policy and the clipping rules differ.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rlvr.config import ConfigError, GRPOConfig
from rlvr.evaluation.compare import ALPHA, compare_runs, load_run
from rlvr.evaluation.metrics import wilson_interval
from rlvr.evaluation.plot import read_metrics, series

BASE_CONFIG = "configs/demo.yaml"
BASE_MODEL = "smollm2-135m-instruct"
RLVR = [sys.executable, "-m", "rlvr"]  # this interpreter, so PYTHONPATH=src runs this checkout's rlvr
DAPO = ["algorithm.loss_type=dapo", "algorithm.epsilon=0.2", "algorithm.epsilon_high=0.28"]
# name: (description, overrides on top of configs/demo.yaml and COMMON)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "grpo": ("per-sequence mean, symmetric clip 0.2", ["algorithm.loss_type=grpo", "algorithm.epsilon=0.2"]),
    "dapo": ("token-level aggregation, clip-higher [0.8, 1.28]", DAPO),
    "gspo": (
        "one length-normalised ratio per sequence, GSPO paper's clip [1 - 3e-4, 1 + 4e-4]",
        [
            "algorithm.loss_type=grpo",
            "algorithm.importance_sampling_level=sequence",
            "algorithm.epsilon=3e-4",
            "algorithm.epsilon_high=4e-4",
        ],
    ),
    "cispo": (
        "MiniMax-M1's clipped importance weight (max 5), token-level",
        ["algorithm.loss_type=cispo", "algorithm.cispo_clip_max=5.0"],
    ),
    "dapo_dynamic": (
        "dapo + dynamic sampling (drop zero-variance groups, up to 3 more rounds)",
        [*DAPO, "algorithm.dynamic_sampling=true", "algorithm.max_resample_rounds=3"],
    ),
}
COMMON = ["algorithm.mu=2", "training.save_steps=0", "training.log_completions_steps=0"]
EVAL_FLAGS = (
    "--dataset arithmetic --split test --template boxed --reward accuracy "
    "--max-new-tokens 64 --batch-size 50 --no-progress"
).split()
DYNAMIC_KEYS = ("dynamic_sampling/extra_prompts", "dynamic_sampling/filled_groups")


def train_overrides(variant: str, seed: int, steps: int, train_dir: Path) -> list[str]:
    return [
        *VARIANTS[variant][1],
        *COMMON,
        f"training.max_steps={steps}",
        f"training.seed={seed}",
        f"training.output_dir={train_dir}",
    ]


def eval_command(model: str | Path, output: Path, limit: int) -> list[str]:
    return [*RLVR, "eval", "--model", str(model), *EVAL_FLAGS, "--limit", str(limit), "--output", str(output)]


def execute(command: list[str], dry_run: bool) -> float:
    """Print and run one command; its wall-clock seconds. A failure stops the ablation."""
    print("$", shlex.join(command), flush=True)
    if dry_run:
        return 0.0
    started = time.perf_counter()
    if subprocess.run(command).returncode != 0:
        sys.exit(f"ablation: this command failed, stopping:\n  {shlex.join(command)}")
    return time.perf_counter() - started


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    try:  # a wrong key or value fails here, before any model loads
        for variant in args.variants:
            GRPOConfig.from_yaml(BASE_CONFIG, train_overrides(variant, 0, args.steps, out))
    except ConfigError as exc:
        sys.exit(f"ablation: {exc} (run from the repository root)")
    base = out / "base" / "eval"
    if not (base / "summary.json").exists():
        execute(eval_command(BASE_MODEL, base, args.eval_limit), args.dry_run)
    for seed, variant in itertools.product(args.seeds, args.variants):
        run_dir = out / variant / f"seed{seed}"
        train, evaluation = run_dir / "train", run_dir / "eval"
        if (evaluation / "summary.json").exists():
            print(f"skip {variant} seed {seed}: {evaluation / 'summary.json'} exists")
            continue
        overrides = train_overrides(variant, seed, args.steps, train)
        train_command = [*RLVR, "train", "--config", BASE_CONFIG, "--overwrite", *overrides]
        seconds = execute(train_command, args.dry_run)
        if not args.dry_run:
            timing = {"train_seconds": seconds, "steps": args.steps, "command": shlex.join(train_command)}
            (run_dir / "timing.json").write_text(json.dumps(timing, indent=2) + "\n", encoding="utf-8")
        execute(eval_command(train / "final", evaluation, args.eval_limit), args.dry_run)
        compare_json = str(run_dir / "compare.json")
        execute([*RLVR, "compare", str(base), str(evaluation), "--json", compare_json], args.dry_run)


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def find_runs(out: Path) -> list[tuple[str, int, Path]]:
    """(variant, seed, run dir) of every run with an eval summary, in VARIANTS order, then by seed."""
    found = []
    for variant in VARIANTS:
        for d in (out / variant).glob("seed*"):
            if (d / "eval" / "summary.json").is_file() and d.name[4:].isdigit():
                found.append((variant, int(d.name[4:]), d))
    return sorted(found, key=lambda r: (list(VARIANTS).index(r[0]), r[1]))


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def accuracy(evaluation: dict[str, Any]) -> dict[str, Any]:
    """Greedy accuracy of a `load_run` result with the Wilson interval `rlvr eval` prints."""
    correct, n = sum(bool(p["correct"]) for p in evaluation["predictions"]), len(evaluation["predictions"])
    return {"accuracy": correct / n, "accuracy_ci95": list(wilson_interval(correct, n)), "num_problems": n}


def paired(comparison: dict[str, Any]) -> dict[str, Any]:
    """The paired accuracy figures of a `compare_runs` result: second run minus first."""
    p = comparison["mcnemar_p"]
    difference, ci95 = comparison["accuracy"]["difference"], comparison["accuracy"]["ci95"]
    return {"difference": difference, "ci95": ci95, "mcnemar_p": p, "within_noise": p >= ALPHA}


def with_drawn_reward(records: list[dict]) -> list[dict]:
    """Records with `reward_drawn`: the mean reward over every sample drawn in the step. Under dynamic sampling
    `reward` is over the kept (informative) groups only, which a curve beside the other variants would flatter."""
    for r in records:
        r["reward_drawn"] = r.get("dynamic_sampling/reward_all", r.get("reward"))
    return records


def run_row(run_dir: Path, evaluation: dict[str, Any], records: list[dict], base: dict[str, Any]) -> dict:
    metrics = evaluation["summary"]["metrics"]
    # compare.json is what `rlvr compare` wrote; without it the same function is called here.
    vs_base = read_json(run_dir / "compare.json") or compare_runs(base, evaluation)
    rewards, step_seconds = series(records, "reward_drawn")[1], series(records, "step_seconds")[1]
    row = {
        **accuracy(evaluation),
        "format_rate": metrics.get("format_rate"),
        "truncation_rate": metrics.get("truncation_rate"),
        "vs_base": paired(vs_base),
        "train_seconds": (read_json(run_dir / "timing.json") or {}).get("train_seconds"),
        "steps": len(records),
        "median_step_seconds": statistics.median(step_seconds) if step_seconds else None,
        "final5_reward": mean(rewards[-5:]),
    }
    row.update({k: mean(series(records, k)[1]) for k in DYNAMIC_KEYS if series(records, k)[1]})
    return row


def pair_rows(runs: list[tuple[str, int, Path]], loaded: dict[Path, dict]) -> list[dict]:
    """Each pair of variants on each seed both ran: the paired difference (second - first), CI and p."""
    by_key = {(v, s): d for v, s, d in runs}
    rows = []
    for (a, b), seed in itertools.product(
        itertools.combinations(VARIANTS, 2), sorted({s for _, s, _ in runs})
    ):
        if (a, seed) in by_key and (b, seed) in by_key:
            c = compare_runs(loaded[by_key[a, seed]], loaded[by_key[b, seed]])
            rows.append({"first": a, "second": b, "seed": seed, **paired(c)})
    return rows


def plot_rewards(path: Path, runs: list[tuple[str, int, Path]], records: dict[Path, list[dict]]) -> None:
    """Reward and completion length per step: a faint line per seed, a bold mean over seeds per variant."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    panels = [
        ("reward_drawn", "reward (mean over all samples drawn)"),
        ("completion_length/mean", "completion length (tokens)"),
    ]
    for i, (key, ylabel) in enumerate(panels):
        axes = figure.add_subplot(1, 2, i + 1)
        for j, variant in enumerate(VARIANTS):
            curves = [dict(zip(*series(records[d], key), strict=True)) for v, _, d in runs if v == variant]
            if not curves:
                continue
            color = f"C{j}"
            for curve in curves if len(curves) > 1 else []:
                axes.plot(list(curve), list(curve.values()), color=color, alpha=0.25, linewidth=1)
            steps = sorted(set.intersection(*(set(c) for c in curves)))
            means = [mean([c[s] for c in curves]) for s in steps]
            label = f"{variant} (mean of {len(curves)} seeds)" if len(curves) > 1 else variant
            axes.plot(steps, means, color=color, linewidth=2, marker="o", markersize=3, label=label)
        axes.set_xlabel("training step")
        axes.set_ylabel(ylabel)
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path)


def fmt(x: float | None, spec: str = ".1f", scale: float = 100) -> str:
    """A figure for the table (percent by default); "-" where it was not measured."""
    return "-" if x is None else format(scale * x, spec)


def difference(d: dict[str, Any]) -> str:
    """A `paired` result as table cells: the change in points [95% CI] | p."""
    (lo, hi), spec = d["ci95"], "+.1f"
    return f"{fmt(d['difference'], spec)} [{fmt(lo, spec)}, {fmt(hi, spec)}] | {d['mcnemar_p']:.3g}"


def markdown(rows: list[dict], pairs: list[dict], base: dict) -> str:
    lines = [
        "# Objective ablation on arithmetic",
        "",
        f"Base model: accuracy {fmt(base['accuracy'])}% [{fmt(base['accuracy_ci95'][0])}, "
        f"{fmt(base['accuracy_ci95'][1])}] on {base['num_problems']} held-out problems (greedy).",
        "",
        "Accuracy, rates and changes in percent (points); CIs are 95%: Wilson for accuracy, paired Newcombe "
        "for the change vs base; p is the exact McNemar test. train s: wall-clock of `rlvr train`, model "
        "loading included.",
        "",
        "| variant | seed | accuracy [95% CI] | format | trunc. | vs base [95% CI] | p | train s | step s "
        "(median) | reward, last 5 | dyn. extra prompts / filled |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        (lo, hi), vs_base = r["accuracy_ci95"], r["vs_base"]
        dynamic = " / ".join(fmt(r[k], ".2f", 1) for k in DYNAMIC_KEYS if k in r) or "-"
        lines.append(
            f"| {r['variant']} | {r['seed']} | {fmt(r['accuracy'])} [{fmt(lo)}, {fmt(hi)}] | "
            f"{fmt(r['format_rate'])} | {fmt(r['truncation_rate'])} | {difference(vs_base)} | "
            f"{fmt(r['train_seconds'], '.0f', 1)} | "
            f"{fmt(r['median_step_seconds'], '.1f', 1)} | {fmt(r['final5_reward'], '.3f', 1)} | {dynamic} |"
        )
    lines += [
        "",
        "Variants: " + "; ".join(f"**{k}**: {d}" for k, (d, _) in VARIANTS.items()) + ".",
        "",
        "## Pairs of variants (second minus first, same seed, same problems)",
        "",
        "| first | second | seed | difference [95% CI] | p | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for p in pairs:
        better = p["second"] if p["difference"] > 0 else p["first"]
        verdict = "within noise" if p["within_noise"] else f"{better} better"
        lines.append(f"| {p['first']} | {p['second']} | {p['seed']} | {difference(p)} | {verdict} |")
    return "\n".join(lines) + "\n"


def summarize(args: argparse.Namespace) -> None:
    out = Path(args.out)
    runs = find_runs(out)
    base_dir = out / "base" / "eval"
    if not runs or not (base_dir / "summary.json").is_file():
        sys.exit(f"ablation: {out} holds no base/eval or no <variant>/seed<S>/eval runs; run `run` first")
    loaded = {d: load_run(d / "eval") for _, _, d in runs}
    records = {d: with_drawn_reward(read_metrics(d / "train" / "metrics.jsonl")) for _, _, d in runs}
    base_run = load_run(base_dir)
    base = accuracy(base_run)
    rows = [{"variant": v, "seed": s, **run_row(d, loaded[d], records[d], base_run)} for v, s, d in runs]
    pairs = pair_rows(runs, loaded)
    plot_rewards(out / "rewards.png", runs, records)
    summary = {
        "base": base,
        "variants": {k: {"description": d, "overrides": [*o, *COMMON]} for k, (d, o) in VARIANTS.items()},
        "runs": rows,
        "pairs": pairs,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "summary.md").write_text(markdown(rows, pairs, base), encoding="utf-8")
    print(f"wrote {out / 'rewards.png'}, {out / 'summary.md'} and {out / 'summary.json'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="train and evaluate every variant and seed")
    run_parser.add_argument("out", help="output directory, e.g. docs/results/ablation")
    run_parser.add_argument("--steps", type=int, default=12, help="training steps of every run")
    run_parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    run_parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    run_parser.add_argument("--eval-limit", type=int, default=150, help="held-out problems")
    run_parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    summarize_parser = commands.add_parser("summarize", help="rewards.png, summary.md and summary.json")
    summarize_parser.add_argument("out", help="the directory `run` wrote")
    args = parser.parse_args()
    if args.command == "run":
        run(args)
    else:
        summarize(args)


if __name__ == "__main__":
    main()
