"""One GRPO step, rlvr (with each rollout engine) against TRL's GRPOTrainer, on identical work.

    python benchmarks/grpo_step.py --quick          # both dtypes; rlvr+hf, rlvr+vllm (when installed), TRL
    python benchmarks/grpo_step.py --rounds 3 --steps 3 --dtypes bfloat16
    python benchmarks/grpo_step.py --systems rlvr,rlvr-vllm,trl,trl-vllm   # TRL with use_vllm too
    python benchmarks/grpo_step.py --growth          # rlvr alone: time and memory against G and length

Both systems train the prepared SmolLM2-135M-Instruct on the same two GSM8K prompts every step (boxed
template), with the same G, batch, completion length (both forced to generate exactly
--completion-length tokens: EOS is suppressed until then), dtype, beta, mu and number of optimizer steps.
Each run is a fresh child process (so peak resident memory is that system's alone); runs alternate
between the systems after one warm-up step inside each child (a vLLM engine's start-up and compilation are
not in any step). Systems: `rlvr` (its own decode loop, generation.engine=hf), `rlvr-vllm` (vLLM colocated,
weights pushed every step), `trl`, `trl-vllm` (TRL with use_vllm=True, vllm_mode=colocate; reported as not
run, with its error, where it fails). Reported per system: median seconds per
step (min/max), completion tokens per second, seconds in generation / log-probs / loss forward+backward,
peak resident memory; then the ratios. The last line is `step_time_ratio rlvr/trl = R` for the first dtype.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL = "smollm2-135m-instruct"
SYSTEMS = ["rlvr", "rlvr-vllm", "trl", "trl-vllm"]


def gsm8k_prompts(count: int) -> list[dict]:
    from rlvr.data import load_problems

    return load_problems("gsm8k", "train", limit=count)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# ----------------------------------------------------------------------------------------- rlvr side
def run_rlvr(args: argparse.Namespace, engine: str = "hf") -> dict:
    import functools

    import torch

    import rlvr.rollout.engine as engine_module
    from rlvr import GRPOConfig, GRPOTrainer
    from rlvr.models import prepare_model

    torch.set_num_threads(args.threads)
    # Fixed-length completions for a fair comparison: EOS is suppressed until the last token.
    engine_module.sample = functools.partial(engine_module.sample, force_full_length=True)
    if engine == "vllm":
        import rlvr.rollout.vllm_engine as vllm_module

        params = vllm_module.sampling_params
        vllm_module.sampling_params = lambda *a, **k: params(*a[:5], force_full_length=True)
    rows = gsm8k_prompts(args.prompts) * (args.steps + 1)
    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig.from_dict(
            {
                "model": {"name_or_path": str(prepare_model(MODEL))},
                "data": {"template": "boxed", "shuffle": False, "max_prompt_length": 512},
                "generation": {
                    "num_generations": args.num_generations,
                    "max_completion_length": args.completion_length,
                    "temperature": 1.0,
                    "engine": engine,
                },
                "rewards": {"functions": ["accuracy"]},
                "algorithm": {"beta": args.beta, "mu": args.mu},
                "training": {
                    "output_dir": out,
                    "max_steps": args.steps + 1,
                    "batch_size": args.prompts * args.num_generations,
                    "learning_rate": 1e-6,
                    "bf16": args.dtype == "bfloat16",
                    "log_completions_steps": 0,
                    "save_steps": 0,
                    "seed": 0,
                },
            }
        )
        trainer = GRPOTrainer(config, train_dataset=rows)
        trainer.save_final = lambda: Path(out)  # the benchmark times steps, not the final save
        trainer.train()
        metrics = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()][1:]
    return {
        "step_seconds": [m["step_seconds"] for m in metrics],
        "generate": [m["timing/generate"] for m in metrics],
        "logps": [m["timing/logps"] for m in metrics],
        "update": [m["timing/update"] for m in metrics],
        "sync": [m.get("timing/sync_weights", 0.0) for m in metrics],
        "completion_tokens": [
            m["completion_length/mean"] * args.prompts * args.num_generations for m in metrics
        ],
        "peak_rss_mb": peak_rss_mb(),
    }


# ------------------------------------------------------------------------------------------ TRL side
def run_trl(args: argparse.Namespace, use_vllm: bool = False) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rlvr.data import build_messages
    from rlvr.models import prepare_model
    from rlvr.rewards import accuracy

    torch.set_num_threads(args.threads)
    rows = (
        [
            {"prompt": build_messages(r["question"], "boxed"), "answer": r["answer"]}
            for r in gsm8k_prompts(args.prompts)
        ]
        * (args.steps + 1)
        * args.num_generations
    )
    timings = {"generate": 0.0, "logps": 0.0}

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.steps: list[dict] = []

        def on_step_begin(self, *a, **k):
            timings.update(generate=0.0, logps=0.0)
            self.started = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.steps.append({"step_seconds": time.perf_counter() - self.started, **timings})

    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(
            output_dir=out,
            max_steps=args.steps + 1,
            per_device_train_batch_size=args.prompts * args.num_generations,
            num_generations=args.num_generations,
            max_completion_length=args.completion_length,
            temperature=1.0,
            generation_kwargs={"min_tokens" if use_vllm else "min_new_tokens": args.completion_length},
            **(
                {"use_vllm": True, "vllm_mode": "colocate", "vllm_enable_sleep_mode": False}
                if use_vllm
                else {}
            ),
            beta=args.beta,
            num_iterations=args.mu,
            learning_rate=1e-6,
            bf16=args.dtype == "bfloat16",
            use_cpu=True,
            report_to="none",
            logging_steps=1,
            save_strategy="no",
            seed=0,
            disable_dropout=True,
            shuffle_dataset=False,
        )
        timer = StepTimer()
        trainer = GRPOTrainer(
            model=str(prepare_model(MODEL)),
            reward_funcs=accuracy,
            args=config,
            train_dataset=Dataset.from_list(rows),
            callbacks=[timer],
        )
        generate = trainer.model.generate

        def timed_generate(*a, **k):
            started = time.perf_counter()
            try:
                return generate(*a, **k)
            finally:
                timings["generate"] += time.perf_counter() - started

        if use_vllm:  # TRL's colocated engine
            llm = trainer.vllm_generation.llm
            llm_generate = llm.generate

            def timed_llm(*a, **k):
                started = time.perf_counter()
                try:
                    return llm_generate(*a, **k)
                finally:
                    timings["generate"] += time.perf_counter() - started

            llm.generate = timed_llm
        else:
            trainer.model.generate = timed_generate
        logps = trainer._get_per_token_logps_and_entropies

        def timed_logps(*a, **k):  # only the no-grad calls (old / reference log-probs) count here
            started = time.perf_counter()
            try:
                return logps(*a, **k)
            finally:
                if not torch.is_grad_enabled():
                    timings["logps"] += time.perf_counter() - started

        trainer._get_per_token_logps_and_entropies = timed_logps
        trainer.train()
    steps = timer.steps[1:]
    return {
        "step_seconds": [s["step_seconds"] for s in steps],
        "generate": [s["generate"] for s in steps],
        "logps": [s["logps"] for s in steps],
        "update": [s["step_seconds"] - s["generate"] - s["logps"] for s in steps],
        "sync": [0.0 for _ in steps],
        "completion_tokens": [args.completion_length * args.prompts * args.num_generations] * len(steps),
        "peak_rss_mb": peak_rss_mb(),
    }


# ------------------------------------------------------------------------------------------- parent
def child(system: str, dtype: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        system,
        "--dtype",
        dtype,
        "--steps",
        str(args.steps),
        "--prompts",
        str(args.prompts),
        "--num-generations",
        str(args.num_generations),
        "--completion-length",
        str(args.completion_length),
        "--beta",
        str(args.beta),
        "--mu",
        str(args.mu),
        "--threads",
        str(args.threads),
    ]
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        env = {**os.environ, "RLVR_BENCH_RESULT": result.name, "TQDM_DISABLE": "1"}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            if system.endswith("vllm"):  # reported, not fatal: whether a vLLM mode runs here is a finding
                lines = [line for line in proc.stderr.splitlines() if line.strip()]
                return {"error": next((line for line in reversed(lines) if "Error" in line), lines[-1])}
            raise SystemExit(f"{system} {dtype} failed:\n{proc.stderr[-4000:]}")
        return json.loads(Path(result.name).read_text())


def summarise(runs: list[dict]) -> dict:
    errors = [run["error"] for run in runs if "error" in run]
    if errors:
        return {"error": errors[0]}

    def pool(key: str) -> list[float]:
        return [v for run in runs for v in run[key]]

    steps = pool("step_seconds")
    return {
        "median_s": statistics.median(steps),
        "min_s": min(steps),
        "max_s": max(steps),
        "n": len(steps),
        "tokens_per_s": statistics.median(t / s for t, s in zip(pool("completion_tokens"), steps)),
        "generate_s": statistics.median(pool("generate")),
        "logps_s": statistics.median(pool("logps")),
        "update_s": statistics.median(pool("update")),
        "sync_s": statistics.median(pool("sync")),
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
    }


GROWTH_G = (4, 8, 16)
GROWTH_C = (64, 128, 256, 512)


def growth(args: argparse.Namespace, dtype: str) -> dict:
    """rlvr alone: step time and peak memory for every G x completion length, one prompt per step."""
    table = {}
    for g in GROWTH_G:
        for c in GROWTH_C:
            cell = argparse.Namespace(
                **{**vars(args), "prompts": 1, "num_generations": g, "completion_length": c}
            )
            started = time.perf_counter()
            table[(g, c)] = summarise([child("rlvr", dtype, cell)])
            print(f"  G={g} C={c}: run done in {time.perf_counter() - started:.0f} s", flush=True)
    print(f"rlvr {dtype}, 1 prompt x G generations x C tokens, median s per step / peak MB:")
    print("G \\ C " + "".join(f"{c:>16}" for c in GROWTH_C))
    for g in GROWTH_G:
        cells = "".join(
            f"{table[g, c]['median_s']:>9.2f} /{table[g, c]['peak_rss_mb']:>5.0f}" for c in GROWTH_C
        )
        print(f"{g:<6}" + cells)
    for g in GROWTH_G:  # time ~ C^k: the slope of log time against log C, end points
        k = math.log(table[g, GROWTH_C[-1]]["median_s"] / table[g, GROWTH_C[0]]["median_s"]) / math.log(
            GROWTH_C[-1] / GROWTH_C[0]
        )
        print(f"G={g}: step time grows as C^{k:.2f} from C={GROWTH_C[0]} to {GROWTH_C[-1]}")
    for c in GROWTH_C:
        k = math.log(table[GROWTH_G[-1], c]["median_s"] / table[GROWTH_G[0], c]["median_s"]) / math.log(
            GROWTH_G[-1] / GROWTH_G[0]
        )
        print(f"C={c}: step time grows as G^{k:.2f} from G={GROWTH_G[0]} to {GROWTH_G[-1]}")
    return {f"G={g},C={c}": s for (g, c), s in table.items()}


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    import torch
    import transformers
    import trl

    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, trl {trl.__version__}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 round x 2 measured steps per system and dtype"
    )
    parser.add_argument("--dtypes", default="bfloat16,float32", help="comma list; the first is the headline")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rlvr/TRL runs per dtype")
    parser.add_argument("--steps", type=int, default=3, help="measured steps per run (after 1 warm-up step)")
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--completion-length", type=int, default=128)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--mu", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument(
        "--growth",
        action="store_true",
        help="rlvr alone: step time and peak memory for G = 4, 8, 16 x completion length 64 to 512 "
        "(first of --dtypes, 1 prompt, 1 measured step each), with the fitted growth",
    )
    parser.add_argument(
        "--systems",
        default=None,
        help="comma list of rlvr, rlvr-vllm, trl, trl-vllm (default: rlvr, rlvr-vllm when vLLM is installed, trl)",
    )
    parser.add_argument("--child", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="bfloat16", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child.startswith("rlvr"):
            result = run_rlvr(args, "vllm" if args.child == "rlvr-vllm" else "hf")
        else:
            result = run_trl(args, use_vllm=args.child == "trl-vllm")
        Path(os.environ["RLVR_BENCH_RESULT"]).write_text(json.dumps(result))
        return 0
    if args.quick:
        args.rounds, args.steps = 1, 2
    dtypes = args.dtypes.split(",")
    print(f"machine: {machine()}")
    if args.growth:
        args.steps = 1
        table = growth(args, dtypes[0])
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": machine(), "growth": table}, indent=2))
        return 0
    print(
        f"work: {args.prompts} prompts x {args.num_generations} generations x {args.completion_length} tokens, "
        f"beta={args.beta}, mu={args.mu}, {args.rounds} round(s) x {args.steps} measured steps per system"
    )
    import importlib.util

    has_vllm = importlib.util.find_spec("vllm") is not None
    systems = (
        args.systems.split(",") if args.systems else ["rlvr", *(["rlvr-vllm"] if has_vllm else []), "trl"]
    )
    results: dict = {}
    for dtype in dtypes:
        runs: dict[str, list[dict]] = {system: [] for system in systems}
        for _ in range(args.rounds):
            for system in systems:
                started = time.perf_counter()
                runs[system].append(child(system, dtype, args))
                print(f"  {dtype} {system}: run done in {time.perf_counter() - started:.0f} s", flush=True)
        results[dtype] = {system: summarise(r) for system, r in runs.items()}
    header = (
        f"{'dtype':9} {'system':9} {'median s':>9} {'min':>6} {'max':>6} {'tok/s':>7} {'gen s':>6} "
        f"{'logps s':>8} {'fwd+bwd s':>9} {'sync s':>7} {'peak MB':>8}"
    )
    print(header)
    for dtype, by_system in results.items():
        for system, s in by_system.items():
            if "error" in s:
                print(f"{dtype:9} {system:9} did not run: {s['error'][:300]}")
                continue
            print(
                f"{dtype:9} {system:9} {s['median_s']:9.2f} {s['min_s']:6.2f} {s['max_s']:6.2f} "
                f"{s['tokens_per_s']:7.1f} {s['generate_s']:6.2f} {s['logps_s']:8.2f} {s['update_s']:9.2f} "
                f"{s['sync_s']:7.2f} {s['peak_rss_mb']:8.0f}"
            )
    for dtype, by_system in results.items():
        t = by_system.get("trl", {})
        for system in ("rlvr", "rlvr-vllm"):
            r = by_system.get(system, {})
            if "median_s" in r and "median_s" in t:
                print(
                    f"{dtype}: step time {system}/trl = {r['median_s'] / t['median_s']:.3f}, "
                    f"peak memory {system}/trl = {r['peak_rss_mb'] / t['peak_rss_mb']:.3f}"
                )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"args": vars(args), "machine": machine(), "results": results}, indent=2)
        )
    headline = results[dtypes[0]]
    best = min(
        (s for s in systems if s.startswith("rlvr") and "median_s" in headline[s]),
        key=lambda s: headline[s]["median_s"],
    )
    ratio = headline[best]["median_s"] / headline["trl"]["median_s"]
    print(f"step_time_ratio rlvr/trl = {ratio:.3f} ({best}, the faster rlvr engine)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
