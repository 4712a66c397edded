"""rlvr's objective against TRL 1.16's own code on identical tensors: same loss and gradient to 1e-6.

TRL's `GRPOTrainer._compute_loss` runs unchanged; only what surrounds it is stood in for: the model forward
(which returns the test's log-probs and entropies) and a one-process accelerator. For the advantages,
TRL's `_generate_and_score_completions` runs in a real TRL trainer on a tiny model, with reward functions
that return the test's numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from rlvr.algorithm import (
    batch_advantages,
    combine_rewards,
    entropy_threshold,
    group_advantages,
    grpo_loss,
    high_entropy_mask,
    normalize_then_sum,
    sampling_importance_weights,
    unscorable,
)

trl_grpo = pytest.importorskip("trl.trainer.grpo_trainer")


class OneProcess:
    """The accelerator calls `_compute_loss` makes, for a single process."""

    num_processes = 1

    def gather(self, tensor):
        return tensor

    def reduce(self, tensor, reduction="sum"):
        return tensor

    def pad_across_processes(self, tensor, dim=0, pad_index=0):
        return tensor


def trl_loss(logps, old, adv, mask, *, ref=None, entropies=None, is_ratio=None, sampled=None, **options):
    """TRL's `_compute_loss` on these tensors; `options` are TRL's GRPOConfig names."""
    trainer = object.__new__(trl_grpo.GRPOTrainer)
    o = {
        "loss_type": "grpo",
        "beta": 0.0,
        "epsilon": 0.2,
        "epsilon_high": 0.2,
        "delta": None,
        "importance_sampling_level": "token",
        "top_entropy_quantile": 1.0,
        "use_bias_correction_kl": False,
        "off_policy_mask_threshold": None,
        **options,
    }
    trainer.__dict__.update(
        accelerator=OneProcess(),
        model=SimpleNamespace(training=True),
        args=SimpleNamespace(
            use_bias_correction_kl=o["use_bias_correction_kl"], delta=o["delta"], steps_per_generation=1
        ),
        loss_type=o["loss_type"],
        beta=o["beta"],
        epsilon_low=o["epsilon"],
        epsilon_high=o["epsilon_high"],
        importance_sampling_level=o["importance_sampling_level"],
        top_entropy_quantile=o["top_entropy_quantile"],
        off_policy_mask_threshold=o["off_policy_mask_threshold"],
        use_vllm=is_ratio is not None,
        vllm_importance_sampling_correction=is_ratio is not None,
        _entropy_bonus_enabled=False,
        aux_loss_enabled=False,
        current_gradient_accumulation_steps=1,
        max_completion_length=mask.shape[1],
        _metrics=defaultdict(lambda: defaultdict(list)),
    )
    if entropies is None:
        entropies = torch.ones_like(logps)
    trainer._get_per_token_logps_and_entropies = lambda *args, **kwargs: (logps, entropies, None)
    batch = mask.shape[0]
    inputs = {
        "prompt_ids": torch.zeros(batch, 1, dtype=torch.long),
        "prompt_mask": torch.ones(batch, 1, dtype=torch.long),
        "completion_ids": torch.zeros_like(mask, dtype=torch.long),
        "completion_mask": mask,
        "advantages": adv,
        "old_per_token_logps": old,
        "num_items_in_batch": mask.sum(),
    }
    if ref is not None:
        inputs["ref_per_token_logps"] = ref
    if is_ratio is not None:
        inputs["importance_sampling_ratio"] = is_ratio
    if sampled is not None:
        inputs["sampling_per_token_logps"] = sampled
    return trainer._compute_loss(None, inputs)


def tensors(seed=0, batch=4, length=5):
    """Log-probs near old ones (ratios 0.4 .. 2.5, some beyond every clip), advantages of both signs."""
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(batch, length, generator=g) * 3 - 0.05
    logps = old + (torch.rand(batch, length, generator=g) - 0.5) * 1.8
    ref = old + (torch.rand(batch, length, generator=g) - 0.5)
    adv = torch.randn(batch, generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, 3:] = 0
    mask[2, 1:] = 0  # a one-token completion
    entropies = torch.rand(batch, length, generator=g) * 2
    return logps, old, ref, adv, mask, entropies


def both(rlvr_kwargs, trl_kwargs, seed=0, with_entropy=False, is_mode=None):
    """(rlvr loss, rlvr grad, TRL loss, TRL grad) on the same tensors."""
    logps0, old, ref, adv, mask, entropies = tensors(seed)
    is_ratio = None
    if is_mode is not None:
        sampled = old + (torch.rand(old.shape, generator=torch.Generator().manual_seed(seed + 1)) - 0.5) * 2.5
        is_ratio = sampling_importance_weights(old, sampled, mask, is_mode, 0.5, 2.0)
        rlvr_kwargs = {**rlvr_kwargs, "is_weights": is_ratio}
    entropy_mask = None
    if with_entropy:
        q = trl_kwargs["top_entropy_quantile"]
        entropy_mask = high_entropy_mask(entropies, mask, entropy_threshold(entropies[mask.bool()], q))
    mine = logps0.clone().requires_grad_()
    out = grpo_loss(
        mine, old, adv, mask, max_completion_length=mask.shape[1], ref_logps=ref,
        entropy_mask=entropy_mask, **rlvr_kwargs,
    )  # fmt: skip
    out.loss.backward()
    theirs = logps0.clone().requires_grad_()
    loss = trl_loss(theirs, old, adv, mask, ref=ref, entropies=entropies, is_ratio=is_ratio, **trl_kwargs)
    loss.backward()
    return out.loss, mine.grad, loss, theirs.grad


CASES = {
    # name: (rlvr grpo_loss options, TRL GRPOConfig options)
    "grpo": ({"loss_type": "grpo", "epsilon": 0.2}, {}),
    "dapo-clip-higher": (
        {"loss_type": "dapo", "epsilon": 0.2, "epsilon_high": 0.28},
        {"loss_type": "dapo", "epsilon_high": 0.28},
    ),
    "gspo": (
        {"loss_type": "grpo", "epsilon": 3e-4, "epsilon_high": 4e-4, "importance_sampling_level": "sequence"},
        {"epsilon": 3e-4, "epsilon_high": 4e-4, "importance_sampling_level": "sequence"},
    ),
    "gspo-wide": (
        {"loss_type": "grpo", "epsilon": 0.2, "importance_sampling_level": "sequence"},
        {"importance_sampling_level": "sequence"},
    ),
    "cispo": (
        {"loss_type": "cispo", "epsilon": 0.2, "cispo_clip_max": 1.5},
        {"loss_type": "cispo", "epsilon_high": 1.5},
    ),
    "delta": ({"loss_type": "grpo", "epsilon": 0.2, "delta": 1.5}, {"delta": 1.5}),
    "k3-kl": ({"loss_type": "bnpo", "epsilon": 0.2, "beta": 0.3}, {"loss_type": "bnpo", "beta": 0.3}),
    "bias-corrected-kl": (
        {"loss_type": "grpo", "epsilon": 0.2, "beta": 0.3, "use_bias_correction_kl": True},
        {"beta": 0.3, "use_bias_correction_kl": True},
    ),
    "bias-corrected-kl-gspo": (
        {
            "loss_type": "grpo",
            "epsilon": 0.2,
            "beta": 0.3,
            "use_bias_correction_kl": True,
            "importance_sampling_level": "sequence",
        },
        {"beta": 0.3, "use_bias_correction_kl": True, "importance_sampling_level": "sequence"},
    ),  # fmt: skip
    "dr_grpo-kl-delta": (
        {"loss_type": "dr_grpo", "epsilon": 0.2, "beta": 0.04, "delta": 2.0},
        {"loss_type": "dr_grpo", "beta": 0.04, "delta": 2.0},
    ),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_loss_and_gradient_match_trl(name, seed):
    rlvr_kwargs, trl_kwargs = CASES[name]
    loss, grad, trl_loss_value, trl_grad = both(rlvr_kwargs, trl_kwargs, seed)
    assert loss.item() == pytest.approx(trl_loss_value.item(), abs=1e-6)
    torch.testing.assert_close(grad, trl_grad, atol=1e-6, rtol=0)
    assert grad.abs().sum() > 0  # a test of something


@pytest.mark.parametrize("quantile", [0.2, 0.6, 0.0])
def test_top_entropy_quantile_matches_trl(quantile):
    loss, grad, trl_loss_value, trl_grad = both(
        {"loss_type": "dapo", "epsilon": 0.2, "beta": 0.1},
        {"loss_type": "dapo", "beta": 0.1, "top_entropy_quantile": quantile},
        with_entropy=True,
    )
    assert loss.item() == pytest.approx(trl_loss_value.item(), abs=1e-6)
    torch.testing.assert_close(grad, trl_grad, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", ["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"])
def test_sampler_importance_weights_in_the_loss_match_trl(mode):
    # the weights themselves are TRL's inline code in _generate_and_score_completions (vLLM only); their
    # arithmetic is checked by hand in test_objectives.py, their use in the loss here
    loss, grad, trl_loss_value, trl_grad = both(
        {"loss_type": "grpo", "epsilon": 0.2, "beta": 0.1}, {"beta": 0.1}, is_mode=mode
    )
    assert loss.item() == pytest.approx(trl_loss_value.item(), abs=1e-6)
    torch.testing.assert_close(grad, trl_grad, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("with_sampler", "threshold"), [(True, 0.3), (False, 0.05)])
def test_off_policy_sequence_masking_matches_trl(with_sampler, threshold):
    # DeepSeek-V3.2's mask from the sampler's log-probs, or from the trainer's old ones where there are none
    logps0, old, ref, adv, mask, _ = tensors(seed=7, batch=8)
    sampled = (
        old + torch.rand(old.shape, generator=torch.Generator().manual_seed(7)) - 0.2
        if with_sampler
        else None
    )
    mine = logps0.clone().requires_grad_()
    out = grpo_loss(
        mine, old, adv, mask, "grpo", mask.shape[1], 0.2, beta=0.1, ref_logps=ref, sampling_logps=sampled,
        off_policy_mask_threshold=threshold,
    )  # fmt: skip
    out.loss.backward()
    theirs = logps0.clone().requires_grad_()
    trl_value = trl_loss(
        theirs, old, adv, mask, ref=ref, sampled=sampled, beta=0.1, off_policy_mask_threshold=threshold
    )
    trl_value.backward()
    assert out.loss.item() == pytest.approx(trl_value.item(), abs=1e-6)
    torch.testing.assert_close(mine.grad, theirs.grad, atol=1e-6, rtol=0)
    # some of the negative-advantage sequences dropped, not all of them: the threshold decides something
    assert 0 < out.off_policy_masked.item() < (adv < 0).float().mean().item()


# ----------------------------------------------------------------------------------------------- advantages
NAN = math.nan
# 3 groups of 4, two reward functions; None marks "not applicable". Row 2 is unscorable (both None);
# group 1 is all equal in both functions; group 2 differs only in the second function.
REWARDS = [
    [1.0, 0.0], [0.0, 1.0], [NAN, NAN], [1.0, NAN],
    [0.5, 1.0], [0.5, 1.0], [0.5, 1.0], [0.5, 1.0],
    [1.0, 0.0], [1.0, 1.0], [1.0, 0.5], [1.0, NAN],
]  # fmt: skip


@pytest.fixture(scope="module")
def trl_trainer(tiny_model_dir, tmp_path_factory):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    def reward(j):
        def fn(prompts, completions, **kwargs):
            return [None if math.isnan(row[j]) else row[j] for row in REWARDS]

        fn.__name__ = f"reward_{j}"
        return fn

    args = GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("trl")),
        per_device_train_batch_size=len(REWARDS),
        num_generations=4,
        max_completion_length=2,
        use_cpu=True,
        bf16=False,
        report_to="none",
        reward_weights=[1.0, 0.5],
    )
    rows = [{"prompt": f"Q{i}: what is {i} + 1?"} for i in range(3)]
    return GRPOTrainer(
        model=str(tiny_model_dir),
        reward_funcs=[reward(0), reward(1)],
        args=args,
        train_dataset=Dataset.from_list(rows),
    )


def trl_advantages(trainer, aggregation, scale_rewards="group"):
    trainer.multi_objective_aggregation = aggregation
    trainer.scale_rewards = scale_rewards
    inputs = [{"prompt": f"Q{i // 4}: what is {i // 4} + 1?"} for i in range(len(REWARDS))]
    return trainer._generate_and_score_completions(inputs)["advantages"]


@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
def test_sum_then_normalize_and_unscorable_match_trl(trl_trainer, scale_rewards):
    per_fn = torch.tensor(REWARDS)
    weights = torch.tensor([1.0, 0.5])
    rewards = combine_rewards(per_fn, weights).masked_fill(unscorable(per_fn), NAN)
    mine, zero_std = group_advantages(rewards, 4, scale_rewards)
    theirs = trl_advantages(trl_trainer, "sum_then_normalize", scale_rewards)
    torch.testing.assert_close(mine, theirs, atol=1e-6, rtol=0)
    assert mine[2] == 0 and zero_std.tolist() == [False, True, False]


def test_normalize_then_sum_matches_trl(trl_trainer):
    per_fn = torch.tensor(REWARDS)
    mine = batch_advantages(normalize_then_sum(per_fn, torch.tensor([1.0, 0.5]), 4))
    theirs = trl_advantages(trl_trainer, "normalize_then_sum")
    torch.testing.assert_close(mine, theirs, atol=1e-6, rtol=0)
    assert mine[2] == 0 and mine.abs().sum() > 0
