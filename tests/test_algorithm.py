"""The GRPO maths on hand-made tensors, each expected value derived in a comment."""

import math

import pytest
import torch

from rlvr.algorithm import (
    aggregate_loss,
    clipped_surrogate,
    combine_rewards,
    group_advantages,
    grpo_loss,
    kl_k3,
    logps_from_hidden,
    selective_log_softmax,
)

EPS = 1e-4


def test_group_advantages_match_the_tutorial_example():
    # rewards [[1, 2, 3], [4, 5, 6]]: group means 2 and 5, unbiased stds 1 and 1
    # -> (r - mean) / (1 + eps) = [-1, 0, 1, -1, 0, 1] / 1.0001
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    adv, zero_std = group_advantages(rewards, num_generations=3)
    expected = torch.tensor([-1.0, 0.0, 1.0, -1.0, 0.0, 1.0]) / (1 + EPS)
    torch.testing.assert_close(adv, expected)
    assert zero_std.tolist() == [False, False]


def test_equal_rewards_give_zero_advantage_and_are_counted():
    # group 1 all 2.0: centred rewards are 0 whatever the scaling
    rewards = torch.tensor([2.0, 2.0, 2.0, 0.0, 1.0, 2.0])
    adv, zero_std = group_advantages(rewards, num_generations=3)
    assert adv[:3].tolist() == [0.0, 0.0, 0.0]
    assert zero_std.tolist() == [True, False]


def test_batch_and_none_scaling():
    # rewards [0, 1, 0, 1], G = 2: centred [-0.5, 0.5, -0.5, 0.5]
    # batch std (unbiased): mean 0.5, sum of squares 4 * 0.25 = 1, / 3 -> var 1/3, std 0.57735
    rewards = torch.tensor([0.0, 1.0, 0.0, 1.0])
    adv, _ = group_advantages(rewards, 2, scale_rewards="batch")
    torch.testing.assert_close(adv, torch.tensor([-0.5, 0.5, -0.5, 0.5]) / (math.sqrt(1 / 3) + EPS))
    adv, _ = group_advantages(rewards, 2, scale_rewards="none")
    torch.testing.assert_close(adv, torch.tensor([-0.5, 0.5, -0.5, 0.5]))
    # an all-reduced std from other processes replaces the local one
    adv, _ = group_advantages(rewards, 2, scale_rewards="batch", batch_std=torch.tensor(2.0))
    torch.testing.assert_close(adv, torch.tensor([-0.5, 0.5, -0.5, 0.5]) / (2.0 + EPS))


def test_group_advantages_reject_ragged_groups():
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(torch.zeros(6), 4)


def test_combine_rewards_skips_none():
    # row 0: 1.0 * 1 + (None, skipped) = 1.0; row 1: 0.0 * 1 + 0.2 * 2 = 0.4
    per_fn = torch.tensor([[1.0, math.nan], [0.0, 0.2]])
    torch.testing.assert_close(combine_rewards(per_fn, torch.tensor([1.0, 2.0])), torch.tensor([1.0, 0.4]))


@pytest.mark.parametrize(
    "ratio, advantage, eps_high, loss, low, high",
    [
        (1.5, 1.0, None, -1.2, False, True),  # clip at 1 + 0.2: -min(1.5, 1.2)
        (1.5, -1.0, None, 1.5, False, False),  # -min(-1.5, -1.2) = 1.5: a bad move keeps its gradient
        (0.5, -1.0, None, 0.8, True, False),  # -min(-0.5, -0.8) = 0.8, clipped below
        (0.5, 1.0, None, -0.5, False, False),  # -min(0.5, 0.8)
        (1.5, 1.0, 0.28, -1.28, False, True),  # clip-higher (DAPO): 1 + 0.28
        (1.0, 2.0, None, -2.0, False, False),  # ratio 1: loss is -A
    ],
)
def test_clipped_surrogate(ratio, advantage, eps_high, loss, low, high):
    old = torch.zeros(1, 1)
    new = torch.full((1, 1), math.log(ratio))
    per_token, low_clipped, high_clipped = clipped_surrogate(
        new, old, torch.tensor([advantage]), 0.2, eps_high
    )
    assert per_token.item() == pytest.approx(loss, abs=1e-6)
    assert low_clipped.item() == low and high_clipped.item() == high


def test_kl_k3_by_hand():
    # logp = log 0.5, ref = log 0.25: delta = ref - logp = log 0.5 = -0.693147
    # k3 = exp(delta) - delta - 1 = 0.5 + 0.693147 - 1 = 0.193147
    logps = torch.log(torch.tensor([0.5, 0.3]))
    ref = torch.log(torch.tensor([0.25, 0.3]))
    torch.testing.assert_close(kl_k3(logps, ref), torch.tensor([0.193147, 0.0]), atol=1e-6, rtol=0)


PER_TOKEN = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[1, 1, 0], [1, 0, 0]])


@pytest.mark.parametrize(
    "loss_type, kwargs, expected",
    [
        ("grpo", {}, 2.75),  # sequence means (1 + 2) / 2 = 1.5 and 4 / 1 = 4 -> mean 2.75
        ("bnpo", {}, 7 / 3),  # masked tokens 1 + 2 + 4 = 7 over 3 tokens
        ("dr_grpo", {}, 0.875),  # 7 / (2 sequences * max_completion_length 4)
        ("dapo", {}, 7 / 3),  # 7 over this batch's 3 tokens
        ("dapo", {"num_tokens": 6}, 7 / 6),  # 7 over the whole batch's 6 tokens (other micro-batches)
        ("grpo", {"num_sequences": 4}, 5.5 / 4),  # (1.5 + 4) over 4 sequences in the whole batch
    ],
)
def test_aggregate_loss(loss_type, kwargs, expected):
    value = aggregate_loss(PER_TOKEN, MASK, loss_type, max_completion_length=4, **kwargs)
    assert value.item() == pytest.approx(expected)


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_micro_batch_losses_add_up_to_the_batch_loss(loss_type):
    whole = aggregate_loss(PER_TOKEN, MASK, loss_type, 4)
    parts = sum(
        aggregate_loss(PER_TOKEN[i : i + 1], MASK[i : i + 1], loss_type, 4, num_sequences=2, num_tokens=3)
        for i in range(2)
    )
    assert parts.item() == pytest.approx(whole.item())


def test_aggregate_loss_rejects_unknown_type():
    with pytest.raises(ValueError, match="loss_type"):
        aggregate_loss(PER_TOKEN, MASK, "ppo", 4)


def test_grpo_loss_adds_beta_times_kl():
    # ratio 1 and A = 1: surrogate -1 per token; KL per token 0.193147 (see test_kl_k3_by_hand)
    # per token: -1 + 0.1 * 0.193147 = -0.9806853; grpo mean over the one token
    logps = torch.log(torch.tensor([[0.5]]))
    out = grpo_loss(
        logps,
        logps,
        torch.tensor([1.0]),
        torch.ones(1, 1),
        "grpo",
        4,
        0.2,
        beta=0.1,
        ref_logps=torch.log(torch.tensor([[0.25]])),
    )
    assert out.loss.item() == pytest.approx(-1 + 0.1 * 0.193147, abs=1e-6)
    assert out.kl.item() == pytest.approx(0.193147, abs=1e-6)


def test_grpo_loss_needs_ref_when_beta_positive():
    x = torch.zeros(1, 1)
    with pytest.raises(ValueError, match="ref_logps"):
        grpo_loss(x, x, torch.ones(1), torch.ones(1, 1), "grpo", 4, 0.2, beta=0.1)


def test_selective_log_softmax_matches_log_softmax():
    # uniform over 4 tokens: log(1/4) = -1.386294
    assert selective_log_softmax(torch.zeros(1, 4), torch.tensor([2])).item() == pytest.approx(
        -1.386294, abs=1e-6
    )
    logits = torch.randn(3, 5, 11)
    index = torch.randint(0, 11, (3, 5))
    expected = torch.log_softmax(logits, -1).gather(-1, index.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(selective_log_softmax(logits, index), expected)


def test_chunked_logps_match_full_logits_values_and_gradients():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 13, bias=False)
    hidden = torch.randn(2, 5, 8, requires_grad=True)
    targets = torch.randint(0, 13, (2, 5))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    temperature = 0.7

    full = (
        torch.log_softmax(head(hidden) / temperature, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask
    )
    (full * torch.arange(10.0).view(2, 5)).sum().backward()
    grad_full, head_grad_full = hidden.grad.clone(), head.weight.grad.clone()
    hidden.grad, head.weight.grad = None, None

    chunked, entropy = logps_from_hidden(hidden, head, targets, mask, temperature, chunk_size=3)
    (chunked * torch.arange(10.0).view(2, 5)).sum().backward()
    torch.testing.assert_close(chunked, full)
    torch.testing.assert_close(hidden.grad, grad_full)
    torch.testing.assert_close(head.weight.grad, head_grad_full)
    # masked positions are not computed; entropy of a 13-way distribution is in (0, log 13]
    assert (chunked[0, 3:] == 0).all() and (entropy[0, 3:] == 0).all()
    assert ((entropy[mask.bool()] > 0) & (entropy[mask.bool()] <= math.log(13) + 1e-5)).all()
