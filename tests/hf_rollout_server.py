"""A rollout server for tests: `rlvr serve-rollouts`'s own app (`rlvr.rollout.server.create_app`) around rlvr's
decode loop instead of vLLM, so several start in seconds on a CPU and speak the real protocol over HTTP. Each
/generate is logged to --log with the weight version it sampled from.

    python tests/hf_rollout_server.py --model DIR --port 8001 --log requests.jsonl
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


class HFServedEngine:
    """What `create_app` needs of an engine, on rlvr's decode loop: `sample_ids`, `load_weights`,
    `weight_versions` and `weight_transfer` (None: weights over HTTP only)."""

    weight_transfer = None

    def __init__(self, model_dir: str, log: str) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from rlvr.rollout.engine import HFEngine

        self.model = AutoModelForCausalLM.from_pretrained(model_dir)
        self.engine = HFEngine(self.model, AutoTokenizer.from_pretrained(model_dir), max_prompt_length=512)
        self.log = log
        self.weight_versions = 0

    def sample_ids(self, prompts, num_samples, config, seeds, greedy, eos_ids) -> Any:
        from rlvr.utils import append_jsonl

        rows = self.engine.generate_ids(prompts, num_samples, config, seeds, greedy)
        append_jsonl(
            self.log,
            {"weight_version": self.weight_versions, "prompts": prompts, "num_samples": num_samples},
        )
        return rows

    def load_weights(self, weights: Any = None, path: str | None = None) -> None:
        state = dict(weights)
        unknown = set(state) - set(self.model.state_dict())
        if unknown:
            raise KeyError(f"weights this model does not have: {sorted(unknown)[:3]}")
        self.model.load_state_dict(state, strict=False)
        self.weight_versions += 1


def start(model_dir: Path, port: int, log: Path) -> subprocess.Popen:
    """The server as a process of its own (stdout and stderr to `log`.out)."""
    out = open(log.with_suffix(".out"), "w")  # noqa: SIM115 (the process holds it)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        str(HERE / "hf_rollout_server.py"),
        "--model",
        str(model_dir),
        "--port",
        str(port),
    ]
    return subprocess.Popen(command + ["--log", str(log)], stdout=out, stderr=subprocess.STDOUT, env=env)


def main() -> None:
    import uvicorn
    from transformers import AutoConfig

    from rlvr.rollout.server import create_app, model_fingerprint

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    engine = HFServedEngine(args.model, args.log)
    fingerprint = model_fingerprint(AutoConfig.from_pretrained(args.model).to_dict())
    uvicorn.run(
        create_app(engine, args.model, fingerprint), host="127.0.0.1", port=args.port, log_level="warning"
    )


if __name__ == "__main__":
    main()
