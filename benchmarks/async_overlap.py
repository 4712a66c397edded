"""Steps per minute at rollout.max_staleness S = 0, 1, 2 side by side: one rollout server in its own process and
the trainer in another, each pinned to cores of its own, against the ideal max(generation, update) per step.

    python benchmarks/async_overlap.py --steps 12 --out runs/async_overlap       # this CPU: server core 0, trainer 1
    python benchmarks/async_overlap.py --gpu --steps 20 --out runs/async_gpu      # vLLM on GPU 1, training on GPU 0
    python benchmarks/async_overlap.py --smoke --out /tmp/async_smoke             # seconds: tiny model, test server

Each S trains `--steps` steps of `--config` from the same start (a fresh output directory; the server is sent the
start weights by each run), with the importance-sampling correction on. Per run it reports, over the steps after
`--warmup`: seconds per step and steps per minute, generation (generate + score) and update (log-probs + update +
weight push) per step, the ideal max(generation, update) a perfect overlap would reach, how long the trainer
waited for data, and the staleness. Written to OUT/summary.md and OUT/summary.json with the commands.
`--smoke` runs the tiny test model on tests/hf_rollout_server.py (the rollout server's app on rlvr's decode
loop) for a few steps: it checks the script, its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pinned(command: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *command] if cpus else command


def role_env(cpus: str | None, gpus: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if cpus:  # one thread per core given: torch would otherwise start one per core of the machine
        env["OMP_NUM_THREADS"] = str(len(expand(cpus)))
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    return env


def expand(cpus: str) -> list[int]:
    """`0-2,5` -> [0, 1, 2, 5]."""
    out = []
    for part in cpus.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def wait_healthy(process: subprocess.Popen, url: str, log: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the rollout server exited ({process.returncode}); its log: {log}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    sys.exit(f"the rollout server did not answer {url}/health in {timeout:.0f} s; its log: {log}")


def summarize(metrics: list[dict], warmup: int) -> dict[str, float]:
    rows = metrics[warmup:] or metrics

    def mean(*keys: str) -> float:
        return statistics.mean(sum(m.get(k, 0.0) or 0.0 for k in keys) for m in rows)

    step = mean("step_seconds")
    generation = mean("timing/generate", "timing/score")
    update = mean("timing/logps", "timing/update", "timing/sync_weights")
    ideal = max(generation, update)
    return {
        "steps": len(rows),
        "seconds_per_step": step,
        "steps_per_minute": 60 / step,
        "generation_seconds": generation,
        "update_seconds": update,
        "ideal_steps_per_minute": 60 / ideal,
        "wait_for_data_seconds": mean("async/wait_for_data"),
        "staleness_mean": mean("async/staleness_mean"),
        "staleness_max": max((m.get("async/staleness_max") or 0) for m in rows),
        "logp_diff_mean": mean("sampling/logp_diff/mean"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/arithmetic_proof.yaml")
    parser.add_argument("--model", help="default: the config's model.name_or_path")
    parser.add_argument("--staleness", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the figures")
    parser.add_argument("--out", type=Path, default=Path("runs/async_overlap"))
    parser.add_argument("--server-cpus", default="0", help="taskset list for the server ('' : not pinned)")
    parser.add_argument("--trainer-cpus", default="1", help="taskset list for the trainer ('' : not pinned)")
    parser.add_argument("--gpu", action="store_true", help="vLLM and training on GPUs, bfloat16, not pinned")
    parser.add_argument("--server-gpus", default="1")
    parser.add_argument("--trainer-gpus", default="0")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny model on the test server: checks the script"
    )
    parser.add_argument("overrides", nargs="*", help="more key=value config overrides for every run")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the `finally` below stops the rollout server (Python's default just exits).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_cpus = None if args.gpu else args.server_cpus or None
    trainer_cpus = None if args.gpu else args.trainer_cpus or None
    overrides = [
        f"training.max_steps={args.steps}",
        "training.save_steps=0",
        "training.eval_steps=0",
        "training.log_completions_steps=0",
        "training.overwrite_output_dir=true",
        "generation.engine=vllm",
        "vllm.mode=server",
        f"vllm.server_url={url}",
        "algorithm.importance_sampling_correction=true",
    ]
    if args.smoke:
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import build_tiny_model

        model = str(build_tiny_model(args.out / "tiny-model"))
        server = [py, str(ROOT / "tests" / "hf_rollout_server.py"), "--model", model, "--port", str(port)]
        server += ["--log", str(args.out / "server_requests.jsonl")]
        overrides += [
            f"model.name_or_path={model}",
            "generation.num_generations=4",
            "generation.max_completion_length=8",
            "training.batch_size=8",
            "training.gradient_accumulation_steps=1",
            "training.bf16=false",
            "vllm.dtype=float32",
        ]
    else:
        import yaml

        model = args.model or yaml.safe_load((ROOT / args.config).read_text())["model"]["name_or_path"]
        dtype = "bfloat16" if args.gpu else "float32"  # float32 on CPUs: bfloat16 is emulated on most
        server = [py, "-m", "rlvr", "serve-rollouts", "--model", model, "--port", str(port), "--dtype", dtype]
        server += ["--max-model-len", "512"] + ([] if args.gpu else ["--kv-cache-gb", "1"])
        overrides += [f"model.name_or_path={model}", f"vllm.dtype={dtype}"]
        overrides += ["training.bf16=true"] if args.gpu else ["training.bf16=false"]
    overrides += args.overrides

    server_log = args.out / "server.log"
    server_command = pinned(server, server_cpus)
    with open(server_log, "w") as log:
        process = subprocess.Popen(
            server_command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=role_env(server_cpus, args.server_gpus if args.gpu else None),
            cwd=ROOT,
        )
    results, commands = {}, {"server": shlex.join(server_command)}
    try:
        wait_healthy(process, url, server_log)
        for staleness in args.staleness:
            run_dir = args.out / f"S{staleness}"
            command = pinned(
                [py, "-m", "rlvr", "train", "--config", args.config, f"training.output_dir={run_dir}"]
                + overrides
                + [f"rollout.max_staleness={staleness}"],
                trainer_cpus,
            )
            commands[f"S={staleness}"] = shlex.join(command)
            print(f"== S={staleness}: {commands[f'S={staleness}']}", flush=True)
            started = time.perf_counter()
            with open(args.out / f"S{staleness}.log", "w") as log:
                code = subprocess.call(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=role_env(trainer_cpus, args.trainer_gpus if args.gpu else None),
                    cwd=ROOT,
                )
            if code != 0:
                sys.exit(f"S={staleness} failed ({code}); its log: {args.out / f'S{staleness}.log'}")
            metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
            results[staleness] = {
                **summarize(metrics, args.warmup),
                "wall_seconds": time.perf_counter() - started,
            }
    finally:
        process.kill()
        process.wait()

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores visible"
    lines = [
        f"# rollout.max_staleness: steps per minute ({'GPU' if args.gpu else 'CPU'}, {machine})",
        "",
        f"server pinned to {server_cpus or '-'}, trainer to {trainer_cpus or '-'}; {args.steps} steps each, "
        f"the first {args.warmup} left out" + (" (SMOKE RUN: numbers mean nothing)" if args.smoke else ""),
        "",
        "| S | s/step | steps/min | generation s | update s | ideal steps/min | trainer waited s | staleness mean/max |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s, r in results.items():
        lines.append(
            f"| {s} | {r['seconds_per_step']:.2f} | {r['steps_per_minute']:.2f} | {r['generation_seconds']:.2f} | "
            f"{r['update_seconds']:.2f} | {r['ideal_steps_per_minute']:.2f} | {r['wait_for_data_seconds']:.2f} | "
            f"{r['staleness_mean']:.2f}/{r['staleness_max']:.0f} |"
        )
    lines += ["", "Commands:", "", *[f"- {k}: `{v}`" for k, v in commands.items()]]
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    (args.out / "summary.json").write_text(json.dumps({"results": results, "commands": commands}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
