"""rlvr's `accuracy` against OpenAI's own correctness labels on their GPT-3 GSM8K solutions (5,276 of them).

    python benchmarks/gsm8k_labels.py PATH/example_model_solutions.jsonl

The file is `grade_school_math/data/example_model_solutions.jsonl` of github.com/openai/grade-school-math (MIT, not
shipped with rlvr): 1,319 test questions, each with a worked ground truth ending in `A: N` and four model solutions
(6B and 175B, fine-tuned and verifier-ranked) with an `is_correct` label. Each solution is scored as it stands, a
whole completion, by `accuracy(prompts, completions, answer=[gold])` with the gold written as GSM8K writes it
(`#### N`). Prints the agreement with the labels, per model and in all, and every disagreement; exits 1 when there is
one, so that a change to extraction or equivalence can be checked against it. With `--math-verify`, also scores
each solution with math-verify used plainly, `verify(parse(answer), parse(solution))` with the final number as
the answer, and counts its agreement with the labels.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

MODELS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")


def load_cases(path: Path) -> list[tuple[str, str, str, bool]]:
    """`(model, gold, solution, is_correct)` for every model solution in the file."""
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        row = json.loads(line)
        head, _, final = row["ground_truth"].rpartition("\nA: ")
        if not head:
            raise SystemExit(
                f"{path}:{number}: the ground truth does not end in 'A: N'; is this the right file?"
            )
        gold = f"{head}\n#### {final.strip()}"
        cases.extend(
            (model, gold, row[model]["solution"], bool(row[model]["is_correct"])) for model in MODELS
        )
    return cases


def score_math_verify(cases: list[tuple[str, str, str, bool]]) -> list[bool]:
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its timeout warnings are not results
    return [
        bool(verify(parse(gold.rpartition("#### ")[2]), parse(solution))) for _, gold, solution, _ in cases
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("path", type=Path, help="example_model_solutions.jsonl from openai/grade-school-math")
    parser.add_argument("--math-verify", action="store_true", help="also score with math-verify used plainly")
    args = parser.parse_args()
    if not args.path.is_file():
        parser.error(f"{args.path} is not a file; get it from github.com/openai/grade-school-math")

    from rlvr.rewards import accuracy

    cases = load_cases(args.path)
    started = time.perf_counter()
    rewards = accuracy(
        prompts=["q"] * len(cases), completions=[c[2] for c in cases], answer=[c[1] for c in cases]
    )
    seconds = time.perf_counter() - started
    agree = [(reward == 1.0) == label for reward, (*_, label) in zip(rewards, cases, strict=True)]

    print("| model | solutions | labelled correct | rlvr agrees |")
    print("| --- | --- | --- | --- |")
    for model in MODELS:
        rows = [i for i, case in enumerate(cases) if case[0] == model]
        right = sum(cases[i][3] for i in rows)
        print(f"| {model} | {len(rows)} | {right} | {sum(agree[i] for i in rows)}/{len(rows)} |")
    print(f"| **all** | {len(cases)} | {sum(c[3] for c in cases)} | **{sum(agree)}/{len(cases)}** |")
    print(f"\nscored as one batch in {seconds:.1f} s")
    if args.math_verify:
        plain = score_math_verify(cases)
        plain_agree = sum(verdict == label for verdict, (*_, label) in zip(plain, cases, strict=True))
        print(f"math-verify used plainly agrees with the labels on {plain_agree}/{len(cases)}")
    for i in (i for i, ok in enumerate(agree) if not ok):
        model, gold, solution, label = cases[i]
        print(f"\ndisagreement {i} ({model}, labelled {'right' if label else 'wrong'}):")
        print(f"  gold: {gold.rpartition('#### ')[2]!r}\n  solution: {solution!r}")
    sys.exit(0 if all(agree) else 1)


if __name__ == "__main__":
    main()
