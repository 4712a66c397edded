"""The rollout-engine interface without vLLM: the weights an engine is given (LoRA merged, FSDP gathered), the
token-engine front's layout and seeds, and the clear error when vLLM is missing."""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlvr.config import GenerationConfig, GRPOConfig
from rlvr.rollout.engine import EngineError, TokenEngine, assemble
from rlvr.rollout.generation import completion_mask_from_eos
from rlvr.rollout.weights import policy_weight_shapes, policy_weights

SRC = Path(__file__).resolve().parents[1] / "src"


def lora_model(model_dir, target_modules=("q_proj", "v_proj")):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model_dir),
        LoraConfig(r=4, lora_alpha=8, target_modules=list(target_modules), lora_dropout=0.0),
    )
    torch.manual_seed(1)
    with torch.no_grad():  # B starts at 0 (no change); give the adapters something to merge
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    return model


def test_lora_weights_are_merged_as_peft_merges_them_and_the_adapters_stay(tiny_model_dir):
    model = lora_model(tiny_model_dir)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    pushed = dict(policy_weights(model))
    # peft's own merge on a copy is the reference
    merged = copy.deepcopy(model).merge_and_unload().state_dict()
    tied = [k for k in merged if k not in pushed]
    assert tied == ["lm_head.weight"]  # tied to the embeddings, which are pushed once
    assert pushed.keys() == merged.keys() - set(tied)
    for name, value in pushed.items():
        torch.testing.assert_close(value, merged[name], rtol=1e-5, atol=1e-6, msg=name)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(
        pushed[q], before[f"base_model.model.{q.replace('.weight', '.base_layer.weight')}"]
    )
    for name, param in model.named_parameters():  # nothing of the trainer's model was changed
        assert torch.equal(param, before[name]), name
    assert not any(layer.merged for layer in model.modules() if hasattr(layer, "merged"))


def test_disabled_adapters_push_the_base_weights(tiny_model_dir):
    model = lora_model(tiny_model_dir)
    with model.disable_adapter():
        pushed = dict(policy_weights(model))
    base = model.get_base_model()
    q = "model.layers.0.self_attn.q_proj"
    assert torch.equal(pushed[f"{q}.weight"], base.get_submodule(q).base_layer.weight)


def test_weights_can_be_cast_for_the_engine(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    pushed = dict(policy_weights(model, torch.bfloat16))
    assert {v.dtype for v in pushed.values()} == {torch.bfloat16}
    assert pushed.keys() == {n for n, _ in model.named_parameters()}


@pytest.mark.parametrize("kind", ["full", "lora", "bfloat16"])
def test_announced_shapes_are_what_the_push_yields(tiny_model_dir, kind):
    """A collective push announces (name, dtype, shape) before sending; the server sizes its buffers by it."""
    from transformers import AutoModelForCausalLM

    model = (
        lora_model(tiny_model_dir) if kind == "lora" else AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    )
    dtype = torch.bfloat16 if kind == "bfloat16" else None
    pushed = [(name, value.dtype, tuple(value.shape)) for name, value in policy_weights(model, dtype)]
    assert policy_weight_shapes(model, dtype) == pushed
    assert any(".q_proj.weight" in name for name, _, _ in pushed)
    assert not any("lora_" in name or "base_layer" in name for name, _, _ in pushed)


FSDP_SCRIPT = """
import os, sys
import torch
import torch.distributed as dist
from transformers import AutoModelForCausalLM
from rlvr.distributed import DistState, exit_rank, wrap_policy
from rlvr.rollout.weights import policy_weight_shapes, policy_weights

torch.set_num_threads(1)
dist.init_process_group("gloo")
rank = dist.get_rank()
state = DistState(rank=rank, world_size=2)
full = AutoModelForCausalLM.from_pretrained(sys.argv[1]).state_dict()
model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
wrap_policy(model, "fsdp", state, torch.device("cpu"))
sharded = [n for n, p in model.named_parameters() if hasattr(p, "full_tensor")]
assert len(sharded) == len(list(model.parameters())), "FSDP left parameters unsharded"
gathered = []
original = type(model.model.embed_tokens.weight).full_tensor
def counting(self, *args, **kwargs):
    gathered.append(1)
    return original(self, *args, **kwargs)
type(model.model.embed_tokens.weight).full_tensor = counting
shapes = policy_weight_shapes(model)
assert not gathered, "announcing the shapes gathered weights"
assert shapes == [(n, full[n].dtype, tuple(full[n].shape)) for n, _ in model.named_parameters()]
weights = policy_weights(model)
name, value = next(weights)
assert len(gathered) == 1, f"taking one weight gathered {len(gathered)}: the iterator is not lazy"
pushed = {name: value, **dict(weights)}
assert len(gathered) == len(pushed)
assert pushed.keys() == {n for n, _ in model.named_parameters()}
for key, value in pushed.items():
    assert value.shape == full[key].shape, key
    assert torch.equal(value, full[key]), key
print(f"rank {rank}: {len(pushed)} weights gathered whole, one at a time")
dist.barrier()
exit_rank(0)
"""


def test_fsdp_weights_are_gathered_one_parameter_at_a_time_on_two_ranks(tiny_model_dir, tmp_path):
    import os

    script = tmp_path / "fsdp_weights.py"
    script.write_text(FSDP_SCRIPT)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [*command, str(script), str(tiny_model_dir)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    assert done.stdout.count("weights gathered whole, one at a time") == 2


class RecordingEngine(TokenEngine):
    """Answers every prompt with its seed's digits, to check the front's layout and seeds."""

    def __init__(self, tokenizer, eos_id):
        super().__init__(tokenizer, max_prompt_length=64, eos_ids=[eos_id])
        self.calls = []

    def generate_ids(self, prompts, num_samples, config, seeds, greedy):
        self.calls.append((prompts, seeds))
        eos = self.eos_ids[0]
        return [
            ([5, 6, eos] if i % 2 else [5, 6, 7, 8], None if greedy else [-1.0] * (3 if i % 2 else 4))
            for _ in prompts
            for i in range(num_samples)
        ]


def test_token_engine_lays_out_answers_as_rlvrs_loop_does(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    engine = RecordingEngine(tokenizer, tokenizer.eos_token_id)
    config = GenerationConfig(max_completion_length=4)
    out = engine.generate(["What is 2 + 3?", "Natalia sold clips"], 2, config, seeds=[7, 8])
    prompt_ids, prompt_mask, completion_ids, completion_mask = (
        out.prompt_ids,
        out.prompt_mask,
        out.completion_ids,
        out.completion_mask,
    )
    truncated, cut, logps = out.truncated, out.num_prompts_cut, out.sampling_logps
    assert prompt_ids.shape[0] == 4  # each prompt repeated for its G samples, adjacent
    assert torch.equal(prompt_ids[0], prompt_ids[1]) and not torch.equal(prompt_ids[1], prompt_ids[2])
    sent, seeds = engine.calls[0]
    assert [len(p) for p in sent] == [int(m.sum()) for m in prompt_mask[::2]]  # no padding sent
    assert seeds == [14, 16]  # seed * G: sample i of a prompt is seeded seed*G + i, never another's
    eos = tokenizer.eos_token_id
    assert completion_ids.tolist() == [[5, 6, 7, 8], [5, 6, eos, tokenizer.pad_token_id]] * 2
    mask, trunc = completion_mask_from_eos(completion_ids, [eos])
    assert torch.equal(completion_mask, mask) and torch.equal(truncated, trunc)
    assert truncated.tolist() == [True, False, True, False]
    assert logps.tolist() == [[-1.0] * 4, [-1.0, -1.0, -1.0, 0.0]] * 2  # 0 past the EOS
    assert cut == 0


def test_token_engine_draws_seeds_from_the_process_state_when_none_are_given(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    engine = RecordingEngine(tokenizer, tokenizer.eos_token_id)
    config = GenerationConfig(max_completion_length=4)
    torch.manual_seed(0)
    engine.generate(["a", "b"], 2, config)
    torch.manual_seed(0)
    engine.generate(["a", "b"], 2, config)
    torch.manual_seed(1)
    engine.generate(["a", "b"], 2, config)
    first, again, other = (seeds for _, seeds in engine.calls)
    assert first == again != other


def test_assemble_keeps_one_eos_when_nothing_was_generated():
    out = assemble(torch.tensor([[4]]), torch.tensor([[1]]), [([], [])], [2], 0, 0)
    assert (
        out.completion_ids.tolist() == [[2]]
        and out.completion_mask.tolist() == [[1]]
        and out.truncated.tolist() == [False]
    )


@pytest.mark.parametrize(
    "vllm, message",
    [
        ({}, r"generation.engine=vllm needs vLLM, which is not installed: .*make setup-vllm"),
        (
            {"mode": "server", "weight_transfer": "collective"},
            r"weight_transfer=collective needs vLLM in the training processes.*make setup-vllm.*"
            r"weight_transfer=http",
        ),
    ],
)
def test_vllm_missing_is_named_before_any_model_loads(tiny_model_dir, tmp_path, monkeypatch, vllm, message):
    import rlvr.trainer.trainer as trainer_module
    from rlvr.trainer import GRPOTrainer

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real_find_spec(name, *a)
    )

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the missing engine was reported")

    monkeypatch.setattr(trainer_module, "load_policy", no_loading)
    config = GRPOConfig.from_dict(
        {
            "model": {"name_or_path": str(tiny_model_dir)},
            "generation": {"engine": "vllm", "num_generations": 2},
            "vllm": vllm,
            "training": {"output_dir": str(tmp_path / "run"), "batch_size": 4},
        }
    )
    with pytest.raises(EngineError, match=message):
        GRPOTrainer(config, reward_funcs=[lambda prompts, completions, **kw: [0.0] * len(completions)])


def test_eval_with_vllm_missing_says_how_to_install(tiny_model_dir, tmp_path, monkeypatch, capsys):
    from rlvr.cli import main

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real_find_spec(name, *a)
    )
    data = tmp_path / "problems.jsonl"
    data.write_text('{"question": "What is 2 + 3?", "answer": "5"}\n')
    code = main(
        [
            "eval",
            "--model",
            str(tiny_model_dir),
            "--dataset",
            str(data),
            "--engine",
            "vllm",
            "--output",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "needs vLLM, which is not installed" in err and "make setup-vllm" in err
    assert not (tmp_path / "out").exists()


def test_vllm_config_is_checked():
    from rlvr.config import ConfigError

    for raw, message in [
        ({"vllm": {"gpu_memory_utilization": 1.5}}, "gpu_memory_utilization must be in"),
        ({"vllm": {"max_model_len": 64}}, "shorter than data.max_prompt_length"),
        ({"vllm": {"server_url": "localhost:8000"}}, "must start with http"),
        ({"vllm": {"cpu_kv_cache_gb": 0}}, "cpu_kv_cache_gb must be > 0"),
        ({"generation": {"engine": "sglang"}}, "generation.engine must be one of"),
        ({"vllm": {"weight_transfer": "collective", "weights_dir": "/shared"}}, "drop one of the two"),
        ({"vllm": {"weight_transfer": "nccl"}}, "vllm.weight_transfer must be one of"),
        ({"vllm": {"weight_transfer_port": 70000}}, "weight_transfer_port must be 0"),
    ]:
        with pytest.raises(ConfigError, match=message):
            GRPOConfig.from_dict(raw)


class BrokenPushEngine:
    """What the rollout server's app needs of an engine, with a broadcast that fails part-way."""

    weight_versions = 0
    weight_transfer = "gloo"

    def receive_weights(self, update_info):
        raise RuntimeError("Connection closed by peer")

    def sample_ids(self, *args):
        raise AssertionError("a server with incomplete weights sampled")


def test_a_server_whose_broadcast_failed_part_way_refuses_to_sample():
    from fastapi.testclient import TestClient

    from rlvr.rollout.server import create_app

    client = TestClient(create_app(BrokenPushEngine(), "tiny", {"model_type": "llama"}))
    assert client.get("/health").json()["status"] == "ok"
    update = {"names": ["w"], "dtype_names": ["float32"], "shapes": [[2]]}
    pushed = client.post("/weights/transfer", json={"update_info": update})
    assert pushed.status_code == 500 and "Connection closed by peer" in pushed.text
    assert client.get("/health").json()["status"] == "broken"
    asked = client.post("/generate", json={"prompts": [[1, 2]], "eos_ids": [2]})
    assert asked.status_code == 503 and "restart `rlvr serve-rollouts`" in asked.text
    assert "resume the run from its last checkpoint" in asked.text


def test_a_push_to_a_server_restarted_since_the_run_joined_it_stops_before_broadcasting():
    from types import SimpleNamespace

    from rlvr.rollout.client import _TransferClient

    server = SimpleNamespace(
        url="http://rollouts:8000", joined="first", _healthy=lambda: {"instance": "first"}
    )
    _TransferClient(server).start_weight_update()  # the same server: the push goes ahead
    server._healthy = lambda: {"instance": "second"}
    with pytest.raises(EngineError, match=r"rollouts:8000 was restarted since this run joined it.*resume"):
        _TransferClient(server).start_weight_update()


def test_hf_engine_takes_token_ids_and_answers_as_token_engines_do(tiny_model_dir):
    # episodes hand the engine the tokens they hold: rlvr's loop must sample from those ids exactly as from
    # the text they came from, and answer in generate_ids' shape (ids up to the EOS, their log-probs)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlvr.rollout.engine import HFEngine

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    engine = HFEngine(model, tokenizer, max_prompt_length=64, per_prompt_seeds=True)
    texts = ["What is 2 + 3?", "Natalia sold clips to 48 of her friends"]
    ids = [tokenizer(t)["input_ids"] for t in texts]
    config = GenerationConfig(max_completion_length=6, temperature=1.0)
    from_text = engine.generate(texts, 2, config, seeds=[4, 5])
    from_ids = engine.generate_ids(ids, 2, config, seeds=[4, 5], greedy=False)
    assert len(from_ids) == 4
    for row, (tokens, logps) in enumerate(from_ids):
        mask = from_text.completion_mask[row].bool()
        assert tokens == from_text.completion_ids[row][mask].tolist()
        assert logps == from_text.sampling_logps[row][mask].tolist()
    batched = HFEngine(
        model, tokenizer, max_prompt_length=64
    )  # one call for the wave, seeded by all its seeds
    first = batched.generate_ids(ids, 2, config, seeds=[4, 5], greedy=False)
    assert first == batched.generate_ids(ids, 2, config, seeds=[4, 5], greedy=False)
    assert first != batched.generate_ids(ids, 2, config, seeds=[4, 6], greedy=False)
    greedy = engine.generate_ids(ids, 1, config, seeds=None, greedy=True)
    assert all(logps is None for _, logps in greedy)
    long_prompt = ids[1] * 8  # longer than max_prompt_length: taken whole, never cut
    whole = HFEngine(model, tokenizer, max_prompt_length=len(long_prompt)).generate(
        [long_prompt], 1, config, [1]
    )
    assert whole.num_prompts_cut == 0 and len(long_prompt) > 64
    tokens, _ = engine.generate_ids([long_prompt], 1, config, seeds=[1], greedy=False)[0]
    assert tokens == whole.completion_ids[0][whole.completion_mask[0].bool()].tolist()
