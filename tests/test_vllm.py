"""The vLLM engine on this CPU against rlvr's own loop and the trainer's log-probs (needs `make setup-vllm`).

One engine serves the module (vLLM starts in ~15 s eager); each test leaves its weights as the model's.
Tolerances are for float32 on a CPU: vLLM's kernels sum in another order than torch's, ~1e-6 per log-prob.
"""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("vllm", reason="vLLM is not installed: make setup-vllm")

from rlvr.algorithm.logprobs import completion_logps  # noqa: E402
from rlvr.config import GenerationConfig, GRPOConfig  # noqa: E402
from rlvr.rollout.engine import HFEngine  # noqa: E402
from rlvr.rollout.generation import eos_token_ids, logits_processors  # noqa: E402

LOGP_TOLERANCE = 1e-4  # per token, float32, same weights
PROMPTS = ["What is 2 + 3?", "Natalia sold clips to 48 of her friends", "The answer is"]


@pytest.fixture(scope="module")
def vllm_model_dir(tmp_path_factory):
    from conftest import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-vllm"), head_dim=32)  # vLLM's CPU kernels: >= 32


@pytest.fixture(scope="module")
def model_and_tokenizer(vllm_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(vllm_model_dir), AutoTokenizer.from_pretrained(vllm_model_dir)


@pytest.fixture(scope="module")
def engine(vllm_model_dir, model_and_tokenizer):
    from rlvr.rollout.vllm_engine import VLLMEngine

    model, tokenizer = model_and_tokenizer
    engine = VLLMEngine(
        str(vllm_model_dir),
        tokenizer,
        64,
        eos_token_ids(tokenizer, model),
        dtype="float32",
        max_model_len=160,
        cpu_kv_cache_gb=1,
        enforce_eager=True,
        source=model,
    )
    yield engine
    engine.close()


def trainer_logps(model, generation, temperature=1.0):
    """The trainer's own log-probs of the generated completions (rlvr.algorithm.logprobs)."""
    g = generation
    prompt_ids, prompt_mask, completion_ids, completion_mask = (
        g.prompt_ids,
        g.prompt_mask,
        g.completion_ids,
        g.completion_mask,
    )
    with torch.no_grad():
        logps, _ = completion_logps(
            model,
            torch.cat([prompt_ids, completion_ids], 1),
            torch.cat([prompt_mask, completion_mask], 1),
            completion_mask,
            temperature,
            entropy=False,
        )
    return logps * completion_mask


def test_at_equal_weights_the_sampler_and_trainer_log_probs_agree(engine, model_and_tokenizer):
    model, _ = model_and_tokenizer
    config = GenerationConfig(max_completion_length=24, temperature=0.8)
    out = engine.generate(PROMPTS, 4, config, seeds=[1, 2, 3])
    mask = out.completion_mask.bool()
    gap = (out.sampling_logps - trainer_logps(model, out, 0.8)).abs()[mask]
    assert gap.numel() > 50 and gap.max() < LOGP_TOLERANCE, f"max gap {gap.max():.2e}"


def test_a_weight_push_takes_effect(engine, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    moved = copy.deepcopy(model)
    torch.manual_seed(0)
    with torch.no_grad():
        for param in moved.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    greedy = GenerationConfig(max_completion_length=16)
    hf_moved = HFEngine(moved, tokenizer, 64).generate(PROMPTS, 1, greedy, greedy=True)
    sampled = GenerationConfig(max_completion_length=16, temperature=1.0)
    before = engine.generate(PROMPTS, 2, sampled, seeds=[5, 6, 7])
    engine.source = moved
    try:
        engine.sync_weights()
        after_greedy = engine.generate(PROMPTS, 1, greedy, greedy=True)
        after = engine.generate(PROMPTS, 2, sampled, seeds=[5, 6, 7])
    finally:
        engine.source = model
        engine.sync_weights()
    assert torch.equal(after_greedy.completion_ids, hf_moved.completion_ids) and torch.equal(
        after_greedy.completion_mask, hf_moved.completion_mask
    )
    gap_after = (after.sampling_logps - trainer_logps(moved, after)).abs()[after.completion_mask.bool()]
    assert gap_after.max() < LOGP_TOLERANCE
    # the test can fail: before the push the engine's log-probs were far from the moved model's
    gap_before = (before.sampling_logps - trainer_logps(moved, before)).abs()[before.completion_mask.bool()]
    assert gap_before.max() > 100 * LOGP_TOLERANCE
    back = engine.generate(PROMPTS, 2, sampled, seeds=[5, 6, 7])
    assert torch.equal(back.completion_ids, before.completion_ids)  # pushed back: the original samples again


def test_lora_merge_push_follows_the_adapted_model(engine, model_and_tokenizer):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = model_and_tokenizer
    peft_model = get_peft_model(
        copy.deepcopy(model), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
    )
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.3)
    adapters = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_" in n}
    peft_model.eval()
    engine.source = peft_model
    try:
        engine.sync_weights()
        sampled = GenerationConfig(max_completion_length=16, temperature=1.0)
        out = engine.generate(PROMPTS, 2, sampled, seeds=[1, 2, 3])
        gap = (out.sampling_logps - trainer_logps(peft_model, out)).abs()[out.completion_mask.bool()]
        greedy = GenerationConfig(max_completion_length=16)
        mine = engine.generate(PROMPTS, 1, greedy, greedy=True)
        theirs = HFEngine(peft_model, tokenizer, 64).generate(PROMPTS, 1, greedy, greedy=True)
    finally:
        engine.source = model
        engine.sync_weights()
    assert gap.max() < LOGP_TOLERANCE
    assert torch.equal(mine.completion_ids, theirs.completion_ids)
    for name, param in peft_model.named_parameters():
        if name in adapters:
            assert torch.equal(param, adapters[name]), f"{name} changed by the push"


def test_eos_and_masks_match_rlvrs_loop_on_the_same_tokens(engine, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    varied = copy.deepcopy(model)  # the random model repeats one token greedily; shaken, it varies
    torch.manual_seed(0)
    with torch.no_grad():
        for param in varied.parameters():
            param.add_(torch.randn_like(param) * 0.3)
    greedy = GenerationConfig(max_completion_length=12)
    hf = HFEngine(varied, tokenizer, 64)
    free = hf.generate(PROMPTS, 1, greedy, greedy=True)
    # make a greedy token that is new at place k >= 1 an EOS for both engines: the completion must end
    # there, the EOS kept
    row, k = next(
        (r, i)
        for r, tokens in enumerate(free.completion_ids.tolist())
        for i in range(1, len(tokens))
        if tokens[i] not in tokens[:i]
    )
    stop = int(free.completion_ids[row, k])
    original = engine.eos_ids
    engine.eos_ids = sorted({*original, stop})
    varied.generation_config.eos_token_id = engine.eos_ids
    engine.source = varied
    try:
        engine.sync_weights()
        theirs = hf.generate(PROMPTS, 1, greedy, greedy=True)
        mine = engine.generate(PROMPTS, 1, greedy, greedy=True)
    finally:
        engine.eos_ids = original
        engine.source = model
        engine.sync_weights()
    for name in ("completion_ids", "completion_mask", "truncated"):
        assert torch.equal(getattr(mine, name), getattr(theirs, name)), name
    assert (
        mine.completion_mask[row].sum() == k + 1 and not mine.truncated[row]
    )  # stopped at place k, the EOS counted
    assert mine.truncated.any(), "some rows should run to max_completion_length (truncated)"


def test_sampling_options_mean_the_same_distribution_as_rlvrs_loop(engine, model_and_tokenizer):
    # vLLM's processed log-prob of each sampled token must equal the log of rlvr's processed distribution
    # (transformers' own processors: repetition penalty, temperature, top-k, top-p, min-p) at that position;
    # a token outside rlvr's support would give -inf there.
    model, _ = model_and_tokenizer
    for options in (
        {"temperature": 0.7, "top_k": 8},
        {"temperature": 1.0, "top_p": 0.8},
        {"temperature": 1.2, "min_p": 0.05},
        {"temperature": 1.0, "repetition_penalty": 1.5},
    ):
        config = GenerationConfig(max_completion_length=12, **options)
        out = engine.generate(PROMPTS, 3, config, seeds=[11, 12, 13])
        prompt_ids, prompt_mask = out.prompt_ids, out.prompt_mask
        completion_ids, completion_mask = out.completion_ids, out.completion_mask
        processors = logits_processors(config)
        ids = torch.cat([prompt_ids, completion_ids], 1)
        mask = torch.cat([prompt_mask, completion_mask], 1)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
        width = prompt_ids.shape[1]
        for row in range(len(ids)):
            for t in range(int(completion_mask[row].sum())):
                seen = ids[row : row + 1, : width + t][:, prompt_mask[row].bool().tolist() + [True] * t]
                scores = processors(seen, logits[row : row + 1, width + t - 1].clone())
                want = torch.log_softmax(scores, -1)[0, completion_ids[row, t]]
                got = out.sampling_logps[row, t]
                assert torch.isfinite(want), f"{options}: vLLM drew a token rlvr's loop never would"
                assert abs(float(got - want)) < 1e-3, (options, row, t, float(got), float(want))


def test_a_fixed_seed_repeats_the_samples(engine):
    config = GenerationConfig(max_completion_length=16, temperature=1.0)
    first = engine.generate(PROMPTS, 2, config, seeds=[3, 4, 5])
    again = engine.generate(PROMPTS, 2, config, seeds=[3, 4, 5])
    other = engine.generate(PROMPTS, 2, config, seeds=[6, 4, 5])
    assert torch.equal(first.completion_ids, again.completion_ids) and torch.equal(
        first.sampling_logps, again.sampling_logps
    )
    assert not torch.equal(first.completion_ids[:2], other.completion_ids[:2]) and torch.equal(
        first.completion_ids[2:], other.completion_ids[2:]
    )
    torch.manual_seed(9)
    drawn = engine.generate(PROMPTS, 2, config)
    torch.manual_seed(9)
    assert torch.equal(
        engine.generate(PROMPTS, 2, config).completion_ids, drawn.completion_ids
    )  # training.seed decides


def test_seeded_requests_whose_prompts_fill_more_than_one_prefill_step_are_sampled(engine):
    """vLLM 0.32 on a CPU crashed ("CPU Generator does not use offset") when it split a seeded request's
    prefill over two steps: 64 samples of a 101-token prompt are 6,464 prompt tokens, over its 4,096 a step."""
    engine.max_prompt_length = 128
    try:
        out = engine.generate(["word " * 100], 64, GenerationConfig(max_completion_length=2), seeds=[0])
    finally:
        engine.max_prompt_length = 64
    assert out.prompt_ids.shape[1] > 100 and out.completion_ids.shape == (64, 2)


# ------------------------------------------------------------------------------ multi-turn episodes on vLLM
class Nag:
    """Never satisfied: answers every reply with a request to say it again."""

    def reset(self, **row):
        return None

    def step(self, message):
        from rlvr.environments import Step

        return Step([{"role": "user", "content": "Say it again."}], done=False)


def play_and_measure(engine, model, tokenizer):
    """Episodes of several turns on `engine`; the sampler/trainer log-prob gap of each turn."""
    from rlvr.config import EnvironmentConfig
    from rlvr.rollout.chat_tokens import ChatFormat
    from rlvr.rollout.episodes import episode_batch, run_episodes, sum_turn_gaps, turn_logp_gaps

    eos = eos_token_ids(tokenizer, model)
    question = [{"role": "user", "content": "What is 2 + 3?"}]
    episodes = run_episodes(
        engine,
        ChatFormat(tokenizer, eos),
        [Nag() for _ in range(4)],
        [{}],
        [question],
        4,
        GenerationConfig(max_completion_length=8, temperature=1.0),
        EnvironmentConfig(max_turns=3, max_total_tokens=150),
        eos,
        64,
        seeds=[3],
    )
    batch = episode_batch(episodes, tokenizer.pad_token_id)
    with torch.no_grad():
        logps, _ = completion_logps(
            model,
            torch.cat([batch.prompt_ids, batch.completion_ids], 1),
            torch.cat([batch.prompt_mask, batch.completion_mask], 1),
            batch.completion_mask,
            entropy=False,
        )
    gaps = sum_turn_gaps([turn_logp_gaps(logps, batch.sampling_logps, batch.loss_mask, batch.turn_index)])
    return episodes, batch, gaps


@pytest.fixture(scope="module")
def eos_prone(vllm_model_dir, model_and_tokenizer):
    """The tiny model with replies of a few tokens that end their turn, so episodes go on for several turns."""
    from test_episodes import eos_prone_model

    _, tokenizer = model_and_tokenizer
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True
    )
    return eos_prone_model(vllm_model_dir, tokenizer, prompt["input_ids"])


def test_multi_turn_episodes_on_the_colocated_engine_match_the_trainer_turn_by_turn(
    engine, eos_prone, model_and_tokenizer
):
    model, tokenizer = model_and_tokenizer
    engine.source = eos_prone
    try:
        engine.sync_weights()
        episodes, batch, gaps = play_and_measure(engine, eos_prone, tokenizer)
    finally:
        engine.source = model
        engine.sync_weights()
    assert max(len(e.turns) for e in episodes) == 3 and (batch.loss_mask < batch.completion_mask).any()
    assert "sampling/logp_diff/turn_2" in gaps  # later turns were sampled after environment tokens
    assert max(gaps.values()) < LOGP_TOLERANCE, gaps  # and scored after exactly those tokens


def test_training_with_the_vllm_engine_keeps_it_in_step(vllm_model_dir, tmp_path):
    from rlvr.trainer import GRPOTrainer
    from rlvr.utils import read_jsonl

    config = GRPOConfig.from_dict(
        {
            "model": {"name_or_path": str(vllm_model_dir)},
            "data": {"max_prompt_length": 64},
            "generation": {"engine": "vllm", "num_generations": 4, "max_completion_length": 12},
            "vllm": {"enforce_eager": True, "cpu_kv_cache_gb": 1},
            "training": {
                "output_dir": str(tmp_path / "run"),
                "max_steps": 3,
                "batch_size": 8,
                "learning_rate": 1e-3,
                "seed": 3,
                "save_steps": 3,
            },
            "algorithm": {"beta": 0.0},
        }
    )
    rows = [{"question": f"What is {i} + 3?", "answer": str(i + 3)} for i in range(12)]

    def longer_is_better(prompts, completions, **kwargs):
        return [float(len(c[0]["content"])) / 10 for c in completions]

    trainer = GRPOTrainer(config, reward_funcs=[longer_is_better], train_dataset=rows)
    start = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3]
    # the policy moved every step (lr 1e-3), and each step's samples still came from its current weights:
    # without the pushes steps 2 and 3 would sample from older weights, far beyond the tolerance
    moved = [n for n, p in trainer.model.named_parameters() if not torch.allclose(p, start[n], atol=1e-4)]
    assert len(moved) == len(start)
    for m in metrics:
        assert m["sampling/logp_diff/max"] < LOGP_TOLERANCE, m
        assert m["timing/sync_weights"] > 0
    assert trainer.engine.weight_versions == 4  # at start, then after each of 3 steps


# ---------------------------------------------------------------------------------- server mode
@pytest.fixture
def rollout_server(vllm_model_dir, tmp_path):
    """`rlvr serve-rollouts` on the tiny model in its own process; yields (process, url)."""
    import os
    import subprocess
    import sys

    from conftest import free_port, wait_until_healthy

    port = free_port()
    command = [
        sys.executable,
        "-m",
        "rlvr",
        "serve-rollouts",
        "--model",
        str(vllm_model_dir),
        "--port",
        str(port),
    ]
    command += ["--dtype", "float32", "--max-model-len", "160", "--kv-cache-gb", "1", "--enforce-eager"]
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(process, url, timeout=240)
        yield process, url
    finally:
        process.kill()
        process.wait()
        log.close()


def server_config(model_dir, output_dir, url, **training):
    return GRPOConfig.from_dict(
        {
            "model": {"name_or_path": str(model_dir)},
            "data": {"max_prompt_length": 64},
            "generation": {"engine": "vllm", "num_generations": 4, "max_completion_length": 12},
            "vllm": {"mode": "server", "server_url": url, "dtype": "float32"},
            "training": {
                "output_dir": str(output_dir),
                "batch_size": 8,
                "learning_rate": 1e-3,
                "seed": 3,
                **training,
            },
            "algorithm": {"beta": 0.0},
        }
    )


ROWS = [{"question": f"What is {i} + 3?", "answer": str(i + 3)} for i in range(40)]


def longer_is_better(prompts, completions, **kwargs):
    return [float(len(c[0]["content"])) / 10 for c in completions]


@pytest.mark.parametrize("transfer", ["http", "collective"])
def test_server_mode_trains_and_a_killed_server_stops_the_run_with_its_checkpoints_intact(
    rollout_server, vllm_model_dir, tmp_path, transfer
):
    from rlvr.trainer import GRPOTrainer
    from rlvr.trainer.checkpoint_files import list_checkpoints
    from rlvr.trainer.trainer import TrainingError
    from rlvr.utils import read_jsonl

    process, url = rollout_server
    run = tmp_path / "run"
    config = server_config(vllm_model_dir, run, url, max_steps=6, save_steps=2)
    config.vllm.weight_transfer = transfer
    trainer = GRPOTrainer(config, reward_funcs=[longer_is_better], train_dataset=ROWS)
    update = trainer.policy_updates

    def kill_after_step_three(*args, **kwargs):  # the server dies while step 3 updates the policy
        out = update(*args, **kwargs)
        if trainer.step == 2:
            process.kill()
            process.wait()
        return out

    trainer.policy_updates = kill_after_step_three
    with pytest.raises(TrainingError) as failure:
        trainer.train()
    message = str(failure.value)
    assert "rollout engine did not take the new weights" in message, message
    assert f"the rollout server at {url}" in message and "cannot be reached" in message
    assert "checkpoint-2" in message and "--resume" in message
    metrics = read_jsonl(run / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:
        assert m["sampling/logp_diff/max"] < LOGP_TOLERANCE  # the server sampled the pushed weights
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-2"]
    # the checkpoint loads: a resumed run (rlvr's own engine) continues from it
    resumed = make_resumable(vllm_model_dir, run)
    resumed.train(resume=True)
    assert [m["step"] for m in read_jsonl(run / "metrics.jsonl")][-1] == 3


def test_a_collective_weight_push_over_gloo_takes_effect_and_repeats(rollout_server, model_and_tokenizer):
    """The trainer broadcasts tensor by tensor (vLLM's weight-transfer engine over gloo on this CPU): after
    each push the server's greedy output and log-probs are the pushed model's."""
    import httpx

    from rlvr.rollout.client import ServerEngine

    _, url = rollout_server
    model, tokenizer = model_and_tokenizer
    assert httpx.get(url + "/health").json()["weight_transfer"] == "gloo"
    moved = copy.deepcopy(model)
    torch.manual_seed(0)
    with torch.no_grad():
        for param in moved.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    eos = eos_token_ids(tokenizer, model)
    greedy = GenerationConfig(max_completion_length=16)
    sampled = GenerationConfig(max_completion_length=16, temperature=1.0)
    engine = ServerEngine(url, tokenizer, 64, eos, source=moved, timeout=60, weight_transfer="collective")
    try:
        engine.sync_weights()
        after_greedy = engine.generate(PROMPTS, 1, greedy, greedy=True)
        after = engine.generate(PROMPTS, 2, sampled, seeds=[5, 6, 7])
    finally:
        engine.close()
    # a second trainer (a resumed run) joins the same server and pushes the original weights back
    engine = ServerEngine(url, tokenizer, 64, eos, source=model, timeout=60, weight_transfer="collective")
    try:
        engine.sync_weights()
        back = engine.generate(PROMPTS, 2, sampled, seeds=[5, 6, 7])
    finally:
        engine.close()
    hf_moved = HFEngine(moved, tokenizer, 64).generate(PROMPTS, 1, greedy, greedy=True)
    assert torch.equal(after_greedy.completion_ids, hf_moved.completion_ids) and torch.equal(
        after_greedy.completion_mask, hf_moved.completion_mask
    )
    gap = (after.sampling_logps - trainer_logps(moved, after)).abs()[after.completion_mask.bool()]
    assert gap.max() < LOGP_TOLERANCE, f"max gap {gap.max():.2e}"
    gap_back = (back.sampling_logps - trainer_logps(model, back)).abs()[back.completion_mask.bool()]
    assert gap_back.max() < LOGP_TOLERANCE, f"max gap after the second push {gap_back.max():.2e}"
    assert (after.sampling_logps - trainer_logps(model, after)).abs()[
        after.completion_mask.bool()
    ].max() > 100 * LOGP_TOLERANCE
    assert httpx.get(url + "/health").json()["weight_version"] == 2


def make_resumable(model_dir, run):
    from rlvr.trainer import GRPOTrainer

    config = server_config(model_dir, run, "http://127.0.0.1:1", max_steps=3, save_steps=2)
    config.generation.engine = "hf"
    return GRPOTrainer(config, reward_funcs=[longer_is_better], train_dataset=ROWS)


def test_a_server_that_serves_another_model_is_refused(rollout_server, tmp_path):
    from conftest import build_tiny_model

    from rlvr.rollout.engine import EngineError
    from rlvr.trainer import GRPOTrainer

    _, url = rollout_server
    other = build_tiny_model(tmp_path / "other", head_dim=16)  # another width: its weights cannot fit
    config = server_config(other, tmp_path / "run", url, max_steps=1)
    with pytest.raises(
        EngineError, match=r"serves .*which is not the model this run trains.*serve-rollouts --model"
    ):
        GRPOTrainer(config, reward_funcs=[longer_is_better], train_dataset=ROWS)


def test_no_server_is_a_clear_error(vllm_model_dir, tmp_path):
    from conftest import free_port

    from rlvr.rollout.engine import EngineError
    from rlvr.trainer import GRPOTrainer

    url = f"http://127.0.0.1:{free_port()}"
    config = server_config(vllm_model_dir, tmp_path / "run", url, max_steps=1)
    with pytest.raises(
        EngineError, match=r"did not answer its health check: it cannot be reached.*serve-rollouts"
    ):
        GRPOTrainer(config, reward_funcs=[longer_is_better], train_dataset=ROWS)


def test_the_server_refuses_bad_requests_and_weights_by_name(rollout_server):
    import httpx

    _, url = rollout_server
    bad = httpx.post(
        url + "/generate", json={"prompts": [[1, 2]], "sampling": {"temprature": 1}, "eos_ids": [2]}
    )
    assert bad.status_code == 422 and "unknown sampling fields ['temprature']" in bad.text
    weights = httpx.post(
        url + "/weights", content=b"not safetensors", headers={"content-type": "application/octet-stream"}
    )
    assert weights.status_code == 422 and "the weights did not load" in weights.text
    missing = httpx.post(url + "/weights", json={"path": "/nonexistent/w.safetensors"})
    assert missing.status_code == 422 and "no weights file" in missing.text
    assert httpx.get(url + "/health").json()["weight_version"] == 0  # nothing was loaded


def test_rlvr_eval_with_the_vllm_engine_writes_what_the_hf_engine_writes(vllm_model_dir, tmp_path):
    import json

    from rlvr.cli import main

    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": "5"}) + "\n" for q in PROMPTS))
    common = ["eval", "--model", str(vllm_model_dir), "--dataset", str(data), "--max-new-tokens", "12"]
    common += ["--max-prompt-length", "64", "--no-progress"]
    assert main([*common, "--output", str(tmp_path / "hf")]) == 0
    extra = ["--engine", "vllm", "--vllm-enforce-eager", "--vllm-kv-cache-gb", "1"]
    assert main([*common, *extra, "--output", str(tmp_path / "vllm")]) == 0
    summaries = {e: json.loads((tmp_path / e / "summary.json").read_text()) for e in ("hf", "vllm")}
    assert summaries["vllm"]["engine"] == "vllm" and summaries["hf"]["engine"] == "hf"
    assert summaries["vllm"]["device"] == "cpu"
    rows = {
        e: [json.loads(line) for line in (tmp_path / e / "predictions.jsonl").read_text().splitlines()]
        for e in ("hf", "vllm")
    }
    # greedy, float32, the same weights: the same completions, lengths and truncation
    for key in ("completion", "length", "truncated"):
        assert [r[key] for r in rows["vllm"]] == [r[key] for r in rows["hf"]], key


def test_a_failed_push_completes_its_pass_so_other_ranks_gathers_are_matched(
    model_and_tokenizer, monkeypatch
):
    import rlvr.rollout.transfer as transfer

    model, _ = model_and_tokenizer
    taken, original = [], transfer.policy_weights

    def counting(*args):
        for item in original(*args):
            taken.append(item[0])
            yield item

    monkeypatch.setattr(transfer, "policy_weights", counting)
    source = transfer.PolicySource(model)
    names = [meta.name for meta in source.metadata()]
    weights = iter(source)
    next(weights), next(weights)  # the broadcast failed after two tensors
    source.complete()
    assert taken == names  # every weight was taken once, in order
    taken.clear()
    source.complete()  # a push that failed before its pass began takes a whole pass
    assert taken == names


def test_multi_turn_episodes_on_the_server_engine_match_the_trainer_turn_by_turn(
    rollout_server, eos_prone, model_and_tokenizer
):
    from rlvr.rollout.client import ServerEngine

    _, url = rollout_server
    _, tokenizer = model_and_tokenizer
    engine = ServerEngine(
        url, tokenizer, 64, eos_token_ids(tokenizer, eos_prone), source=eos_prone, timeout=60
    )
    try:
        engine.sync_weights()
        episodes, batch, gaps = play_and_measure(engine, eos_prone, tokenizer)
    finally:
        engine.close()
    assert max(len(e.turns) for e in episodes) == 3 and (batch.loss_mask < batch.completion_mask).any()
    assert "sampling/logp_diff/turn_2" in gaps
    assert max(gaps.values()) < LOGP_TOLERANCE, gaps
