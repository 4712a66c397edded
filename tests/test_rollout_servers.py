"""Several rollout servers serve one run (`vllm.server_url` as a list), over the real HTTP protocol of `rlvr
serve-rollouts` (tests/hf_rollout_server.py: its app on rlvr's decode loop): groups spread and kept whole, every
server on the new weights before it samples, S = 0 bit for bit, a killed server named with the checkpoints
intact, and a server of another model refused by its URL."""

from __future__ import annotations

import threading

import pytest
import torch
from conftest import build_tiny_model, free_port, wait_until_healthy
from hf_rollout_server import start
from safetensors.torch import load_file
from test_trainer import make_config

from rlvr import GRPOTrainer
from rlvr.config import ConfigError, GRPOConfig
from rlvr.rollout.engine import EngineError
from rlvr.rollout.servers import ServerPool
from rlvr.trainer import TrainingError
from rlvr.trainer.checkpoint_files import list_checkpoints
from rlvr.trainer.rollouts import RolloutsMixin
from rlvr.utils import read_jsonl

pytestmark = pytest.mark.timeout(300)
ROWS = [{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(40)]
G = 4


def length_reward(prompts, completions, **kwargs):
    return [len(c[-1]["content"]) / 10 for c in completions]


def launch(model_dir, directory, count):
    """`count` servers of `model_dir`; returns [(process, url, request log)]."""
    servers = []
    for k in range(count):
        port = free_port()
        log = directory / f"server{k}.jsonl"
        servers.append((start(model_dir, port, log), f"http://127.0.0.1:{port}", log))
    for process, url, _ in servers:
        wait_until_healthy(process, url, timeout=120)
    return servers


def stop(servers):
    for process, _, _ in servers:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def two_servers(tiny_model_dir, tmp_path_factory):
    servers = launch(tiny_model_dir, tmp_path_factory.mktemp("servers"), 2)
    yield servers
    stop(servers)


def server_trainer(model_dir, output_dir, urls, staleness, vllm=None, **training):
    config = make_config(
        model_dir,
        output_dir,
        generation={"engine": "vllm", "num_generations": G, "max_completion_length": 8},
        vllm={"mode": "server", "server_url": urls, "dtype": "float32", **(vllm or {})},
        rollout={"max_staleness": staleness},
        training={"batch_size": 4 * G, "max_steps": 4, **training},  # 4 prompts: 2 for each server
    )
    return GRPOTrainer(config, reward_funcs=[length_reward], train_dataset=ROWS)


def capture_rollouts(trainer):
    seen = []
    update = trainer.policy_updates

    def recorded(rollout, *args, **kwargs):
        seen.append((trainer.step, rollout))
        return update(rollout, *args, **kwargs)

    trainer.policy_updates = recorded
    return seen


def requests_since(log, start):
    return read_jsonl(log)[start:] if log.exists() else []


def test_two_servers_serve_a_run_ahead_groups_whole_every_server_on_the_new_weights(
    two_servers, tiny_model_dir, tmp_path
):
    urls = [url for _, url, _ in two_servers]
    logs = [log for _, _, log in two_servers]
    before = [len(requests_since(log, 0)) for log in logs]
    trainer = server_trainer(tiny_model_dir, tmp_path / "run", urls, 1)
    assert isinstance(trainer.engine, ServerPool) and trainer.engine.runs_apart
    seen = capture_rollouts(trainer)
    trainer.train()
    calls = [int(rollout.policy_version.max()) for _, rollout in seen]  # one call per batch, in order
    assert [step - v for (step, _), v in zip(seen, calls)] != [0, 0, 0, 0]  # it sampled ahead
    for log, first in zip(logs, before):
        requests = requests_since(log, first)
        assert len(requests) == 4  # every call went to both servers
        assert all(r["num_samples"] == G and len(r["prompts"]) == 2 for r in requests)  # whole groups
        # the weights after v steps are the server's push v + 1 (one at start): each server held exactly the
        # version the trainer recorded for the call, so none sampled before it had the push
        assert [r["weight_version"] - 1 for r in requests] == calls
    prompts = [[r["prompts"] for r in requests_since(log, first)] for log, first in zip(logs, before)]
    assert all(a != b for a, b in zip(*prompts))  # different prompts on each server
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    for m, (step, _), v in zip(metrics, seen, calls):
        assert m["async/staleness_max"] == step - v
        if step == v:  # sampled from the weights it trains: the servers' log-probs are the trainer's
            assert m["sampling/logp_diff/max"] < 1e-4


def test_s0_through_the_pipeline_on_two_servers_is_the_synchronous_run_bit_for_bit(
    two_servers, tiny_model_dir, tmp_path, monkeypatch
):
    urls = [url for _, url, _ in two_servers]
    outputs = []
    for name in ("synchronous", "pipelined"):
        with monkeypatch.context() as patch:
            if name == "pipelined":
                patch.setattr(RolloutsMixin, "overlaps_training", lambda self: True)
            final = server_trainer(tiny_model_dir, tmp_path / name, urls, 0, max_steps=3).train()
        metrics = [
            {k: v for k, v in m.items() if not k.startswith(("timing", "async/")) and "second" not in k}
            for m in read_jsonl(tmp_path / name / "metrics.jsonl")
        ]
        outputs.append(
            (
                metrics,
                read_jsonl(tmp_path / name / "completions.jsonl"),
                load_file(final / "model.safetensors"),
            )
        )
    (metrics0, completions0, weights0), (metrics, completions, weights) = outputs
    assert metrics == metrics0 and completions == completions0
    assert all(torch.equal(weights[k], weights0[k]) for k in weights0)


def test_a_server_of_another_model_is_refused_by_its_url(two_servers, tiny_model_dir, tmp_path):
    other = build_tiny_model(tmp_path / "other", head_dim=32)  # wider heads: weights of other shapes
    ((process, url, _),) = launch(other, tmp_path, 1)
    try:
        with pytest.raises(
            EngineError, match=f"the rollout server at {url} serves .* which is not the model"
        ):
            server_trainer(tiny_model_dir, tmp_path / "run", [two_servers[0][1], url], 1)
    finally:
        stop([(process, url, None)])


def test_a_killed_server_is_named_and_the_run_stops_with_its_checkpoints_intact(tiny_model_dir, tmp_path):
    servers = launch(tiny_model_dir, tmp_path, 2)
    try:
        urls = [url for _, url, _ in servers]
        trainer = server_trainer(tiny_model_dir, tmp_path / "run", urls, 1, max_steps=6, save_steps=2)
        kill_during_step_three(trainer, servers[1][0])
        with pytest.raises(TrainingError) as failure:
            trainer.train()
        message = str(failure.value)
        assert f"the rollout server at {urls[1]}" in message and "cannot be reached" in message
        assert urls[0] not in message  # the one that answered is not blamed
        assert "1 of 2 rollout servers failed" in message
        assert "checkpoint-2" in message and "--resume" in message
        assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["checkpoint-2"]
        assert [m["step"] for m in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [1, 2]
        assert [t for t in threading.enumerate() if t.name == "rlvr-rollout-producer"] == []
    finally:
        stop(servers)


def kill_during_step_three(trainer, process):
    update = trainer.policy_updates

    def killing(*args, **kwargs):
        if trainer.step == 2:
            process.kill()
            process.wait()
        return update(*args, **kwargs)

    trainer.policy_updates = killing


def test_with_server_failure_continue_the_run_goes_on_without_a_killed_server(
    tiny_model_dir, tmp_path, capsys
):
    servers = launch(tiny_model_dir, tmp_path, 2)
    try:
        urls = [url for _, url, _ in servers]
        continuing = {"server_failure": "continue"}
        trainer = server_trainer(tiny_model_dir, tmp_path / "run", urls, 1, vllm=continuing, max_steps=5)
        assert trainer.engine.keep_going
        kill_during_step_three(trainer, servers[1][0])
        trainer.train()
        assert f"rollout server {urls[1]} left the run" in capsys.readouterr().out
        assert [m["step"] for m in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [1, 2, 3, 4, 5]
        survivor = read_jsonl(servers[0][2])
        assert len(survivor[-1]["prompts"]) == 4  # the last step's four prompts, all on the server left
        before, after = read_jsonl(servers[1][2]), len(survivor)
        assert len(before) < 5 and after > 5  # the killed server served the first steps only
    finally:
        stop(servers)


@pytest.mark.parametrize(
    "server_url, transfer, error",
    [
        ([], "http", "vllm.server_url is an empty list"),
        (["http://a:1", "http://a:1/"], "http", "names a server twice"),
        (["http://a:1", "ftp://b:2"], "http", "must start with http:// or https://, got 'ftp://b:2'"),
        (["http://a:1", "http://b:2"], "collective", "with several vllm.server_url use weight_transfer=http"),
    ],
)
def test_bad_server_lists_are_refused(server_url, transfer, error):
    with pytest.raises(ConfigError, match=error):
        GRPOConfig.from_dict(
            {"vllm": {"mode": "server", "server_url": server_url, "weight_transfer": transfer}}
        )


def test_two_training_processes_sample_ahead_on_two_servers(two_servers, tiny_model_dir, tmp_path):
    # the real launcher: each rank runs its own producer against both servers; rank 0 pushes to both
    import os
    import subprocess
    import sys

    urls = [url for _, url, _ in two_servers]
    (tmp_path / "rewards.py").write_text(
        "def length_reward(prompts, completions, **kwargs):\n"
        "    return [len(c[-1]['content']) / 10 for c in completions]\n"
    )
    (tmp_path / "empty.yaml").write_text("{}\n")
    rows = "".join(f'{{"question": "What is {i} + {i}?", "answer": "{2 * i}"}}\n' for i in range(16))
    (tmp_path / "data.jsonl").write_text(rows)
    overrides = [
        f"model.name_or_path={tiny_model_dir}",
        f"data.dataset={tmp_path / 'data.jsonl'}",
        f"rewards.functions=[{tmp_path / 'rewards.py'}:length_reward]",
        f"generation.num_generations={G}",
        "generation.max_completion_length=8",
        "generation.engine=vllm",
        "vllm.mode=server",
        f"vllm.server_url=[{urls[0]}, {urls[1]}]",
        "vllm.dtype=float32",
        "rollout.max_staleness=1",
        "training.max_steps=4",
        "training.batch_size=8",
        f"training.output_dir={tmp_path / 'run'}",
        "training.bf16=false",
        "algorithm.importance_sampling_correction=true",
    ]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "rlvr", "train"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        command + ["--config", str(tmp_path / "empty.yaml"), *overrides],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    for m in metrics:  # 2 ranks x 8 episodes a step, each counted once, none older than one step
        assert m["async/staleness/lag_0"] + m["async/staleness/lag_1"] == 16
        assert m["async/staleness_max"] <= 1
    assert metrics[0]["async/staleness_max"] == 0


def test_a_server_another_rank_dropped_leaves_this_rank_before_the_push(
    two_servers, tiny_model_dir, tmp_path, monkeypatch, capsys
):
    """Rank 0 pushes weights only to the servers it still has: a server that failed on another rank while it
    generated must leave every rank at the next push, or they would go on sampling from an old policy."""
    import rlvr.rollout.servers as servers_module

    urls = [url for _, url, _ in two_servers]
    trainer = server_trainer(tiny_model_dir, tmp_path / "run", urls, 0, vllm={"server_failure": "continue"})
    pool = trainer.engine
    other_rank = {urls[1]}  # what all_gather_object returns when another rank dropped server 1
    monkeypatch.setattr(servers_module, "_union_over_ranks", lambda own: own | other_rank)
    pool.sync_weights()
    assert [s.url for s in pool.servers] == [urls[0]]
    assert f"rollout server {urls[1]} left the run" in capsys.readouterr().out
    trainer.engine.close()
