"""rlvr's `accuracy` against math-verify used plainly, on the competition-math table of tests/test_latex_answers.py.

    python benchmarks/latex_answers.py            # markdown: totals, timing, then the table case by case

Each case is a dataset gold, a whole completion and whether the completion is right. rlvr scores it with
`accuracy(prompts, completions, answer=[gold])`; math-verify with `verify(parse(gold), parse(completion))`, its
defaults (5 s signal timeouts, on the main thread), and once more with the gold put in math mode
(`parse(f"${gold}$")`), since its LaTeX parser reads only what is between delimiters. A verdict agrees when it
equals the case's label. rlvr is timed twice, its math-verify children started and its cache emptied each time, as
at a trainer's first batch: one `accuracy` call per case, and the whole table as one batch (one call, the
comparisons side by side, one child per core).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import time
from pathlib import Path

TABLE = Path(__file__).resolve().parent.parent / "tests" / "test_latex_answers.py"


def load_cases() -> list[tuple[str, str, str, bool]]:
    spec = importlib.util.spec_from_file_location("test_latex_answers", TABLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LATEX_CASES


def score_rlvr(cases: list[tuple[str, str, str, bool]]) -> tuple[list[bool], float, float]:
    from rlvr.rewards import accuracy
    from rlvr.rewards.symbolic import clear_cache

    clear_cache()
    verdicts, slowest = [], 0.0
    started = time.perf_counter()
    for _, gold, completion, _ in cases:
        call_started = time.perf_counter()
        verdicts.append(accuracy(prompts=["q"], completions=[completion], answer=[gold]) == [1.0])
        slowest = max(slowest, time.perf_counter() - call_started)
    return verdicts, time.perf_counter() - started, slowest


def start_children() -> None:
    from rlvr.rewards import math_equal_many

    # One comparison per child, side by side, so that every child has imported math-verify before timing.
    math_equal_many(
        [(rf"\sqrt{{{n}}}", rf"\sqrt{{{n}}}+0") for n in range(2, 2 + (os.cpu_count() or 2))], timeout=60
    )


def score_rlvr_batch(cases: list[tuple[str, str, str, bool]]) -> tuple[list[bool], float]:
    from rlvr.rewards import accuracy
    from rlvr.rewards.symbolic import clear_cache

    clear_cache()
    started = time.perf_counter()
    rewards = accuracy(
        prompts=["q"] * len(cases),
        completions=[c for _, _, c, _ in cases],
        answer=[g for _, g, _, _ in cases],
    )
    return [r == 1.0 for r in rewards], time.perf_counter() - started


def score_math_verify(
    cases: list[tuple[str, str, str, bool]], gold_in_math_mode: bool = False
) -> tuple[list[bool], float, float]:
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its timeout warnings are not results
    verify(parse(r"$\sqrt{2}$"), parse(r"$\sqrt{2}+0$"))  # import sympy's parsers before timing
    verdicts, slowest = [], 0.0
    started = time.perf_counter()
    for _, gold, completion, _ in cases:
        call_started = time.perf_counter()
        gold_text = f"${gold}$" if gold_in_math_mode else gold
        verdicts.append(bool(verify(parse(gold_text), parse(completion))))
        slowest = max(slowest, time.perf_counter() - call_started)
    return verdicts, time.perf_counter() - started, slowest


def cell(text: str, limit: int = 200) -> str:
    if len(text) > limit:  # a long worked solution: its end holds the answer
        return "… " + cell(text[-limit:])
    return "`" + text.replace("\n", "\\n").replace("|", "\\|") + "`"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.parse_args()
    cases = load_cases()
    labels = [correct for *_, correct in cases]
    start_children()
    batch, batch_seconds = score_rlvr_batch(cases)
    rlvr, rlvr_seconds, rlvr_slowest = score_rlvr(cases)
    differ = [i for i, (a, b) in enumerate(zip(batch, rlvr, strict=True)) if a != b]
    assert not differ, f"one batch and one call per case differ on cases {differ}"
    plain, plain_seconds, plain_slowest = score_math_verify(cases)
    wrapped, wrapped_seconds, wrapped_slowest = score_math_verify(cases, gold_in_math_mode=True)
    columns = {"rlvr": rlvr, "math-verify": plain, "math-verify, gold in `$`": wrapped}
    agree = {
        name: [v == label for v, label in zip(verdicts, labels, strict=True)]
        for name, verdicts in columns.items()
    }

    n = len(cases)
    print("| scorer | agrees with the label | whole table | slowest call |")
    print("| --- | --- | --- | --- |")
    print(
        f"| rlvr `accuracy`, one call per case | {sum(agree['rlvr'])}/{n} | {rlvr_seconds:.2f} s | {rlvr_slowest * 1000:.0f} ms |"
    )
    print(f"| rlvr `accuracy`, the table as one batch | {sum(agree['rlvr'])}/{n} | {batch_seconds:.2f} s | |")
    print(
        f"| `verify(parse(gold), parse(pred))` | {sum(agree['math-verify'])}/{n} | {plain_seconds:.2f} s | {plain_slowest * 1000:.0f} ms |"
    )
    print(
        f'| `verify(parse(f"${{gold}}$"), parse(pred))` | {sum(agree["math-verify, gold in `$`"])}/{n} '
        f"| {wrapped_seconds:.2f} s | {wrapped_slowest * 1000:.0f} ms |\n"
    )
    print("| class | cases | " + " | ".join(columns) + " |")
    print("| --- | --- |" + " --- |" * len(columns))
    for kind in dict.fromkeys(kind for kind, *_ in cases):
        rows = [i for i, case in enumerate(cases) if case[0] == kind]
        print(
            f"| {kind} | {len(rows)} | "
            + " | ".join(str(sum(agree[name][i] for i in rows)) for name in columns)
            + " |"
        )
    print(f"| **total** | {n} | " + " | ".join(f"**{sum(agree[name])}**" for name in columns) + " |")
    print("\n| # | class | gold | completion | right? | " + " | ".join(columns) + " |")
    print("| --- | --- | --- | --- | --- |" + " --- |" * len(columns))
    for i, (kind, gold, completion, correct) in enumerate(cases):
        marks = " | ".join(
            ("" if agree[name][i] else "**✗** ") + ("right" if columns[name][i] else "wrong")
            for name in columns
        )
        print(
            f"| {i} | {kind} | {cell(gold)} | {cell(completion)} | {'yes' if correct else 'no'} | {marks} |"
        )


if __name__ == "__main__":
    main()
