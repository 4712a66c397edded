"""A training run's curves as PNGs, and an index.html that shows them beside the run's config.yaml."""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path
from typing import Any

from rlvr.evaluation.evaluate import EvaluationError

# (file name, title, metrics.jsonl keys drawn together). Per-function rewards are added after `reward`.
PLOTS: list[tuple[str, str, list[str]]] = [
    ("reward", "reward (weighted total)", ["reward"]),
    ("eval_accuracy", "held-out accuracy", ["eval/accuracy"]),
    ("kl", "KL to the reference", ["kl"]),
    ("completion_length", "completion length (tokens, mean)", ["completion_length/mean"]),
    ("clip_ratio", "share of tokens with the ratio clipped", ["clip_ratio/low", "clip_ratio/high"]),
    ("entropy", "entropy of the policy (nats per token)", ["entropy"]),
]
FIGSIZE = (6.4, 4.0)  # inches; at DPI 100 a 640 x 400 image
DPI = 100
# Above this many points the raw curve is drawn faint under a moving average; GRPO rewards are noisy per step.
SMOOTH_FROM = 20


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """metrics.jsonl as one record per step, sorted by step; a step logged twice (a resumed run repeats the
    steps after its checkpoint) keeps its last record."""
    by_step: dict[int, dict[str, Any]] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvaluationError(f"{path}:{number} is not JSON ({exc.msg})") from exc
            if isinstance(record, dict) and isinstance(record.get("step"), (int, float)):
                by_step[int(record["step"])] = record
    return [by_step[s] for s in sorted(by_step)]


def series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric, skipping steps where it is null, missing, NaN or not a number.

    >>> series([{"step": 1, "kl": 0.5}, {"step": 2, "kl": None}, {"step": 3}, {"step": 4, "kl": 1}], "kl")
    ([1, 4], [0.5, 1.0])
    """
    steps, values = [], []
    for record in records:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            steps.append(int(record["step"]))
            values.append(float(value))
    return steps, values


def run_config_file(run_dir: str | Path) -> Path:
    """The run's resolved config: config.resolved.yaml where the run left one (its config.yaml is the user's
    own, which training never overwrites), else config.yaml."""
    resolved = Path(run_dir) / "config.resolved.yaml"
    return resolved if resolved.is_file() else Path(run_dir) / "config.yaml"


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """A run's resolved config as nested dicts; {} when it is missing or unreadable (what needs it then says
    less)."""
    import yaml

    try:
        loaded = yaml.safe_load(run_config_file(run_dir).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def kl_note(records: list[dict[str, Any]], config: dict[str, Any]) -> str | None:
    """What the KL panel says instead of a curve when the run had no reference model, else None.

    With `algorithm.beta: 0` no reference model is loaded and the KL is not measured: a logged 0 (or null)
    is not a KL of 0. Without a config, a `kl` null at every step says the same.

    >>> kl_note([{"step": 1, "kl": 0.0}], {"algorithm": {"beta": 0}})
    'no reference model (beta = 0)'
    >>> kl_note([{"step": 1, "kl": None}], {}), kl_note([{"step": 1, "kl": 0.0}], {})
    ('no reference model (kl is null at every step)', None)
    """
    algorithm = config.get("algorithm")
    beta = algorithm.get("beta") if isinstance(algorithm, dict) else None
    if isinstance(beta, (int, float)) and not isinstance(beta, bool):
        return "no reference model (beta = 0)" if beta == 0 else None
    logged = [r for r in records if "kl" in r]
    if logged and all(r["kl"] is None for r in logged):
        return "no reference model (kl is null at every step)"
    return None


def plan_plots(
    records: list[dict[str, Any]], notes: dict[str, str] | None = None
) -> list[tuple[str, str, list[str]]]:
    """The plots that have data: `PLOTS` plus one per `rewards/<name>`, each keeping only keys with values;
    a plot named in `notes` is kept whatever its data (it is drawn as that note, not as a curve).

    >>> records = [{"step": 1, "reward": 1.0, "rewards/xml_format": 0.4, "kl": None}]
    >>> [name for name, _, _ in plan_plots(records)]
    ['reward', 'rewards_xml_format']
    """
    reward_keys = sorted({k for r in records for k in r if k.startswith("rewards/")})
    plans = (
        [PLOTS[0]]
        + [
            (f"rewards_{_file_safe(k[len('rewards/') :])}", f"reward: {k[len('rewards/') :]}", [k])
            for k in reward_keys
        ]
        + PLOTS[1:]
    )
    out = []
    for name, title, keys in plans:
        present = keys if name in (notes or {}) else [k for k in keys if series(records, k)[0]]
        if present:
            out.append((name, title, present))
    return out


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def moving_average(values: list[float], window: int) -> list[float]:
    """Mean of each value and the up to `window - 1` before it.

    >>> moving_average([1.0, 3.0, 5.0, 7.0], 2)
    [1.0, 2.0, 4.0, 6.0]
    """
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def draw(path: Path, title: str, records: list[dict[str, Any]], keys: list[str]) -> Path:
    """One PNG with a line per key against step, through the Agg canvas (no display, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for key in keys:
        steps, values = series(records, key)
        if len(values) >= SMOOTH_FROM:
            line = axes.plot(steps, values, alpha=0.3, linewidth=1, label=key)[0]
            window = max(5, len(values) // 20)
            axes.plot(
                steps,
                moving_average(values, window),
                color=line.get_color(),
                linewidth=2,
                label=f"{key}, moving mean of {window}",
            )
        else:
            axes.plot(steps, values, marker="o", markersize=3, label=key)
    axes.set_title(title)
    axes.set_xlabel("step")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    return path


def draw_note(path: Path, title: str, note: str) -> Path:
    """A panel with a title and one sentence instead of a curve: a flat line would read as a measurement."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.set_title(title)
    axes.text(0.5, 0.5, note, ha="center", va="center", fontsize="large", transform=axes.transAxes)
    figure.savefig(path)
    return path


def index_html(
    run_dir: Path,
    images: list[Path],
    config_text: str | None,
    skipped: list[str],
    captions: dict[str, str] | None = None,
) -> str:
    """A page with every plot and the run's config, so a run can be looked at in a browser in one place;
    `captions` by image stem (the KL panel's "no reference model")."""
    title = html.escape(run_dir.resolve().name)
    captions = captions or {}

    def figure(p: Path) -> str:
        caption = f"<figcaption>{html.escape(captions[p.stem])}</figcaption>" if p.stem in captions else ""
        return f'<figure><img src="{html.escape(p.name)}" alt="{html.escape(p.stem)}">{caption}</figure>'

    figures = "\n".join(figure(p) for p in images)
    config = (
        f"<pre>{html.escape(config_text)}</pre>"
        if config_text is not None
        else "<p>no config.yaml in the run directory</p>"
    )
    missing = f"<p>not logged in this run: {html.escape(', '.join(skipped))}</p>" if skipped else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}} figure{{display:inline-block;margin:0.5em}}
pre{{background:#f4f4f4;padding:1em;overflow:auto}}</style></head>
<body><h1>{title}</h1>
{figures}
{missing}
<h2>config.yaml</h2>
{config}
</body></html>
"""


def plot_run(run_dir: str | Path, output: str | Path | None = None) -> list[Path]:
    """Write a PNG per logged curve and index.html into `output` (default RUN_DIR/plots); return the paths."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.jsonl"
    if not metrics_path.is_file():
        raise EvaluationError(f"{metrics_path} does not exist: give a training output directory")
    records = read_metrics(metrics_path)
    plans = plan_plots(records)
    if not plans:
        raise EvaluationError(f"{metrics_path} holds no values to plot")
    no_reference = kl_note(records, read_run_config(run_dir))
    notes = {"kl": no_reference} if no_reference is not None else {}
    plans = plan_plots(records, notes)
    output = Path(output) if output is not None else run_dir / "plots"
    output.mkdir(parents=True, exist_ok=True)
    images = [
        draw_note(output / f"{name}.png", title, notes[name])
        if name in notes
        else draw(output / f"{name}.png", title, records, keys)
        for name, title, keys in plans
    ]
    drawn = {k for _, _, keys in plans for k in keys}
    skipped = [k for _, _, keys in PLOTS for k in keys if k not in drawn]
    config_path = run_config_file(run_dir)
    config_text = config_path.read_text(encoding="utf-8") if config_path.is_file() else None
    index = output / "index.html"
    index.write_text(index_html(run_dir, images, config_text, skipped, notes), encoding="utf-8")
    return [*images, index]
