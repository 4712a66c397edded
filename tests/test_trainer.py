"""The trainer on a tiny model built from a config: it learns, saves, resumes exactly, and fails clearly."""

import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM

from rlvr import GRPOConfig, GRPOTrainer
from rlvr.rewards import RewardError
from rlvr.utils import read_jsonl

ROWS = [{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(8)]


def length_reward(prompts, completions, answer, **kwargs):
    """Longer is better: enough signal for a tiny random model to move."""
    return [len(c[0]["content"]) / 10 for c in completions]


def digit_reward(prompts, completions, **kwargs):
    """None (not applicable) for completions without a digit."""
    return [1.0 if any(ch.isdigit() for ch in c[0]["content"]) else None for c in completions]


def make_config(model_dir, output_dir, **sections):
    raw = {
        "model": {"name_or_path": str(model_dir)},
        "generation": {"num_generations": 4, "max_completion_length": 12},
        "training": {
            "output_dir": str(output_dir),
            "max_steps": 3,
            "batch_size": 8,
            "learning_rate": 1e-3,
            "log_completions_steps": 1,
            "seed": 3,
        },
        "algorithm": {"beta": 0.0},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return GRPOConfig.from_dict(raw)


def read_metrics(output_dir):
    return read_jsonl(output_dir / "metrics.jsonl")


def test_a_few_steps_change_every_trainable_parameter(tiny_model_dir, tmp_path):
    config = make_config(
        tiny_model_dir,
        tmp_path / "run",
        algorithm={"beta": 0.05, "mu": 2},
        training={"gradient_accumulation_steps": 2},
    )
    trainer = GRPOTrainer(config, reward_funcs=[length_reward, digit_reward], train_dataset=ROWS)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    final = trainer.train()
    unchanged = [
        n for n, p in trainer.model.named_parameters() if p.requires_grad and torch.equal(p, before[n])
    ]
    assert unchanged == []

    metrics = read_metrics(tmp_path / "run")
    assert [m["step"] for m in metrics] == [1, 2, 3]
    expected_keys = {
        "loss",
        "reward",
        "reward_std",
        "rewards/length_reward",
        "rewards/digit_reward",
        "frac_reward_zero_std",
        "kl",
        "clip_ratio/low",
        "clip_ratio/high",
        "entropy",
        "completion_length/mean",
        "completion_length/max",
        "truncated_frac",
        "learning_rate",
        "grad_norm",
        "step_seconds",
        "tokens_per_second",
    }
    assert expected_keys <= set(metrics[-1])
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in metrics)
    assert metrics[-1]["kl"] > 0  # the policy moved away from the frozen reference

    completions = read_jsonl(tmp_path / "run" / "completions.jsonl")
    assert len(completions) == 3 * 8
    assert {"prompt", "completion", "rewards", "advantage", "answer"} <= set(completions[0])
    # advantages within each logged group of 4 sum to zero (group-relative)
    first = [c["advantage"] for c in completions[:4]]
    assert sum(first) == pytest.approx(0.0, abs=1e-4)

    reloaded = AutoModelForCausalLM.from_pretrained(final)
    for name, param in reloaded.named_parameters():
        torch.testing.assert_close(param, dict(trainer.model.named_parameters())[name])
    assert (tmp_path / "run" / "config.yaml").exists()


def test_resume_gives_the_same_next_steps_as_an_uninterrupted_run(tiny_model_dir, tmp_path):
    sections = {
        "training": {
            "max_steps": 4,
            "save_steps": 2,
            "save_total_limit": None,
            "lr_scheduler_type": "cosine",
            "warmup_ratio": 0.25,
        },
        "algorithm": {"mu": 2, "beta": 0.04},
    }
    full_dir = tmp_path / "full"
    GRPOTrainer(
        make_config(tiny_model_dir, full_dir, **sections), reward_funcs=[length_reward], train_dataset=ROWS
    ).train()
    uninterrupted = read_metrics(full_dir)

    # Pretend the run died after step 2: keep checkpoint-2 and the metrics up to it, then resume.
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(full_dir / "checkpoint-2", resumed_dir / "checkpoint-2")
    # as if written by an optimizer on the foreach kernel (checkpoints from before the fused one)
    blobs = torch.load(resumed_dir / "checkpoint-2" / "optimizer.pt", weights_only=False)
    for group in blobs["optimizer"]["param_groups"]:
        group["fused"], group["foreach"] = None, True
    torch.save(blobs, resumed_dir / "checkpoint-2" / "optimizer.pt")
    trainer = GRPOTrainer(
        make_config(tiny_model_dir, resumed_dir, **sections), reward_funcs=[length_reward], train_dataset=ROWS
    )
    trainer.train(resume=True)
    assert all(g["fused"] and not g["foreach"] for g in trainer.optimizer.param_groups)  # this run's kernel
    resumed = read_metrics(resumed_dir)
    assert [m["step"] for m in resumed] == [3, 4]
    for a, b in zip(uninterrupted[2:], resumed):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
        assert a["reward"] == pytest.approx(b["reward"], abs=1e-6)
        assert a["learning_rate"] == pytest.approx(b["learning_rate"])


def test_lora_trains_only_adapters_and_saves_an_adapter(tiny_model_dir, tmp_path):
    config = make_config(
        tiny_model_dir,
        tmp_path / "lora",
        algorithm={"beta": 0.04},
        model={
            "lora": {
                "enabled": True,
                "r": 4,
                "alpha": 8,
                "merge": True,
                "target_modules": ["q_proj", "v_proj"],
            }
        },
    )
    trainer = GRPOTrainer(config, reward_funcs=[length_reward], train_dataset=ROWS)
    assert trainer.ref_model is None  # the base model with adapters off is the reference
    trainable = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    trainer.train()
    changed = [
        n for n, p in trainer.model.named_parameters() if p.requires_grad and not torch.equal(p, trainable[n])
    ]
    assert any("lora_B" in n for n in changed)
    assert (tmp_path / "lora" / "final" / "adapter_model.safetensors").exists()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "lora" / "final-merged")
    assert not any("lora" in n for n, _ in merged.named_parameters())


def test_beta_zero_loads_no_reference(tiny_model_dir, tmp_path):
    trainer = GRPOTrainer(
        make_config(tiny_model_dir, tmp_path / "r"), reward_funcs=[length_reward], train_dataset=ROWS
    )
    assert trainer.ref_model is None


def test_mu_above_one_uses_real_ratios(tiny_model_dir, tmp_path):
    # With a large learning rate the second update sees a policy that moved: ratios leave [0.8, 1.2].
    config = make_config(
        tiny_model_dir,
        tmp_path / "mu",
        algorithm={"mu": 3},
        training={"learning_rate": 5e-2, "max_steps": 2, "max_grad_norm": None},
    )
    GRPOTrainer(config, reward_funcs=[length_reward], train_dataset=ROWS).train()
    metrics = read_metrics(tmp_path / "mu")
    assert max(m["clip_ratio/low"] + m["clip_ratio/high"] for m in metrics) > 0


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_every_loss_type_trains(tiny_model_dir, tmp_path, loss_type):
    config = make_config(
        tiny_model_dir,
        tmp_path / loss_type,
        algorithm={"loss_type": loss_type, "epsilon_high": 0.28},
        training={"max_steps": 1, "gradient_accumulation_steps": 4},
    )
    trainer = GRPOTrainer(config, reward_funcs=[length_reward], train_dataset=ROWS)
    before = trainer.model.lm_head.weight.detach().clone()
    trainer.train()
    assert torch.isfinite(torch.tensor(read_metrics(tmp_path / loss_type)[0]["loss"]))
    assert not torch.equal(before, trainer.model.lm_head.weight)


def test_masked_truncated_completions_do_not_train(tiny_model_dir, tmp_path):
    # 12 tokens are too few for the random model to reach EOS: every completion is truncated and masked
    config = make_config(
        tiny_model_dir,
        tmp_path / "masked",
        algorithm={"mask_truncated_completions": True},
        training={"max_steps": 1, "weight_decay": 0.0},
    )
    trainer = GRPOTrainer(config, reward_funcs=[length_reward], train_dataset=ROWS)
    before = trainer.model.lm_head.weight.detach().clone()
    trainer.train()
    metrics = read_metrics(tmp_path / "masked")[0]
    assert metrics["truncated_frac"] == 1.0 and metrics["loss"] == 0.0
    assert torch.equal(before, trainer.model.lm_head.weight)


def test_reference_refresh_and_soft_sync(tiny_model_dir, tmp_path):
    config = make_config(
        tiny_model_dir,
        tmp_path / "hard",
        algorithm={"beta": 0.1, "ref_model_refresh_steps": 1},
        training={"max_steps": 1},
    )
    trainer = GRPOTrainer(config, reward_funcs=[length_reward], train_dataset=ROWS)
    trainer.train()
    for (_, p), (_, r) in zip(trainer.model.named_parameters(), trainer.ref_model.named_parameters()):
        assert torch.equal(p, r)

    config = make_config(
        tiny_model_dir,
        tmp_path / "soft",
        algorithm={
            "beta": 0.1,
            "sync_ref_model": True,
            "ref_model_sync_steps": 1,
            "ref_model_mixup_alpha": 0.25,
        },
        training={"max_steps": 1},
    )
    trainer = GRPOTrainer(config, reward_funcs=[length_reward], train_dataset=ROWS)
    ref_before = {n: p.detach().clone() for n, p in trainer.ref_model.named_parameters()}
    trainer.train()
    policy = dict(trainer.model.named_parameters())
    for name, ref in trainer.ref_model.named_parameters():
        # ref <- 0.25 * policy + 0.75 * ref
        torch.testing.assert_close(ref, 0.25 * policy[name].detach() + 0.75 * ref_before[name])


def test_a_reward_that_raises_names_itself_and_is_called_once(tiny_model_dir, tmp_path):
    calls = []

    def fragile(prompts, completions, **kwargs):
        calls.append(len(completions))
        raise KeyError("gold")

    trainer = GRPOTrainer(
        make_config(tiny_model_dir, tmp_path / "x"), reward_funcs=[fragile], train_dataset=ROWS
    )
    with pytest.raises(
        RewardError,
        match=r"^reward function 'fragile' raised KeyError: 'gold' \(at test_trainer.py:\d+\), on one of "
        r"completions 0..7 \(it is not called again to find which: it may be paid or have side effects\)$",
    ):
        trainer.train()
    assert calls == [8]  # not once more per completion: a judge model would bill each call


def test_a_reward_returning_the_wrong_length_is_an_error(tiny_model_dir, tmp_path):
    def short(prompts, completions, **kwargs):
        return [1.0]

    trainer = GRPOTrainer(
        make_config(tiny_model_dir, tmp_path / "y"), reward_funcs=[short], train_dataset=ROWS
    )
    with pytest.raises(RewardError, match="'short' must return a list of 8"):
        trainer.train()


def test_grpo_raises_a_reward_the_model_can_learn(tiny_model_dir, tmp_path):
    # Reward: how often the letter "a" appears. The random tiny model emits it rarely; if the update
    # had the wrong sign or the advantages were misaligned with completions, the reward would not rise.
    def count_a(prompts, completions, **kwargs):
        return [c[0]["content"].count("a") / 4 for c in completions]

    config = make_config(
        tiny_model_dir,
        tmp_path / "learn",
        generation={"num_generations": 8, "max_completion_length": 16},
        training={"max_steps": 25, "batch_size": 32, "learning_rate": 3e-3, "log_completions_steps": 0},
    )
    GRPOTrainer(config, reward_funcs=[count_a], train_dataset=ROWS).train()
    rewards = [m["reward"] for m in read_metrics(tmp_path / "learn")]
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last > 3 * first, rewards


def test_tensorboard_gets_the_same_scalars(tiny_model_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = make_config(
        tiny_model_dir, tmp_path / "tb", training={"max_steps": 2, "report_to": ["tensorboard"]}
    )
    GRPOTrainer(config, reward_funcs=[length_reward], train_dataset=ROWS).train()
    events = EventAccumulator(str(tmp_path / "tb" / "tensorboard"))
    events.Reload()
    logged = [e.value for e in events.Scalars("reward")]
    assert logged == pytest.approx([m["reward"] for m in read_metrics(tmp_path / "tb")])
