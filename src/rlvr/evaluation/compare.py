"""Two eval runs side by side: every figure, the paired accuracy difference with its interval and exact
McNemar test, and the problems that flipped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlvr.evaluation.evaluate import EvaluationError
from rlvr.evaluation.metrics import mcnemar_exact, paired_bootstrap, paired_difference_interval, paired_table

ALPHA = 0.05
# Settings that change what a figure means; a comparison across them is printed with a warning.
SETTINGS = ("dataset", "split", "template", "system_prompt", "reward")
SAMPLING = ("num_samples", "temperature", "top_p", "max_new_tokens", "max_prompt_length")


class CompareError(EvaluationError):
    """Two runs that cannot be compared problem by problem."""


def load_run(directory: str | Path) -> dict[str, Any]:
    """An eval output directory: {"dir", "summary", "predictions"}; a file that is not what `rlvr eval` writes
    (cut short, edited, another tool's) is a CompareError naming the file and line."""
    directory = Path(directory)
    summary_path, predictions_path = directory / "summary.json", directory / "predictions.jsonl"
    for path in (summary_path, predictions_path):
        if not path.is_file():
            raise CompareError(f"{path} does not exist: give directories written by `rlvr eval --output DIR`")
    again = f"run `rlvr eval ... --output {directory}` again"
    summary = _json(summary_path, _text(summary_path, again), again)
    if not isinstance(summary, dict) or not all(
        isinstance(summary.get(key, {}), dict) for key in ("metrics", "sampling")
    ):
        raise CompareError(f"{summary_path} is not an eval summary (a JSON object with metrics): {again}")
    predictions = []
    for number, line in enumerate(_text(predictions_path, again).splitlines(), 1):
        if not line.strip():
            continue
        record = _json(predictions_path, line, again, number)
        if not isinstance(record, dict) or not all(key in record for key in ("question", "gold", "correct")):
            raise CompareError(
                f"{predictions_path} line {number} is not an eval prediction (an object with question, gold and "
                f"correct): {again}"
            )
        predictions.append(record)
    if not predictions:
        raise CompareError(f"{predictions_path} holds no predictions: {again}")
    return {"dir": str(directory), "summary": summary, "predictions": predictions}


def _text(path: Path, again: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CompareError(f"cannot read {path} ({exc}): {again}") from None


def _json(path: Path, text: str, again: str, line: int | None = None) -> Any:
    """`text` parsed, or a CompareError saying where in `path` it stops being JSON (a file cut short?)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {line if line is not None else exc.lineno}, column {exc.colno}"
        raise CompareError(
            f"{path} is not valid JSON at {where}: {exc.msg} (a file cut short?); {again}"
        ) from None
    except RecursionError:
        raise CompareError(f"{path} is nested too deeply to be an eval output: {again}") from None


def question_key(question: str) -> str:
    """Problems are matched by their question text, whitespace runs counted as one space.

    >>> question_key("  What is\\n2 + 3? ")
    'What is 2 + 3?'
    """
    return " ".join(str(question).split())


def match_problems(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[tuple[dict, dict]]:
    """Pairs (before, after) of predictions of the same problem, in the before run's order.

    Raises CompareError when the two runs hold different questions or different gold answers: a paired test
    over different problems measures the problems, not the models. A question asked twice is matched by
    occurrence (first with first).
    """

    def keyed(predictions: list[dict[str, Any]]) -> dict[tuple[str, int], dict]:
        seen: dict[str, int] = {}
        out = {}
        for p in predictions:
            key = question_key(p["question"])
            seen[key] = seen.get(key, 0) + 1
            out[(key, seen[key])] = p
        return out

    left, right = keyed(before), keyed(after)
    only_before = [k for k in left if k not in right]
    only_after = [k for k in right if k not in left]
    if only_before or only_after:
        example = (only_before or only_after)[0][0]
        raise CompareError(
            "the two runs were not on the same problems: "
            f"{len(only_before)} questions only in the first run, "
            f"{len(only_after)} only in the second (e.g. {example[:80]!r}). Evaluate both with the same "
            "--dataset, --split and --limit."
        )
    pairs = [(left[k], right[k]) for k in left]
    different_gold = [b for b, a in pairs if str(b["gold"]) != str(a["gold"])]
    if different_gold:
        b = different_gold[0]
        raise CompareError(
            f"{len(different_gold)} problems have different gold answers in the two runs (e.g. "
            f"{question_key(b['question'])[:80]!r}); were they loaded from different data?"
        )
    return pairs


def figure_rows(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Every numeric figure of either summary: before, after and the change (None where one run lacks it).

    >>> rows = figure_rows({"accuracy": 0.25, "model": "m"}, {"accuracy": 0.5, "pass@4": 0.75})
    >>> [(r["name"], r["change"]) for r in rows]
    [('accuracy', 0.25), ('pass@4', None)]
    """

    def number(value: Any) -> float | None:
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    names = [
        k
        for k in dict.fromkeys([*before, *after])
        if number(before.get(k)) is not None or number(after.get(k)) is not None
    ]
    rows = []
    for name in names:
        b, a = number(before.get(name)), number(after.get(name))
        rows.append(
            {
                "name": name,
                "before": b,
                "after": a,
                "change": a - b if a is not None and b is not None else None,
            }
        )
    return rows


def settings_of(summary: dict[str, Any]) -> dict[str, Any]:
    sampling = summary.get("sampling", {})
    return {**{k: summary.get(k) for k in SETTINGS}, **{k: sampling.get(k) for k in SAMPLING}}


def verdict(difference: float, p_value: float, low: float, high: float, n: int) -> str:
    """Plain sentences on whether the accuracy difference is more than chance; the exact test decides.

    >>> print(verdict(0.02, 0.42, -0.03, 0.07, 200))  # doctest: +NORMALIZE_WHITESPACE
    Within chance: a change of +2.0 points on 200 problems (exact McNemar p = 0.42 >= 0.05) does not show that
    either run is better.
    """
    change = f"{100 * difference:+.1f} points"
    if p_value >= ALPHA:
        text = (
            f"Within chance: a change of {change} on {n} problems (exact McNemar p = {p_value:.3g} >= "
            f"{ALPHA}) does not show that either run is better."
        )
    else:
        direction = "better" if difference > 0 else "worse"
        text = (
            f"Significant: the second run is {direction} by {change} (exact McNemar p = {p_value:.3g} < "
            f"{ALPHA}; 95% CI [{100 * low:+.1f}, {100 * high:+.1f}] points)."
        )
    # Near p = 0.05 on few problems the score interval and the exact (conservative) test can disagree.
    if (low > 0 or high < 0) == (p_value >= ALPHA):
        text += " The 95% interval and the exact test disagree at this sample size; trust the exact test."
    return text


def flip_entry(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {
        "index": before.get("index"),
        "question": before["question"],
        "gold": before["gold"],
        "before": before.get("extracted"),
        "after": after.get("extracted"),
    }


def compare_runs(
    before: dict[str, Any], after: dict[str, Any], bootstrap: int = 0, seed: int = 0
) -> dict[str, Any]:
    """The comparison of two `load_run` results, as a JSON-ready dict (see `format_comparison`).

    The paired figures use each problem's `correct` flag (the first sample's, as `accuracy` does).
    """
    pairs = match_problems(before["predictions"], after["predictions"])
    if not pairs:
        raise CompareError("both runs are empty: nothing to compare")
    right_before = [bool(b["correct"]) for b, _ in pairs]
    right_after = [bool(a["correct"]) for _, a in pairs]
    table = paired_table(right_before, right_after)
    n = len(pairs)
    acc_before, acc_after = sum(right_before) / n, sum(right_after) / n
    low, high = paired_difference_interval(table)
    p_value = mcnemar_exact(table["lost"], table["gained"])
    s_before, s_after = settings_of(before["summary"]), settings_of(after["summary"])
    return {
        "before": {"dir": before["dir"], "model": before["summary"].get("model"), **s_before},
        "after": {"dir": after["dir"], "model": after["summary"].get("model"), **s_after},
        "settings_differ": {k: [s_before[k], s_after[k]] for k in s_before if s_before[k] != s_after[k]},
        "figures": figure_rows(before["summary"].get("metrics", {}), after["summary"].get("metrics", {})),
        "num_problems": n,
        "accuracy": {
            "before": acc_before,
            "after": acc_after,
            "difference": acc_after - acc_before,
            "ci95": [low, high],
            "ci_method": "Newcombe (1998) method 10, paired Wilson score",
        },
        "table": table,
        "mcnemar_p": p_value,
        "bootstrap": paired_bootstrap(right_before, right_after, bootstrap, seed) if bootstrap else None,
        "significant": p_value < ALPHA,
        "verdict": verdict(acc_after - acc_before, p_value, low, high, n),
        "in_plain_words": in_plain_words(
            table, p_value, before["summary"].get("metrics", {}), after["summary"].get("metrics", {}), s_after
        ),
        "gained": [flip_entry(b, a) for b, a in pairs if a["correct"] and not b["correct"]],
        "lost": [flip_entry(b, a) for b, a in pairs if b["correct"] and not a["correct"]],
    }


def in_plain_words(
    table: dict[str, int],
    p_value: float,
    before: dict[str, Any],
    after: dict[str, Any],
    settings: dict[str, Any],
) -> str:
    """What changed between two runs, in sentences: right answers, the asked-for answer form, truncation, length.

    >>> print(in_plain_words({"both_correct": 1, "both_wrong": 5, "gained": 3, "lost": 1}, 0.62,
    ...     {"format_rate": 0.0, "truncation_rate": 0.5, "mean_length": 50.0},
    ...     {"format_rate": 0.25, "truncation_rate": 0.1, "mean_length": 30.0},
    ...     {"template": "boxed", "max_new_tokens": 64}))
    Right answers: 4 of 10 problems after, 2 before (3 gained, 1 lost); exact McNemar p = 0.62, so this could be chance.
    Answers in the form the prompt asks for (boxed): 25% after, 0% before.
    Ran out of the 64-token budget: 10% after, 50% before.
    Mean answer length: 30 tokens after, 50 tokens before.
    """
    n = sum(table.values())
    right_after, right_before = table["both_correct"] + table["gained"], table["both_correct"] + table["lost"]
    if table["gained"] == table["lost"] == 0:
        chance = "no problem changed"
    else:
        chance = "unlikely to be chance" if p_value < ALPHA else "so this could be chance"
    lines = [
        f"Right answers: {right_after} of {n} problems after, {right_before} before ({table['gained']} gained, "
        f"{table['lost']} lost); exact McNemar p = {p_value:.3g}, {chance}."
    ]

    def pair(key: str, scale: float = 100.0, unit: str = "%") -> str | None:
        if before.get(key) is None or after.get(key) is None:
            return None
        return f"{scale * after[key]:.0f}{unit} after, {scale * before[key]:.0f}{unit} before"

    formatted = pair("format_rate")
    if formatted:
        form = f" ({settings['template']})" if settings.get("template") else ""
        lines.append(f"Answers in the form the prompt asks for{form}: {formatted}.")
    truncated, length = pair("truncation_rate"), pair("mean_length", 1.0, " tokens")
    budget = settings.get("max_new_tokens")
    if truncated:
        lines.append(f"Ran out of {f'the {budget}-token' if budget else 'the token'} budget: {truncated}.")
    if length:
        lines.append(f"Mean answer length: {length}.")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _change(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if isinstance(value, float) else f"{value:+d}"


def _short(text: Any, width: int = 70) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def format_comparison(comparison: dict[str, Any], show: int = 5) -> str:
    """The comparison as text: runs, figure table, paired test and verdict, flipped problems."""
    c, b, a = comparison, comparison["before"], comparison["after"]
    lines = [
        f"before: {b['dir']}  (model {b['model']}, {b['dataset']}/{b['split']})",
        f"after:  {a['dir']}  (model {a['model']}, {a['dataset']}/{a['split']})",
    ]
    for key, (x, y) in c["settings_differ"].items():
        lines.append(f"warning: {key} differs ({x!r} vs {y!r}); the figures may not be comparable")
    lines += ["", f"{'figure':<22}{'before':>12}{'after':>12}{'change':>12}"]
    for row in c["figures"]:
        lines.append(
            f"{row['name']:<22}{_cell(row['before']):>12}{_cell(row['after']):>12}"
            f"{_change(row['change']):>12}"
        )
    t, acc = c["table"], c["accuracy"]
    low, high = acc["ci95"]
    lines += [
        "",
        f"paired on {c['num_problems']} problems: both right {t['both_correct']}, "
        f"both wrong {t['both_wrong']}, gained (wrong -> right) {t['gained']}, "
        f"lost (right -> wrong) {t['lost']}",
        f"accuracy {acc['before']:.4f} -> {acc['after']:.4f}: change {100 * acc['difference']:+.1f} points, "
        f"95% CI [{100 * low:+.1f}, {100 * high:+.1f}] ({acc['ci_method']})",
        f"exact McNemar test on the {t['gained'] + t['lost']} discordant problems: p = {c['mcnemar_p']:.4g}",
    ]
    if c["bootstrap"]:
        bs = c["bootstrap"]
        lines.append(
            f"paired bootstrap ({bs['num_resamples']} resamples): 95% CI [{100 * bs['low']:+.1f}, "
            f"{100 * bs['high']:+.1f}] points, p = {bs['p_value']:.4g}"
        )
    lines += [c["verdict"], "", "In plain words:", c["in_plain_words"], ""]
    for name, label in (("gained", "gained (wrong -> right)"), ("lost", "lost (right -> wrong)")):
        flips = c[name]
        lines.append(f"{label}: {len(flips)}" + (f", showing {min(show, len(flips))}" if flips else ""))
        for f in flips[:show]:
            lines.append(f"  #{f['index']} {_short(f['question'])}")
            lines.append(f"      gold {f['gold']!s:<12} before {f['before']!s:<12} after {f['after']!s}")
    return "\n".join(lines)
