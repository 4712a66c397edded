"""The GRPO-family options wired into the trainer: a few steps on the tiny model for each, metrics logged."""

import math

import pytest
import torch
from test_trainer import ROWS, length_reward, make_config

from rlvr import GRPOConfig, GRPOTrainer
from rlvr.config import ConfigError
from rlvr.utils import read_jsonl


def sometimes_none(prompts, completions, **kwargs):
    """None for every completion whose text has an even length: those are unscorable (the only reward)."""
    return [None if len(c[0]["content"]) % 2 == 0 else len(c[0]["content"]) / 10 for c in completions]


def first_char_reward(prompts, completions, **kwargs):
    return [float(bool(c[0]["content"]) and c[0]["content"][0].isalpha()) for c in completions]


OPTIONS = {
    "gspo": {"importance_sampling_level": "sequence", "mu": 2},
    "cispo": {"loss_type": "cispo", "cispo_clip_max": 2.0, "mu": 2},
    "delta-dapo": {"loss_type": "dapo", "epsilon_high": 0.28, "delta": 2.0, "mu": 2},
    "kl-k1-reward": {"beta": 0.05, "kl_estimator": "k1", "kl_in": "reward"},
    "kl-k2-bias-corrected": {"beta": 0.05, "kl_estimator": "k2", "use_bias_correction_kl": True, "mu": 2},
    "top-entropy": {"top_entropy_quantile": 0.2},
    "is-token-truncate": {
        "importance_sampling_correction": True,
        "importance_sampling_mode": "token_truncate",
    },
    "is-sequence-mask": {"importance_sampling_correction": True, "importance_sampling_clip_min": 0.5},
    "gdpo": {"multi_objective_aggregation": "normalize_then_sum"},
    "old-logps-from-the-sampler": {"old_logps_source": "sampler", "mu": 2},
    "off-policy-mask": {"off_policy_mask_threshold": 0.5, "mu": 2},
}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_each_option_trains(tiny_model_dir, tmp_path, name):
    config = make_config(
        tiny_model_dir,
        tmp_path / "run",
        algorithm=OPTIONS[name],
        training={"max_steps": 1, "gradient_accumulation_steps": 2},
    )
    trainer = GRPOTrainer(config, reward_funcs=[length_reward, first_char_reward], train_dataset=ROWS)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1]
    for m in metrics:
        assert math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"])
        assert {"sampling/logp_diff/mean", "sampling/is_ratio/min", "sampling/is_ratio/max"} <= set(m)
        assert m["unscorable"] == 0
    assert any(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())


def test_sampler_logps_are_the_trainers_in_float32(tiny_model_dir, tmp_path):
    # float32 sampling and scoring, temperature 0.7 and top_k off: the decode loop's log-probs of the drawn
    # tokens are the trainer's up to summation order (prepacked matmuls, a KV cache)
    config = make_config(
        tiny_model_dir, tmp_path / "run", generation={"temperature": 0.7}, training={"max_steps": 1}
    )
    GRPOTrainer(config, reward_funcs=[length_reward], train_dataset=ROWS).train()
    (m,) = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert m["sampling/logp_diff/max"] < 1e-4
    assert (
        0.9999
        < m["sampling/is_ratio/min"]
        <= m["sampling/is_ratio/mean"]
        <= m["sampling/is_ratio/max"]
        < 1.0001
    )
    assert m["sampling/is_ratio/outside"] == 0  # nothing masked by the default bound of 3


def test_unscorable_completions_get_zero_advantage_and_are_counted(tiny_model_dir, tmp_path):
    config = make_config(tiny_model_dir, tmp_path / "run", training={"max_steps": 2})
    GRPOTrainer(config, reward_funcs=[sometimes_none], train_dataset=ROWS).train()
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    records = read_jsonl(tmp_path / "run" / "completions.jsonl")
    none = [r for r in records if r["rewards"]["sometimes_none"] is None]
    assert none, "the tiny model gave no even-length completion: pick another seed"
    assert all(r["advantage"] == 0.0 and r["reward"] is None for r in none)
    assert sum(m["unscorable"] for m in metrics) == len(none)
    # the logged mean reward is over the scorable completions only
    for step, m in enumerate(metrics, start=1):
        scored = [r["reward"] for r in records if r["step"] == step and r["reward"] is not None]
        assert m["reward"] == pytest.approx(sum(scored) / len(scored), abs=1e-5)


@pytest.mark.parametrize(
    "algorithm, key",
    [
        ({"delta": 1.1}, "algorithm.delta"),
        ({"cispo_clip_min": 6.0}, "algorithm.cispo_clip_min"),
        ({"top_entropy_quantile": 1.5}, "algorithm.top_entropy_quantile"),
        ({"importance_sampling_clip_min": 4.0}, "algorithm.importance_sampling_clip_min"),
        ({"use_bias_correction_kl": True, "kl_in": "reward"}, "algorithm.use_bias_correction_kl"),
        ({"kl_estimator": "k4"}, "algorithm.kl_estimator"),
        ({"importance_sampling_mode": "token_clip"}, "algorithm.importance_sampling_mode"),
        (
            {"old_logps_source": "sampler", "importance_sampling_correction": True},
            "algorithm.old_logps_source",
        ),
        ({"old_logps_source": "proximal"}, "algorithm.old_logps_source"),
        ({"off_policy_mask_threshold": -0.1}, "algorithm.off_policy_mask_threshold"),
    ],
)
def test_bad_objective_options_name_the_key(algorithm, key):
    with pytest.raises(ConfigError, match=key):
        GRPOConfig.from_dict({"algorithm": algorithm})


@pytest.mark.parametrize("source", ["trainer", "sampler"])
def test_with_old_logps_from_the_sampler_the_clip_is_against_the_policy_that_sampled(
    tiny_model_dir, tmp_path, source
):
    """A sampler that gave every drawn token 1 nat less than the trainer does (as a policy some steps behind
    would): anchored at the sampler, the ratio is e at the first update and the clip holds every token of a
    positive advantage (clip_ratio/high 1 of those); anchored at the trainer, the ratio is 1 and nothing is
    clipped (TRL's AsyncGRPO anchors at the sampler)."""
    config = make_config(
        tiny_model_dir,
        tmp_path / "run",
        algorithm={"old_logps_source": source, "epsilon": 0.2},
        training={"max_steps": 1},
    )
    trainer = GRPOTrainer(config, reward_funcs=[length_reward], train_dataset=ROWS)
    generate = trainer.generate_rollout

    def behind(*args, **kwargs):
        rollout, timings = generate(*args, **kwargs)
        rollout.sampling_logps = rollout.sampling_logps - 1.0
        return rollout, timings

    trainer.generate_rollout = behind
    trainer.train()
    (m,) = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert m["sampling/logp_diff/mean"] == pytest.approx(1.0, abs=1e-3)  # the gap is measured the same way
    if source == "sampler":
        assert m["clip_ratio/high"] > 0.2 and m["clip_ratio/low"] == 0.0
    else:
        assert m["clip_ratio/high"] == 0.0 and m["clip_ratio/low"] == 0.0


@pytest.mark.parametrize("shift", [1.0, -1.0])
def test_off_policy_mask_drops_negative_sequences_the_policy_has_left(tiny_model_dir, tmp_path, shift):
    """A sampler that gave every drawn token 1 nat more than the trainer does (the policy has moved away from
    those tokens since): with off_policy_mask_threshold 0.5 every sequence of negative advantage leaves the loss,
    and the logged fraction is theirs; 1 nat less (the policy moved towards them) drops nothing."""
    config = make_config(
        tiny_model_dir,
        tmp_path / "run",
        algorithm={"off_policy_mask_threshold": 0.5},
        training={"max_steps": 1, "log_completions_steps": 1},
    )
    trainer = GRPOTrainer(config, reward_funcs=[length_reward], train_dataset=ROWS)
    generate = trainer.generate_rollout

    def moved(*args, **kwargs):
        rollout, timings = generate(*args, **kwargs)
        rollout.sampling_logps = rollout.sampling_logps + shift
        return rollout, timings

    trainer.generate_rollout = moved
    trainer.train()
    (m,) = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    negative = [r["advantage"] < 0 for r in read_jsonl(tmp_path / "run" / "completions.jsonl")]
    assert 0 < sum(negative) < len(negative)
    expected = sum(negative) / len(negative) if shift > 0 else 0.0
    assert m["off_policy_masked"] == pytest.approx(expected)
