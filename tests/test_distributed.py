"""Two CPU processes (gloo) against one: the same completions, losses, gradients and final weights under DDP
and FSDP, and checkpoints written by two ranks that resume on two and on one.

Every run goes through the real launcher (`torchrun ... -m rlvr train`). Sampling is seeded per prompt
(`generation.seed_per_prompt`), so one process with batch 2b draws exactly the completions that two with
batch b draw between them, and everything after that is arithmetic that must agree up to float rounding.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from rlvr.distributed import moment_sums, moments
from rlvr.rollout.engine import concat_generations
from rlvr.rollout.generation import Generation
from rlvr.trainer.sampler import derived_seed
from rlvr.utils import read_jsonl

SRC = Path(__file__).parents[1] / "src"
REWARD = '''
def length_reward(prompts, completions, **kwargs):
    """Deterministic: both runs score the same completions the same."""
    return [len(c[0]["content"]) / 10 for c in completions]
'''
# figures that are sums or means over the whole batch, so they must not depend on how it is split
SAME = ("loss", "grad_norm", "reward", "reward_std", "rewards/length_reward", "frac_reward_zero_std")


@pytest.fixture(scope="module")
def config_file(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("distributed")
    (folder / "rewards.py").write_text(REWARD)
    rows = [{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(8)]
    (folder / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = {
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"dataset": str(folder / "data.jsonl")},
        "generation": {"num_generations": 4, "max_completion_length": 12, "seed_per_prompt": True},
        "rewards": {"functions": [f"{folder / 'rewards.py'}:length_reward"]},
        # beta > 0 (a reference model), mu = 2 (real ratios) and 2 micro-batches per optimizer step
        "algorithm": {"beta": 0.04, "mu": 2},
        "training": {
            "max_steps": 3,
            "batch_size": 8,
            "gradient_accumulation_steps": 2,
            "learning_rate": 1e-3,
            "log_completions_steps": 1,
            "save_steps": 2,
            "save_total_limit": None,
            "seed": 3,
        },
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def launch(
    config_file: Path, output_dir: Path, processes: int, *overrides: str, resume: bool = False
) -> Path:
    """`torchrun --nproc_per_node N -m rlvr train`, each rank on one CPU thread; batch_size is per rank."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "rlvr",
        "train",
        "--config",
        str(config_file),
        f"training.output_dir={output_dir}",
        f"training.batch_size={8 // processes}",
        *overrides,
    ]
    if resume:
        command.insert(command.index("--config"), "--resume")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return output_dir


@pytest.fixture(scope="module")
def one_process(config_file, tmp_path_factory):
    return launch(config_file, tmp_path_factory.mktemp("one") / "run", 1)


@pytest.fixture(scope="module")
def two_ddp(config_file, tmp_path_factory):
    return launch(config_file, tmp_path_factory.mktemp("ddp") / "run", 2, "distributed.strategy=ddp")


@pytest.fixture(scope="module")
def two_ddp_batched(config_file, tmp_path_factory):
    """Batched sampling on each rank's own random stream: resuming it exactly needs each rank's RNG state."""
    output_dir = tmp_path_factory.mktemp("ddp_batched") / "run"
    return launch(config_file, output_dir, 2, "generation.seed_per_prompt=false")


@pytest.fixture(scope="module")
def two_fsdp(config_file, tmp_path_factory):
    return launch(config_file, tmp_path_factory.mktemp("fsdp") / "run", 2, "distributed.strategy=fsdp")


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "final" / "model.safetensors"))


def assert_same_run(run: Path, reference: Path, steps: list[int]) -> None:
    metrics = {m["step"]: m for m in read_jsonl(run / "metrics.jsonl")}
    expected = {m["step"]: m for m in read_jsonl(reference / "metrics.jsonl")}
    assert sorted(metrics) == steps
    for step in steps:
        for key in SAME:
            assert metrics[step][key] == pytest.approx(expected[step][key], rel=1e-5, abs=1e-6), (step, key)
    # the final weights: 6 AdamW steps of lr 1e-3 move them by about 6e-3; float rounding stays near 1e-6
    got, want = weights(run), weights(reference)
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=2e-5, msg=name)


def completions(run: Path) -> list[tuple[int, str]]:
    return [(c["step"], c["completion"]) for c in read_jsonl(run / "completions.jsonl")]


def test_two_ddp_ranks_repeat_one_process(one_process, two_ddp):
    assert completions(two_ddp) == completions(one_process)  # the whole batch, gathered in prompt order
    assert len(completions(two_ddp)) == 3 * 8
    assert_same_run(two_ddp, one_process, steps=[1, 2, 3])
    checkpoint = two_ddp / "checkpoint-2"
    assert {"rng_state_0.pt", "rng_state_1.pt", "optimizer.pt", "trainer_state.json"} <= {
        p.name for p in checkpoint.iterdir()
    }


def test_two_fsdp_ranks_repeat_one_process(one_process, two_fsdp):
    assert completions(two_fsdp) == completions(one_process)
    assert_same_run(two_fsdp, one_process, steps=[1, 2, 3])
    # the gathered state dict is saved like the live model's: the tied output head once, as the embeddings
    assert "lm_head.weight" not in weights(two_fsdp)


def resume_from(checkpoint: Path, output_dir: Path) -> Path:
    output_dir.mkdir(parents=True)
    shutil.copytree(checkpoint, output_dir / checkpoint.name)
    return output_dir


def test_a_checkpoint_of_two_ranks_resumes_on_two_and_on_one(
    config_file, one_process, two_ddp, two_ddp_batched, tmp_path
):
    # On two ranks with batched sampling, rank r restores the random state rank r saved: same completions
    resumed = resume_from(two_ddp_batched / "checkpoint-2", tmp_path / "two")
    on_two = launch(config_file, resumed, 2, "generation.seed_per_prompt=false", resume=True)
    assert completions(on_two) == completions(two_ddp_batched)[-8:]
    assert_same_run(on_two, two_ddp_batched, steps=[3])
    # On one process (batch 8), with seeded sampling: step 3 as the one-process run that never stopped
    on_one = launch(config_file, resume_from(two_ddp / "checkpoint-2", tmp_path / "one"), 1, resume=True)
    assert_same_run(on_one, one_process, steps=[3])
    assert completions(on_one) == completions(one_process)[-8:]


def test_an_fsdp_checkpoint_resumes_on_one_process(config_file, one_process, two_fsdp, tmp_path):
    # the optimizer state was gathered from the shards; here it loads without FSDP
    from_fsdp = resume_from(two_fsdp / "checkpoint-2", tmp_path / "from_fsdp")
    assert_same_run(launch(config_file, from_fsdp, 1, resume=True), one_process, steps=[3])


# ------------------------------------------------------------------------------------ seeded sampling pieces
def test_prompt_seeds_differ_by_step_and_place_and_repeat():
    seeds = {derived_seed(3, step, place) for step in range(10) for place in range(10)}
    assert len(seeds) == 100
    assert derived_seed(3, 1, 2) == derived_seed(3, 1, 2)


def test_groups_sampled_one_by_one_join_as_one_batched_call_would():
    # prompt A is 2 tokens with completions of 1 token; prompt B 1 token with completions of 3 (one truncated)
    a = Generation(
        torch.tensor([[7, 8]]),
        torch.ones(1, 2, dtype=torch.long),
        torch.tensor([[2]]),
        torch.ones(1, 1),
        torch.tensor([False]),
        0,
        torch.tensor([[-0.5]]),
    )
    b = Generation(
        torch.tensor([[9]]),
        torch.ones(1, 1, dtype=torch.long),
        torch.tensor([[5, 6, 4]]),
        torch.ones(1, 3),
        torch.tensor([True]),
        1,
        torch.tensor([[-0.1, -0.2, -0.3]]),
    )
    out = concat_generations([a, b], pad_id=0)
    prompt_ids, prompt_mask, completion_ids, completion_mask = (
        out.prompt_ids,
        out.prompt_mask,
        out.completion_ids,
        out.completion_mask,
    )
    truncated, cut, logps = out.truncated, out.num_prompts_cut, out.sampling_logps
    assert prompt_ids.tolist() == [[7, 8], [0, 9]]  # prompts padded on the left
    assert prompt_mask.tolist() == [[1, 1], [0, 1]]
    assert completion_ids.tolist() == [[2, 0, 0], [5, 6, 4]]  # completions on the right
    assert completion_mask.tolist() == [[1, 0, 0], [1, 1, 1]]
    assert truncated.tolist() == [False, True] and cut == 1
    assert torch.allclose(logps, torch.tensor([[-0.5, 0.0, 0.0], [-0.1, -0.2, -0.3]]))  # 0 where padded


# ------------------------------------------------------------------------------------ statistics over ranks
def test_moments_from_every_ranks_sums_are_the_whole_batchs():
    # rank 0 holds [1, NaN], rank 1 [3, 5]: sum 9, sum_sq 1 + 9 + 25 = 35, count 3 (NaN left out);
    # mean 9 / 3 = 3, unbiased variance (35 - 3 * 3**2) / (3 - 1) = 4, std 2 (as torch.std of [1, 3, 5])
    ranks = [moment_sums(torch.tensor([1.0, math.nan])), moment_sums(torch.tensor([3.0, 5.0]))]
    assert moments({key: ranks[0][key] + ranks[1][key] for key in ranks[0]}) == (3.0, 2.0)
    assert moments(moment_sums(torch.tensor([2.0, math.nan])))[0] == 2.0
    assert math.isnan(moments(moment_sums(torch.tensor([2.0, math.nan])))[1])  # one value: no std
    assert all(math.isnan(v) for v in moments(moment_sums(torch.tensor([math.nan]))))  # none: no mean


# ------------------------------------------------------------------------------------ leaving the group
RANK_SCRIPT = """
import atexit, os, sys
import torch
from rlvr.distributed import all_gather_objects, exit_rank, init_distributed

def gloo_threads_at_finalization():
    names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
    with open(os.path.join(sys.argv[1], "rank" + os.environ["RANK"]), "w") as f:
        f.write(" ".join(sorted(n for n in names if "gloo" in n)))

state = init_distributed()
atexit.register(gloo_threads_at_finalization)
# the reducer keeps the group referenced past destroy_process_group, as the trainer's policy does
trained = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 4))
trained(torch.ones(2, 4)).sum().backward()
assert all_gather_objects(state.rank, state) == [0, 1]  # a collective whose tensors have Python objects
exit_rank(0)
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread names from /proc")
def test_a_finished_rank_ends_without_finalizing_beside_gloo_threads(tmp_path):
    # gloo's worker threads outlive destroy_process_group. If the interpreter finalizes while one of them
    # still holds the last collective's work, its release asks for the GIL, CPython ends the thread with
    # pthread_exit and the unwinding aborts the rank (SIGABRT in 2 of 5 full runs of these tests; the same
    # 3 of 8 times with those threads at nice 19 beside busy processes). A finished rank must end before that.
    script = tmp_path / "script.py"
    script.write_text(RANK_SCRIPT)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [*command, str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    seen = {p.name: p.read_text() for p in tmp_path.glob("rank*") if p.read_text()}
    assert not seen, f"the interpreter finalized beside gloo's threads: {seen}"


# ------------------------------------------------------------------- collectives and DDP, in-process workers
def _worker(rank: int, init_file: str, model_dir: str) -> None:
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM

    from rlvr.config import GenerationConfig
    from rlvr.distributed import (
        DistState,
        all_gather_objects,
        exit_rank,
        gather_objects,
        max_over_ranks,
        mean_over_ranks,
        sum_over_ranks,
        wrap_policy,
    )
    from rlvr.models import load_tokenizer
    from rlvr.rollout import sample

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    state = DistState(rank=rank, world_size=2)
    values = {"length": 10.0 + 5 * rank, "count": 1.0 + rank}
    assert sum_over_ranks(values, state) == {"length": 25.0, "count": 3.0}
    assert mean_over_ranks(values, state) == {"length": 12.5, "count": 1.5}
    assert max_over_ranks(values, state) == {"length": 15.0, "count": 2.0}
    assert all_gather_objects(f"rank {rank}", state) == ["rank 0", "rank 1"]
    assert gather_objects(rank, state) == ([0, 1] if rank == 0 else None)

    # DDP stays synchronised after sampling with the weights cast to bfloat16 for the call (rollout's
    # weights_in swaps each parameter's .data, which would detach DDP's all-reduce hooks)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = load_tokenizer(model_dir)
    policy, trained = wrap_policy(model, "ddp", state, torch.device("cpu"))
    generation = GenerationConfig(num_generations=2, max_completion_length=4)
    with torch.no_grad():
        policy.run(sample, tokenizer, ["What is 2 + 2?"], generation, 2, 64, torch.bfloat16)
    generator = torch.Generator().manual_seed(rank)  # each rank its own batch
    input_ids = torch.randint(5, 300, (2, 12), generator=generator)
    logps, _ = trained(input_ids, torch.ones_like(input_ids), torch.ones(2, 4, dtype=torch.long))
    logps.sum().backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    other = all_gather_objects(grads, state)[1 - rank]
    assert torch.equal(grads, other), "gradients differ between ranks after backward: DDP did not sync"
    exit_rank(0)


def test_collectives_and_ddp_gradient_sync_after_bf16_sampling(tiny_model_dir, tmp_path):
    torch.multiprocessing.spawn(
        _worker, args=(str(tmp_path / "init"), str(tiny_model_dir)), nprocs=2, join=True
    )


# ------------------------------------------------------------------------------- slow: the other paths
LORA = ("model.lora.enabled=true", "model.lora.r=4", "model.lora.target_modules=[q_proj,v_proj]")


@pytest.mark.slow
def test_lora_under_fsdp_trains_as_under_ddp(config_file, tmp_path):
    # LoRA dropout draws from each rank's stream: the same under both strategies, not against one process
    ddp = launch(config_file, tmp_path / "ddp", 2, *LORA, "model.lora.merge=true")
    fsdp = launch(
        config_file, tmp_path / "fsdp", 2, *LORA, "model.lora.merge=true", "distributed.strategy=fsdp"
    )
    for name in ("adapter_model.safetensors", "../final-merged/model.safetensors"):
        got, want = load_file(str(fsdp / "final" / name)), load_file(str(ddp / "final" / name))
        assert got.keys() == want.keys()
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-5)
    for a, b in zip(read_jsonl(fsdp / "metrics.jsonl"), read_jsonl(ddp / "metrics.jsonl")):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-6)
    resumed = resume_from(fsdp / "checkpoint-2", tmp_path / "resumed")
    launch(config_file, resumed, 2, *LORA, "distributed.strategy=fsdp", resume=True)
    assert read_jsonl(resumed / "metrics.jsonl")[0]["loss"] == pytest.approx(
        read_jsonl(fsdp / "metrics.jsonl")[2]["loss"], rel=1e-4, abs=1e-6
    )


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_whole_groups_per_micro_batch_share_their_prompt_under_both(
    config_file, one_process, tmp_path, strategy
):
    # one micro-batch of 4 rows = one group: completion_logps runs the prompt once (two decoder calls per
    # forward), under DDP's and FSDP's hooks; the one-process run splits its batch in two the same way
    run = launch(
        config_file,
        tmp_path / strategy,
        2,
        "training.gradient_accumulation_steps=1",
        f"distributed.strategy={strategy}",
    )
    assert_same_run(run, one_process, steps=[1, 2, 3])


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_evaluation_during_training_is_sharded_and_agreed(config_file, tmp_path, strategy):
    data = config_file.parent / "data.jsonl"
    run = launch(
        config_file,
        tmp_path / strategy,
        2,
        f"distributed.strategy={strategy}",
        "training.eval_steps=1",
        f"training.eval_dataset={data}",
        "training.eval_limit=3",  # 2 problems on rank 0, 1 on rank 1
        "training.eval_reward=boxed_exact",
        "training.save_steps=0",
        "training.save_total_limit=1",
    )
    metrics = read_jsonl(run / "metrics.jsonl")
    assert [m["eval/num_problems"] for m in metrics] == [3, 3, 3]
    # nothing beats step 1's accuracy, so its checkpoint is the best and the one kept
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-1"]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_bf16_two_ranks_track_one_process(config_file, tmp_path, strategy):
    one = launch(config_file, tmp_path / "one", 1, "training.bf16=true")
    two = launch(
        config_file, tmp_path / strategy, 2, "training.bf16=true", f"distributed.strategy={strategy}"
    )
    # step 1 samples from the same weights: the same completions; bfloat16 rounding differs with the split
    assert completions(two)[:8] == completions(one)[:8]
    first, first_one = read_jsonl(two / "metrics.jsonl")[0], read_jsonl(one / "metrics.jsonl")[0]
    for key in ("loss", "grad_norm", "reward"):
        assert first[key] == pytest.approx(first_one[key], rel=2e-3, abs=1e-4), key


@pytest.mark.slow
def test_reward_workers_under_torchrun(config_file, two_ddp, tmp_path):
    run = launch(config_file, tmp_path / "workers", 2, "rewards.num_workers=2", "rewards.timeout=60")
    assert completions(run) == completions(two_ddp)
    assert_same_run(run, two_ddp, steps=[1, 2, 3])


@pytest.mark.slow
def test_accelerate_launch_sets_up_the_same_run(config_file, two_ddp, tmp_path):
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    if accelerate is None:
        pytest.skip("accelerate is not installed")
    command = [
        accelerate,
        "launch",
        "--multi_gpu",  # on a machine without GPUs the processes fall back to gloo on the CPU
        "--num_processes=2",
        "--num_machines=1",
        "--mixed_precision=no",
        "--dynamo_backend=no",
        "-m",
        "rlvr",
        "train",
        "--config",
        str(config_file),
        f"training.output_dir={tmp_path / 'run'}",
        "training.batch_size=4",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-6000:]
    assert_same_run(tmp_path / "run", two_ddp, steps=[1, 2, 3])
