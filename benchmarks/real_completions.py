"""rlvr's `accuracy` against math-verify used plainly, on real model completions already kept in docs/results/.

    python benchmarks/real_completions.py                     # every predictions.jsonl / completions.jsonl there
    python benchmarks/real_completions.py FILE... --show 40   # chosen files; print up to 40 disagreements

Each record holds a gold (`gold`, or `answer` in a training log) and a whole completion. rlvr scores it with
`accuracy(prompts, completions, answer=[gold])`, the whole set as one batch; math-verify as its README shows,
`verify(parse(gold), parse(completion))`, with its defaults. Prints, per file and in all, how many completions
each calls right and how often they disagree, then the distinct disagreements (gold, rlvr's extracted answer, the
completion's end) for a reader to judge. Nothing is generated: these are the completions the runs wrote.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"


def load(path: Path) -> list[tuple[str, str]]:
    """`(gold, completion)` of every record of a predictions or training-completions file."""
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        row = json.loads(line)
        gold = row.get("gold", row.get("answer"))
        if gold is None or not isinstance(row.get("completion"), str):
            raise SystemExit(f"{path}:{number}: no gold or no completion; is this a predictions file?")
        records.append((str(gold), row["completion"]))
    return records


def score_math_verify(records: list[tuple[str, str]]) -> list[bool]:
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its timeout warnings are not results
    return [bool(verify(parse(gold), parse(completion))) for gold, completion in records]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "files", nargs="*", type=Path, help="default: docs/results/**/{predictions,completions}.jsonl"
    )
    parser.add_argument(
        "--show", type=int, default=1000, help="print at most this many distinct disagreements"
    )
    args = parser.parse_args()
    files = args.files or sorted(
        [*RESULTS.rglob("predictions.jsonl"), *RESULTS.rglob("completions.jsonl")], key=str
    )
    if not files:
        parser.error(f"no predictions.jsonl or completions.jsonl under {RESULTS}")

    from rlvr.rewards import accuracy, extract_answer

    print("| file | completions | rlvr right | math-verify right | disagree |")
    print("| --- | --- | --- | --- | --- |")
    disagreements: dict[tuple[str, str], bool] = {}  # (gold, completion) -> rlvr's verdict
    distinct: set[tuple[str, str]] = set()
    totals = [0, 0, 0, 0]
    seconds = {"rlvr": 0.0, "math-verify": 0.0}
    for path in files:
        records = load(path)
        distinct.update(records)
        started = time.perf_counter()
        rewards = accuracy(
            prompts=["q"] * len(records), completions=[c for _, c in records], answer=[g for g, _ in records]
        )
        seconds["rlvr"] += time.perf_counter() - started
        rlvr = [reward == 1.0 for reward in rewards]
        started = time.perf_counter()
        plain = score_math_verify(records)
        seconds["math-verify"] += time.perf_counter() - started
        differ = [i for i, (a, b) in enumerate(zip(rlvr, plain, strict=True)) if a != b]
        disagreements.update((records[i], rlvr[i]) for i in differ)
        name = path.relative_to(RESULTS) if path.is_relative_to(RESULTS) else path
        counts = (len(records), sum(rlvr), sum(plain), len(differ))
        print(f"| {name} | " + " | ".join(map(str, counts)) + " |")
        totals = [total + count for total, count in zip(totals, counts, strict=True)]
    print("| **all** | " + " | ".join(map(str, totals)) + " |")
    print(f"\n{len(distinct)} distinct (gold, completion) pairs")
    print(
        f"scoring time: rlvr {seconds['rlvr']:.1f} s (one batch per file), math-verify {seconds['math-verify']:.1f} s"
    )
    rlvr_right = sum(disagreements.values())
    print(
        f"\n{len(disagreements)} distinct disagreements: rlvr says right and math-verify wrong on {rlvr_right}, "
        f"the other way round on {len(disagreements) - rlvr_right}\n"
    )
    for n, ((gold, completion), verdict) in enumerate(list(disagreements.items())[: args.show]):
        read = extract_answer(completion)
        print(
            f"[{n}] gold {gold!r}: rlvr says {'right' if verdict else 'wrong'} (reads {read!r}), math-verify not"
        )
        print(f"    ...{completion[-240:]!r}")


if __name__ == "__main__":
    main()
