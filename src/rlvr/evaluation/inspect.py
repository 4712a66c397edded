"""Reading a run's completions.jsonl: the best and worst completions per step, and what looks like reward
hacking.

Flags, per completion:
- `rewarded_wrong_answer`: some reward paid (> 0) for an answer that is wrong by rlvr's own check (the answer
  extracted with `extract_answer` is not `math_equal` to the gold); a format reward climbing on wrong answers
  is the commonest hack.
- `copies_question`: the completion repeats a long stretch of the question word for word.
- `repetition`: the completion repeats itself (a large share of its 4-grams are repeats).
And per run, from metrics.jsonl: `reward_up_eval_down`, the training reward rose while held-out accuracy fell
by more than the noise of one evaluation.
"""

from __future__ import annotations

import json
import math
import re
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

from rlvr.evaluation.evaluate import EvaluationError

FLAGS = ("rewarded_wrong_answer", "copies_question", "repetition")
# copies_question: at least this many consecutive question words, and at least this share of the question.
COPY_MIN_WORDS = 8
COPY_MIN_SHARE = 0.5
# repetition: the share of repeated word 4-grams, counted once the completion has enough 4-grams to judge.
REPEAT_NGRAM = 4
REPEAT_MIN_NGRAMS = 12
REPEAT_MIN_SHARE = 0.4
# reward_up_eval_down: rewards are averaged over this many logged steps up to each evaluation.
REWARD_WINDOW = 5

_WORDS = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens.

    >>> words("Natalia sold 48 clips, then 24.")
    ['natalia', 'sold', '48', 'clips', ',', 'then', '24', '.']
    """
    return _WORDS.findall(str(text).lower())


def longest_common_run(a: list[str], b: list[str]) -> int:
    """Length of the longest run of tokens that `a` and `b` share.

    >>> longest_common_run("a b c d e".split(), "x b c d y".split())
    3
    """
    if not a or not b:
        return 0
    return SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b)).size


def copied_question_words(completion: str, question: str) -> int | None:
    """The longest stretch of the question (in words) found in the completion, when it is long enough to flag.

    >>> q = "Natalia sold clips to 48 of her friends in April and half as many in May"
    >>> copied_question_words(q + " so 72", q), copied_question_words("48 + 24 = 72", q)
    (16, None)
    """
    question_words = words(question)
    run = longest_common_run(words(completion), question_words)
    if run >= COPY_MIN_WORDS and run >= COPY_MIN_SHARE * len(question_words):
        return run
    return None


def repeated_share(text: str, n: int = REPEAT_NGRAM) -> float | None:
    """Share of the text's word n-grams that repeat an earlier one; None when it has too few to judge.

    >>> round(repeated_share("the answer is 5 . " * 4), 4)  # 17 4-grams, 5 distinct: 12 / 17
    0.7059
    >>> repeated_share("short text") is None
    True
    """
    tokens = words(text)
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if len(grams) < REPEAT_MIN_NGRAMS:
        return None
    return 1 - len(set(grams)) / len(grams)


def analyse_completion(record: dict[str, Any]) -> dict[str, Any]:
    """The extracted answer, whether it is right (None without a gold answer), and the flags of one
    completions.jsonl record with their reasons.

    >>> r = analyse_completion({"prompt": "2+3?", "completion": "<answer>6</answer>", "answer": "5",
    ...                         "rewards": {"xml_format": 0.4, "accuracy": 0.0}})
    >>> r["correct"], r["flags"]
    (False, {'rewarded_wrong_answer': 'xml_format=0.4 paid for 6 (gold 5)'})
    """
    from rlvr.rewards import extract_answer, math_equal

    text = str(record.get("completion") or "")
    gold = record.get("answer")
    extracted = extract_answer(text, "auto")
    golds = gold if isinstance(gold, list) else [gold]  # several acceptable golds: any of them counts
    correct = None if gold is None else extracted is not None and any(math_equal(extracted, g) for g in golds)
    flags: dict[str, str] = {}
    paid = {k: v for k, v in (record.get("rewards") or {}).items() if isinstance(v, (int, float)) and v > 0}
    if correct is False and paid:
        shown = ", ".join(f"{k}={v:g}" for k, v in paid.items())
        flags["rewarded_wrong_answer"] = (
            f"{shown} paid for {extracted if extracted is not None else 'no answer'} (gold {gold})"
        )
    copied = copied_question_words(text, record.get("prompt") or "")
    if copied is not None:
        flags["copies_question"] = f"{copied} consecutive words of the question"
    share = repeated_share(text)
    if share is not None and share >= REPEAT_MIN_SHARE:
        flags["repetition"] = f"{share:.0%} of its {REPEAT_NGRAM}-grams are repeats"
    return {"extracted": extracted, "correct": correct, "flags": flags}


def reward_eval_divergence(
    metrics: list[dict[str, Any]], window: int = REWARD_WINDOW
) -> dict[str, Any] | None:
    """Did the training reward rise while held-out accuracy fell? None without two evaluations.

    Compares the last evaluation with the best one before it: flagged when accuracy dropped by more than
    twice the standard error of one evaluation, 2 * sqrt(p (1 - p) / n) with n = `eval/num_problems` (any
    drop when it is not logged), while the reward, averaged over the `window` logged steps up to each, rose.
    """

    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    evals = [r for r in metrics if number(r.get("eval/accuracy"))]
    if len(evals) < 2:
        return None

    def reward_up_to(step: int) -> float | None:
        values = [r["reward"] for r in metrics if r["step"] <= step and number(r.get("reward"))][-window:]
        return sum(values) / len(values) if values else None

    last = evals[-1]
    peak = max(evals[:-1], key=lambda r: r["eval/accuracy"])
    p, n = peak["eval/accuracy"], last.get("eval/num_problems")
    margin = 2 * math.sqrt(max(p * (1 - p), 0.0) / n) if number(n) and n > 0 else 0.0
    reward_peak, reward_last = reward_up_to(peak["step"]), reward_up_to(last["step"])
    dropped = last["eval/accuracy"] < p - margin
    rose = reward_peak is not None and reward_last is not None and reward_last > reward_peak
    return {
        "flagged": dropped and rose,
        "peak_step": peak["step"],
        "peak_accuracy": p,
        "last_step": last["step"],
        "last_accuracy": last["eval/accuracy"],
        "margin": margin,
        "reward_at_peak": reward_peak,
        "reward_at_last": reward_last,
    }


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise EvaluationError(f"{path}:{number} is not JSON ({exc.msg})") from exc
    return records


def _entry(index: int, record: dict[str, Any], analysis: dict[str, Any]) -> dict[str, Any]:
    return {
        "line": index + 1,
        "step": record.get("step"),
        "reward": record.get("reward"),
        "rewards": record.get("rewards"),
        "answer": record.get("answer"),
        **analysis,
        "length": record.get("length"),
        "truncated": record.get("truncated"),
        "prompt": record.get("prompt"),
        "completion": record.get("completion"),
        "episode": record.get("episode"),
    }


def inspect_run(
    run_dir: str | Path, step: int | None = None, last: int = 5, top: int = 2, examples: int = 3
) -> dict[str, Any]:
    """The report on a run directory: flag counts over all steps, the reward/held-out divergence, and for the
    shown steps (`step`, else the `last` ones; 0 for all) the `top` best and worst completions."""
    run_dir = Path(run_dir)
    path = run_dir / "completions.jsonl"
    if not run_dir.is_dir():
        raise EvaluationError(
            f"{run_dir} does not exist or is not a directory: give a training output directory"
        )
    records = read_jsonl(path) if path.is_file() else []
    if not records:
        raise EvaluationError(_no_completions(run_dir))
    entries = [_entry(i, r, analyse_completion(r)) for i, r in enumerate(records)]
    steps = sorted({e["step"] for e in entries if e["step"] is not None})
    if step is not None:
        if step not in steps:
            raise EvaluationError(f"step {step} has no completions in {path}; logged steps: {_ranges(steps)}")
        shown = [step]
    else:
        shown = steps[-last:] if last else steps
    per_step = []
    for s in shown:
        group = [e for e in entries if e["step"] == s]
        ranked = sorted(group, key=lambda e: -_reward(e))
        rewards = [e["reward"] for e in group if isinstance(e["reward"], (int, float))]
        per_step.append(
            {
                "step": s,
                "count": len(group),
                "mean_reward": sum(rewards) / len(rewards) if rewards else None,
                "flag_counts": {f: sum(f in e["flags"] for e in group) for f in FLAGS},
                "best": ranked[:top],
                "worst": ranked[::-1][:top] if len(ranked) > top else [],
            }
        )
    metrics_path = run_dir / "metrics.jsonl"
    divergence = None
    if metrics_path.is_file():
        from rlvr.evaluation.plot import read_metrics

        divergence = reward_eval_divergence(read_metrics(metrics_path))
    flagged = [e for e in entries if e["flags"]]
    return {
        "run_dir": str(run_dir),
        "num_completions": len(entries),
        "steps": steps,
        "flag_counts": {f: sum(f in e["flags"] for e in entries) for f in FLAGS},
        "reward_up_eval_down": divergence,
        "shown_steps": per_step,
        "examples": {f: [e for e in flagged if f in e["flags"]][-examples:] for f in FLAGS},
        "flagged": [{"line": e["line"], "step": e["step"], "flags": e["flags"]} for e in flagged],
    }


def _no_completions(run_dir: Path) -> str:
    """Why a directory has no completions to show: not a run, a run too short to have logged any, or a run
    that logs none."""
    config_path, metrics_path = run_dir / "config.yaml", run_dir / "metrics.jsonl"
    if not config_path.is_file() and not metrics_path.is_file():
        return (
            f"{run_dir / 'completions.jsonl'} does not exist and {run_dir} holds no config.yaml or "
            "metrics.jsonl: give a training output directory (training.output_dir)"
        )
    from rlvr.evaluation.plot import read_run_config

    training = read_run_config(run_dir).get("training")
    training = training if isinstance(training, dict) else {}
    every, max_steps = training.get("log_completions_steps"), training.get("max_steps")
    if every == 0:
        return (
            f"{run_dir}: training.log_completions_steps = 0: this run logs no completions; train with "
            "training.log_completions_steps=N to log them every N steps"
        )
    step = _last_step(run_dir)
    reached = f"the run has reached step {step}" if step else "the run has no steps logged yet"
    if isinstance(max_steps, int):
        reached += f" of {max_steps}"
    if not isinstance(every, int) or every < 0:
        unknown = "config.yaml gives no training.log_completions_steps"
        return f"{run_dir}: no completions logged yet: {reached} ({unknown})"
    said = f"{run_dir}: no completions logged yet: training.log_completions_steps = {every} and {reached}"
    if isinstance(max_steps, int) and max_steps < every:
        return f"{said}, so it will log none; set training.log_completions_steps to {max_steps} or less"
    if step < every:
        return f"{said}; the first are logged at step {every}"
    return f"{said}, yet {run_dir / 'completions.jsonl'} holds none: was it moved or deleted?"


def _last_step(run_dir: Path) -> int:
    """The newest step a run has logged in metrics.jsonl or checkpointed; 0 for none. A line being written
    (a run still training) or a damaged one is skipped."""
    steps = [0]
    try:
        lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            steps.append(record["step"])
    steps += [
        int(p.name.split("-")[1]) for p in run_dir.glob("checkpoint-*") if p.name.split("-")[1].isdigit()
    ]
    return max(steps)


def _reward(entry: dict[str, Any]) -> float:
    value = entry.get("reward")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else -math.inf


def _ranges(steps: list[int]) -> str:
    return f"{steps[0]}..{steps[-1]} ({len(steps)} steps)" if steps else "none"


def preview(text: Any, max_chars: int) -> str:
    """The text on one line, its start and end kept when too long (the answer is at the end).

    >>> preview("first line\\nsecond line", 100)
    'first line ⏎ second line'
    >>> preview("a" * 10 + "b" * 10, 15)  # 10 from the start, " … ", 2 from the end
    'aaaaaaaaaa … bb'
    """
    flat = " ⏎ ".join(str(text).splitlines()) if text is not None else ""
    if len(flat) <= max_chars:
        return flat
    head = max_chars * 2 // 3
    tail = max_chars - head - 3
    return flat[:head] + " … " + (flat[-tail:] if tail > 0 else "")


def _describe(entry: dict[str, Any], max_chars: int) -> list[str]:
    rewards = ", ".join(
        f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}=null"
        for k, v in (entry.get("rewards") or {}).items()
    )
    verdict = {True: "right", False: "wrong", None: "no gold"}[entry["correct"]]
    reward = entry["reward"]
    answer = preview(entry["extracted"], 40) if entry["extracted"] is not None else "none"
    parts = [
        f"reward {reward:.3g} ({rewards})"
        if isinstance(reward, (int, float))
        else f"reward null ({rewards})",
        f"answer {answer} vs gold {entry['answer']} ({verdict})",
        f"{entry['length']} tokens" + (", truncated" if entry.get("truncated") else ""),
    ]
    head = " | ".join(parts)
    lines = [head, *conversation(entry["episode"], max_chars)] if entry.get("episode") else [head]
    if not entry.get("episode"):
        lines.append(f"    {preview(entry['completion'], max_chars)}")
    for flag, why in entry["flags"].items():
        lines.append(f"    ! {flag}: {why}")
    return lines


def conversation(episode: dict[str, Any], max_chars: int) -> list[str]:
    """An episode's lines: how it went, then every message after the prompt, the model's own replies (the
    only tokens that trained) marked `trained`, the environment's (tool results, feedback) marked `env`.

    >>> episode = {"turns": 2, "tool_calls": 1, "tool_errors": 0, "truncation": None, "done": True,
    ...            "messages": [{"role": "assistant", "content": "<tool_call>...</tool_call>"},
    ...                         {"role": "tool", "name": "calculate", "content": "42"},
    ...                         {"role": "assistant", "content": "\\boxed{42}"}]}
    >>> for line in conversation(episode, 80):
    ...     print(line)
        episode: 2 turns, 1 tool calls (0 errors), done
        [trained] assistant: <tool_call>...</tool_call>
        [env]     tool calculate: 42
        [trained] assistant: \boxed{42}
    """
    ended = "done" if episode.get("done") else f"ended by {episode.get('truncation') or 'the environment'}"
    lines = [
        f"    episode: {episode.get('turns')} turns, {episode.get('tool_calls', 0)} tool calls "
        f"({episode.get('tool_errors', 0)} errors), {ended}"
    ]
    for message in episode.get("messages") or []:
        role = message.get("role")
        who = f"{role} {message['name']}" if message.get("name") else role
        mark = "[trained]" if role == "assistant" else "[env]    "
        lines.append(f"    {mark} {who}: {preview(message.get('content'), max_chars)}")
    return lines


def format_report(report: dict[str, Any], max_chars: int = 300) -> str:
    """The report as compact text."""
    total = max(report["num_completions"], 1)
    lines = [
        f"run: {report['run_dir']} ({report['num_completions']} completions, steps "
        f"{_ranges(report['steps'])})"
    ]
    counts = ", ".join(f"{f} {n} ({n / total:.1%})" for f, n in report["flag_counts"].items())
    lines.append(f"flags over all steps: {counts}")
    d = report["reward_up_eval_down"]
    if d is None:
        lines.append(
            "held-out: fewer than two eval/accuracy values in metrics.jsonl; reward_up_eval_down not checked"
        )
    else:
        trend = (
            f"eval/accuracy {d['peak_accuracy']:.3f} at step {d['peak_step']} (its best) -> "
            f"{d['last_accuracy']:.3f} at step {d['last_step']} (noise margin {d['margin']:.3f}); reward "
            f"{_number(d['reward_at_peak'])} -> {_number(d['reward_at_last'])}"
        )
        if d["flagged"]:
            lines.append(
                f"! reward_up_eval_down: {trend}. Reward rose while held-out accuracy fell: the policy "
                "may be learning the reward, not the task."
            )
        else:
            lines.append(f"held-out: {trend}; no reward_up_eval_down")
    shown = report["shown_steps"]
    if len(shown) < len(report["steps"]):
        lines.append(
            f"(showing {len(shown)} of {len(report['steps'])} steps; --step S or --last 0 for others)"
        )
    for s in shown:
        flagged = ", ".join(f"{f} {n}" for f, n in s["flag_counts"].items() if n) or "none"
        lines += [
            "",
            f"step {s['step']}: {s['count']} completions, mean reward {_number(s['mean_reward'])}, "
            f"flagged: {flagged}",
        ]
        for label, group in (("best", s["best"]), ("worst", s["worst"])):
            for entry in group:
                first, *rest = _describe(entry, max_chars)
                lines.append(f"  {label:<5} {first}")
                lines += [f"  {line}" for line in rest]
    for flag, entries in report["examples"].items():
        if entries:
            lines += ["", f"{flag}: latest {len(entries)} of {report['flag_counts'][flag]}"]
            for entry in entries:
                first, *rest = _describe(entry, max_chars)
                lines.append(f"  step {entry['step']} line {entry['line']}: {first}")
                lines += [f"  {line}" for line in rest]
    return "\n".join(lines)


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "n/a"
