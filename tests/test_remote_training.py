"""rlvr's trainer scoring through a live `rlvr serve-rewards` (the real CLI, over real HTTP)."""

import os
import subprocess
import sys
from pathlib import Path

from conftest import free_port, wait_until_healthy

from rlvr import GRPOConfig, GRPOTrainer
from rlvr.utils import read_jsonl

ROWS = [{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(8)]


def test_training_scores_through_a_live_reward_server(tiny_model_dir, tmp_path):
    port = free_port()
    log = tmp_path / "rewards.jsonl"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rlvr",
            "serve-rewards",
            "--reward",
            "accuracy",
            "--reward",
            "xml_format",
            "--weights",
            "1.0",
            "0.5",
            "--port",
            str(port),
            "--workers",
            "1",
            "--log",
            str(log),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(server, url)

        config = GRPOConfig.from_dict(
            {
                "model": {"name_or_path": str(tiny_model_dir)},
                "generation": {"num_generations": 4, "max_completion_length": 8},
                "rewards": {"functions": [f"remote:{url}/get_reward"], "remote_timeout": 30},
                "training": {
                    "output_dir": str(tmp_path / "run"),
                    "max_steps": 2,
                    "batch_size": 8,
                    "log_completions_steps": 1,
                },
                "algorithm": {"beta": 0.0},
            }
        )
        GRPOTrainer(config, train_dataset=ROWS).train()
    finally:
        server.terminate()
        server.communicate(timeout=30)

    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2]
    scored = read_jsonl(log)
    assert len(scored) == 2 * 8  # every completion of both steps went through the server
    # the server saw the gold answers the trainer sent, and the trainer logged what the server returned
    assert {s["gold"] for s in scored} <= {r["answer"] for r in ROWS}
    completions = read_jsonl(tmp_path / "run" / "completions.jsonl")
    server_totals = sorted(1.0 * s["rewards"]["accuracy"] + 0.5 * s["rewards"]["xml_format"] for s in scored)
    assert sorted(c["reward"] for c in completions) == server_totals
