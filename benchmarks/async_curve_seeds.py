"""Is the held-out accuracy at rollout.max_staleness S = 2 (or 1) within the run-to-run noise of S = 0? Over seeds.

`scripts/async_learning_curve.sh OUT SEED...` leaves, per seed, the final models of S = 0 and S = 2 evaluated
on the same held-out problems (OUT/seedN/eval_S0_final, eval_S2_final). One seed's paired test (McNemar,
`rlvr compare`) says whether those two models differ; it cannot say whether they differ more than two runs of
the same S with other seeds do. This script puts the two side by side:

- per seed: accuracy at S = 0 and S = 2, and the paired test between them;
- run-to-run noise: the same paired test between S = 0 runs of different seeds (and between S = 2 runs), and
  the spread of the seeds' accuracies;
- the lag's effect: the mean over seeds of S = 2 minus S = 0 (same seed), with an exact sign-flip permutation
  test over the seeds (is S = 2 lower on more seeds, by more, than chance would make it?).

    python benchmarks/async_curve_seeds.py runs/async_curve        # writes runs/async_curve/seeds_S2.md
    python benchmarks/async_curve_seeds.py runs/async_curve --variant S1   # eval_S1_final: seeds_S1.md
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

from rlvr.evaluation.compare import compare_runs, load_run

ALPHA = 0.05


def sign_flip_p(differences: list[float]) -> float:
    """Two-sided exact permutation p-value of the mean of paired `differences`: every sign pattern counted."""
    observed = abs(statistics.fmean(differences))
    means = [
        abs(statistics.fmean(d * s for d, s in zip(differences, signs, strict=True)))
        for signs in itertools.product((1, -1), repeat=len(differences))
    ]
    return sum(m >= observed - 1e-12 for m in means) / len(means)


def paired_p(before: dict, after: dict) -> tuple[float, float]:
    """(McNemar p, accuracy difference after - before) of two evaluations of the same problems."""
    comparison = compare_runs(before, after)
    return comparison["mcnemar_p"], comparison["accuracy"]["difference"]


def noise_line(runs: dict[int, dict], label: str) -> str:
    """The paired test between every two seeds' runs of one S: how often run-to-run noise alone 'differs'."""
    pairs = [(i, j, *paired_p(runs[i], runs[j])) for i, j in itertools.combinations(sorted(runs), 2)]
    if not pairs:
        return f"- {label}: one seed, no pair"
    significant = sum(p < ALPHA for *_, p, _ in pairs)
    gaps = [abs(d) for *_, d in pairs]
    detail = ", ".join(f"{i} vs {j}: {d:+.1%} (p = {p:.2g})" for i, j, p, d in pairs)
    return (
        f"- {label}: {significant} of {len(pairs)} seed pairs differ at p < {ALPHA} by the paired test; "
        f"mean |difference| {statistics.fmean(gaps):.1%} ({detail})"
    )


def curve_table(out: Path, seeds: list[int], variants: list[tuple[str, str]]) -> list[str]:
    """Held-out accuracy by step: the base model, each checkpoint-N evaluated (OUT/seedS/eval_NAME_checkpoint-N)
    and final, a row per seed and variant; a checkpoint not evaluated is left blank."""

    def accuracy(path: Path) -> str:
        if not (path / "summary.json").exists():
            return ""
        return f"{load_run(path)['summary']['metrics']['accuracy']:.1%}"

    steps = sorted(
        {
            int(d.name.rsplit("-", 1)[1])
            for seed in seeds
            for name, _ in variants
            for d in (out / f"seed{seed}").glob(f"eval_{name}_checkpoint-*")
            if d.name.rsplit("-", 1)[1].isdigit()
        }
    )
    columns = ["step 0", *(f"step {n}" for n in steps), "final"]
    rows = [f"| seed | run | {' | '.join(columns)} |", "| --- " * (len(columns) + 2) + "|"]
    for seed in seeds:
        for name, label in variants:
            run = out / f"seed{seed}"
            cells = [accuracy(out / "base")]
            cells += [accuracy(run / f"eval_{name}_checkpoint-{n}") for n in steps]
            cells.append(accuracy(run / f"eval_{name}_final"))
            rows.append(f"| {seed} | {label} | {' | '.join(cells)} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the OUT of scripts/async_learning_curve.sh")
    parser.add_argument(
        "--variant",
        default="S2",
        help="the runs compared with S = 0: OUT/seedN/eval_VARIANT_final (default S2)",
    )
    parser.add_argument("--label", help="their name in the table (default: 'S = 2' for S2)")
    args = parser.parse_args(argv)
    name = args.variant
    label = args.label or f"S = {name.removeprefix('S')}"
    seeds = sorted(
        int(d.name.removeprefix("seed"))
        for d in args.out.glob("seed*")
        if (d / "eval_S0_final" / "summary.json").exists()
        and (d / f"eval_{name}_final" / "summary.json").exists()
    )
    if not seeds:
        print(f"no seed in {args.out} has both eval_S0_final and eval_{name}_final", file=sys.stderr)
        return 2
    s0 = {seed: load_run(args.out / f"seed{seed}" / "eval_S0_final") for seed in seeds}
    other = {seed: load_run(args.out / f"seed{seed}" / f"eval_{name}_final") for seed in seeds}
    accuracy = {
        key: {seed: run["summary"]["metrics"]["accuracy"] for seed, run in runs.items()}
        for key, runs in (("S0", s0), (name, other))
    }
    lines = [
        f"# S = 0 vs {label} over {len(seeds)} seeds: held-out accuracy at the last step",
        "",
        f"| seed | S = 0 | {label} | difference | paired test (McNemar) |",
        "| --- | --- | --- | --- | --- |",
    ]
    differences = []
    for seed in seeds:
        p, difference = paired_p(s0[seed], other[seed])
        differences.append(difference)
        lines.append(
            f"| {seed} | {accuracy['S0'][seed]:.1%} | {accuracy[name][seed]:.1%} | {difference:+.1%} | p = {p:.2g} |"
        )
    spread = {
        key: statistics.stdev(v.values()) if len(v) > 1 else float("nan") for key, v in accuracy.items()
    }
    lines += [
        "",
        f"- S = 0: mean {statistics.fmean(accuracy['S0'].values()):.1%}, standard deviation over seeds "
        f"{spread['S0']:.1%}",
        f"- {label}: mean {statistics.fmean(accuracy[name].values()):.1%}, standard deviation over seeds "
        f"{spread[name]:.1%}",
        f"- {label} - S = 0, same seed: mean {statistics.fmean(differences):+.1%}, lower on "
        f"{sum(d < 0 for d in differences)} of {len(seeds)} seeds; exact sign-flip permutation test over the "
        f"seeds: p = {sign_flip_p(differences):.3g} (the smallest possible with {len(seeds)} seeds: "
        f"{2 / 2 ** len(seeds):.3g})",
        noise_line(s0, "run-to-run noise at S = 0"),
        noise_line(other, f"run-to-run noise at {label}"),
    ]
    lines += ["", *curve_table(args.out, seeds, [("S0", "S = 0"), (name, label)])]
    text = "\n".join(lines) + "\n"
    (args.out / f"seeds_{name}.md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
