"""The GRPO family of issue 10 on hand-made tensors, each expected value derived in a comment.

All-None completions, GDPO, KL estimators and placement, GSPO, CISPO, two-sided clipping, top-entropy
tokens and the sampler importance weights. TRL's own code on the same tensors: test_trl_parity.py.
"""

import math

import pytest
import torch

from rlvr.algorithm import (
    batch_advantages,
    cispo_surrogate,
    clipped_surrogate,
    entropy_threshold,
    group_advantages,
    grpo_loss,
    high_entropy_mask,
    kl_estimate,
    kl_penalized_advantages,
    log_importance_weights,
    normalize_then_sum,
    sampling_importance_weights,
    sampling_stats,
    unscorable,
)

EPS = 1e-4
NAN = math.nan
SQRT_HALF = math.sqrt(0.5)  # unbiased std of two values a distance 1 apart


# ------------------------------------------------------------------------------------ all-None completions
def test_unscorable_completion_is_left_out_of_its_group_and_gets_zero():
    # group 0: [1, 0, None]: mean over the scorable two 0.5, unbiased std sqrt(0.5) = 0.707107
    #   -> [0.5, -0.5] / (0.707107 + eps), the unscorable one 0 (scored 0 it would have mean 1/3)
    # group 1: [2, 2, 2]: all equal -> 0, counted as zero-std
    per_fn = torch.tensor([[1.0], [0.0], [NAN], [2.0], [2.0], [2.0]])
    assert unscorable(per_fn).tolist() == [False, False, True, False, False, False]
    rewards = torch.where(unscorable(per_fn), NAN, per_fn[:, 0])
    adv, zero_std = group_advantages(rewards, 3)
    expected = torch.tensor([0.5, -0.5, 0.0, 0.0, 0.0, 0.0]) / (SQRT_HALF + EPS)
    torch.testing.assert_close(adv, expected)
    assert zero_std.tolist() == [False, True]


def test_unscorable_completion_is_left_out_of_the_batch_std():
    # rewards [1, 0 | None, 3], G = 2. Group 0 centred [0.5, -0.5]; group 1 has one scorable completion:
    # no signal, both 0. Batch std over the scorable [1, 0, 3]: mean 4/3, squares 1/9 + 16/9 + 25/9 = 42/9,
    # / (3 - 1) = 7/3 -> std 1.527525
    rewards = torch.tensor([1.0, 0.0, NAN, 3.0])
    adv, zero_std = group_advantages(rewards, 2, scale_rewards="batch")
    torch.testing.assert_close(adv, torch.tensor([0.5, -0.5, 0.0, 0.0]) / (math.sqrt(7 / 3) + EPS))
    assert zero_std.tolist() == [False, True]
    adv, _ = group_advantages(rewards, 2, scale_rewards="none")
    torch.testing.assert_close(adv, torch.tensor([0.5, -0.5, 0.0, 0.0]))


def test_a_group_of_unscorable_completions_is_all_zero():
    adv, zero_std = group_advantages(torch.tensor([NAN, NAN, 1.0, 0.0]), 2)
    assert adv[:2].tolist() == [0.0, 0.0] and zero_std.tolist() == [True, False]


# ------------------------------------------------------------------------------------------------- GDPO
def test_gdpo_normalises_each_reward_in_its_group_then_the_sum_over_the_batch():
    # G = 2, weights [1, 2]. x = 0.5 / (sqrt(0.5) + eps) = 0.707007 (one function's normalised reward
    # for a [1, 0] pair). Group 0: f1 [1, 0] -> [x, -x]; f2 [0, 1] -> [-x, x]; sum 1*f1 + 2*f2 = [-x, x].
    # Group 1: f1 [1, 0] -> [x, -x]; f2 [0, 0] -> [0, 0]; sum [x, -x].
    # (Summing first, [1, 2] and [1, 0] would give advantages [-0.707, 0.707] and [0.707, -0.707] too, but
    # with weights [1, 1] group 0 sums to [1, 1]: no signal; GDPO keeps [-x, x].)
    per_fn = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    x = 0.5 / (SQRT_HALF + EPS)
    decoupled = normalize_then_sum(per_fn, torch.tensor([1.0, 2.0]), 2)
    torch.testing.assert_close(decoupled, torch.tensor([-x, x, x, -x]))
    # batch: mean 0, unbiased std sqrt(4 x^2 / 3)
    adv = batch_advantages(decoupled)
    torch.testing.assert_close(adv, torch.tensor([-x, x, x, -x]) / (math.sqrt(4 * x * x / 3) + EPS))
    # equal weights: group 0 is [0, 0] under GDPO as well (the two functions cancel), group 1 [x, -x]
    decoupled = normalize_then_sum(per_fn, torch.tensor([1.0, 1.0]), 2)
    torch.testing.assert_close(decoupled, torch.tensor([0.0, 0.0, x, -x]))


def test_batch_advantages_centre_on_the_scorable_batch_mean():
    # [1, 2, None, 3]: mean 2, unbiased std 1 -> [-1, 0, 0, 1] / (1 + eps); the unscorable one 0
    adv = batch_advantages(torch.tensor([1.0, 2.0, NAN, 3.0]))
    torch.testing.assert_close(adv, torch.tensor([-1.0, 0.0, 0.0, 1.0]) / (1 + EPS))


def test_gdpo_all_equal_rewards_give_zero_advantages():
    # every function constant in every group: each normalised reward (r - mean) / (0 + eps) = 0, so the sum is
    # 0, the batch std is 0, and the advantages are 0 / (0 + eps) = 0
    per_fn = torch.tensor([[1.0, 0.5]] * 4)
    decoupled = normalize_then_sum(per_fn, torch.tensor([1.0, 1.0]), 2)
    assert decoupled.tolist() == [0.0] * 4
    assert batch_advantages(decoupled).tolist() == [0.0] * 4


def test_gdpo_unscorable_completion_gets_zero_and_stays_out():
    # row 1 unscorable -> NaN decoupled reward, advantage 0. Row 0's group has one scorable completion: each
    # function's std is NaN -> no contribution (0). Group 1: f1 [0, 1] -> [-x, x], f2 [1, None] -> one
    # scorable: 0. Decoupled [0, NaN, -x, x]: batch mean over the scorable three 0, unbiased std
    # sqrt(2 x^2 / 2) = x.
    per_fn = torch.tensor([[1.0, NAN], [NAN, NAN], [0.0, 1.0], [1.0, NAN]])
    x = 0.5 / (SQRT_HALF + EPS)
    decoupled = normalize_then_sum(per_fn, torch.tensor([1.0, 1.0]), 2)
    torch.testing.assert_close(decoupled, torch.tensor([0.0, NAN, -x, x]), equal_nan=True)
    torch.testing.assert_close(batch_advantages(decoupled), torch.tensor([0.0, 0.0, -x, x]) / (x + EPS))


# --------------------------------------------------------------------------------------------------- KL
def test_kl_estimators_by_hand():
    # logp = log 0.5, ref = log 0.25: logp - ref = log 2 = 0.693147
    # k1 = 0.693147; k2 = 0.693147^2 / 2 = 0.240227; k3 = 0.5 - 1 + 0.693147 = 0.193147
    logps, ref = torch.log(torch.tensor([0.5])), torch.log(torch.tensor([0.25]))
    assert kl_estimate(logps, ref, "k1").item() == pytest.approx(0.693147, abs=1e-6)
    assert kl_estimate(logps, ref, "k2").item() == pytest.approx(0.240227, abs=1e-6)
    assert kl_estimate(logps, ref, "k3").item() == pytest.approx(0.193147, abs=1e-6)
    # k1 is negative where the policy gives a token less probability than the reference; k2, k3 never
    assert kl_estimate(ref, logps, "k1").item() == pytest.approx(-0.693147, abs=1e-6)
    with pytest.raises(ValueError, match="kl_estimator"):
        kl_estimate(logps, ref, "k4")


def test_kl_as_a_per_token_reward_penalty():
    # A = 1, KL per token [0.1, 0.2, 0.3], third token masked out, beta 0.5:
    # returns-to-go of the KL [0.3, 0.2, 0] -> A - 0.5 * [0.3, 0.2, 0] = [0.85, 0.9, 1.0]
    adv = kl_penalized_advantages(
        torch.tensor([1.0]), torch.tensor([[0.1, 0.2, 0.3]]), torch.tensor([[1, 1, 0]]), 0.5
    )
    torch.testing.assert_close(adv, torch.tensor([[0.85, 0.9, 1.0]]))


def test_kl_in_reward_lowers_advantages_and_adds_nothing_to_the_loss():
    # logps = old = log 0.5 (ratio 1), ref log 0.25: k1 per token log 2. Two tokens, beta 0.1, A = 1.
    # Per-token advantages 1 - 0.1 * [2 log 2, log 2] = [0.861371, 0.930685]; ratio 1, so the loss per token
    # is -A_t; grpo mean = -(0.861371 + 0.930685) / 2 = -0.896028. The KL metric: log 2.
    logps = torch.log(torch.full((1, 2), 0.5)).requires_grad_()
    ref = torch.log(torch.full((1, 2), 0.25))
    out = grpo_loss(
        logps, logps.detach(), torch.tensor([1.0]), torch.ones(1, 2), "grpo", 4, 0.2,
        beta=0.1, ref_logps=ref, kl_estimator="k1", kl_in="reward",
    )  # fmt: skip
    assert out.loss.item() == pytest.approx(-0.896028, abs=1e-6)
    assert out.kl.item() == pytest.approx(math.log(2), abs=1e-6)
    out.loss.backward()  # d/dlogp of -A_t * ratio: -A_t / 2 per token; nothing through the KL
    torch.testing.assert_close(logps.grad, torch.tensor([[-0.861371, -0.930685]]) / 2)


def test_bias_corrected_kl_gradient_is_the_reverse_kl_gradient():
    # One token, logp = log 0.5, old = log 0.25 (ratio 2), ref = log 0.25, beta 1, A = 0, eps wide.
    # Loss = ratio * k3 = 2 * 0.193147 = 0.386294. d/dlogp [r * k3] = r * k3 + r * (1 - ref/p)
    #      = r * (k3 + 1 - 0.5) = r * (logp - ref) = 2 * log 2 = 1.386294: the reverse KL's score-function
    # gradient (logp - ref) weighted by r. Without the correction: d k3 / dlogp = 1 - 0.5 = 0.5.
    old = torch.log(torch.tensor([[0.25]]))
    for corrected, loss, grad in [(True, 0.386294, 1.386294), (False, 0.193147, 0.5)]:
        logps = torch.log(torch.tensor([[0.5]])).requires_grad_()
        out = grpo_loss(
            logps, old, torch.tensor([0.0]), torch.ones(1, 1), "grpo", 4, 10.0,
            beta=1.0, ref_logps=old, use_bias_correction_kl=corrected,
        )  # fmt: skip
        out.loss.backward()
        assert out.loss.item() == pytest.approx(loss, abs=1e-6)
        assert logps.grad.item() == pytest.approx(grad, abs=1e-6)


# ------------------------------------------------------------------------------------------------- GSPO
def test_sequence_ratio_is_the_mean_log_ratio_over_the_sequence():
    # log ratios [0.2, -0.1, 5.0], the last token masked: (0.2 - 0.1) / 2 = 0.05
    logps = torch.tensor([[0.2, -0.1, 5.0]])
    weights = log_importance_weights(logps, torch.zeros(1, 3), torch.tensor([[1, 1, 0]]), "sequence")
    torch.testing.assert_close(weights, torch.tensor([[0.05]]))
    assert log_importance_weights(logps, torch.zeros(1, 3), torch.ones(1, 3), "token") is not None
    with pytest.raises(ValueError, match="importance_sampling_level"):
        log_importance_weights(logps, logps, torch.ones(1, 3), "batch")


def test_gspo_one_token_completion_equals_token_level():
    # A one-token completion's sequence ratio is its token ratio: exp(log 1.5) clipped at 1.2, A = 1 ->
    # loss -1.2 at either level, gradient 0 (clipped). Second row: ratio exp(-0.1) = 0.904837, A = 1 ->
    # -0.904837, gradient -0.904837 (d ratio / d logp = ratio).
    old = torch.zeros(2, 2)
    mask = torch.tensor([[1, 0], [1, 0]])
    results = {}
    for level in ("token", "sequence"):
        logps = torch.tensor([[math.log(1.5), 0.7], [-0.1, 0.3]], requires_grad=True)
        out = grpo_loss(
            logps, old, torch.tensor([1.0, 1.0]), mask, "grpo", 2, 0.2, importance_sampling_level=level
        )
        out.loss.backward()
        results[level] = (out.loss.item(), logps.grad.clone())
    assert results["token"][0] == pytest.approx(results["sequence"][0], abs=1e-7)
    assert results["sequence"][0] == pytest.approx((-1.2 - 0.904837) / 2, abs=1e-6)
    torch.testing.assert_close(results["token"][1], results["sequence"][1])
    torch.testing.assert_close(results["sequence"][1], torch.tensor([[0.0, 0.0], [-0.904837 / 2, 0.0]]))


def test_gspo_two_tokens_share_one_clipped_ratio():
    # log ratios [0.4, 0.0] -> sequence log weight 0.2, ratio e^0.2 = 1.221403 > 1.2: clipped for A = 1,
    # so both tokens lose their gradient, where token level keeps the second's (ratio 1).
    logps = torch.tensor([[0.4, 0.0]], requires_grad=True)
    out = grpo_loss(
        logps, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2), "grpo", 2, 0.2,
        importance_sampling_level="sequence",
    )  # fmt: skip
    out.loss.backward()
    assert out.loss.item() == pytest.approx(-1.2, abs=1e-6)
    assert logps.grad.tolist() == [[0.0, 0.0]] and out.high_clip.item() == 1.0


# ----------------------------------------------------------------------------------- clip bounds, delta
def test_ratio_exactly_at_the_clip_bound_keeps_its_gradient():
    # eps = 0.5, eps_high = 1.0: bounds 0.5 and 2.0, both exact in float. At ratio 2 with A = 1: loss -2,
    # not counted clipped (strictly above only), and the gradient d(ratio)/dlogp = 2 survives (clamp passes it
    # at its bound). At ratio 0.5 with A = -1: loss 0.5, gradient 0.5.
    for ratio, adv in [(2.0, 1.0), (0.5, -1.0)]:
        logps = torch.tensor([[math.log(ratio)]], requires_grad=True)
        loss, low, high = clipped_surrogate(logps, torch.zeros(1, 1), torch.tensor([adv]), 0.5, 1.0)
        loss.sum().backward()
        assert loss.item() == -ratio * adv and not low.item() and not high.item()
        assert logps.grad.item() == pytest.approx(-ratio * adv)


@pytest.mark.parametrize(
    "ratio, adv, delta, loss, grad",
    [
        (3.0, -1.0, None, 3.0, 3.0),  # -min(-3, -1.2) = 3: unbounded without delta, gradient ratio * 1
        (3.0, -1.0, 2.0, 2.0, 0.0),  # capped: -min(-2, -1.2) = 2, no gradient
        (2.0, -1.0, 2.0, 2.0, 2.0),  # exactly at delta: -min(-2, -1.2) = 2, the gradient kept
        (3.0, 1.0, 2.0, -1.2, 0.0),  # A > 0: the ordinary clip at 1.2 decides, delta changes nothing
        (1.1, -1.0, 2.0, 1.1, 1.1),  # inside the bounds: untouched
    ],
)
def test_two_sided_clipping(ratio, adv, delta, loss, grad):
    logps = torch.tensor([[math.log(ratio)]], requires_grad=True)
    per_token, _, _ = clipped_surrogate(logps, torch.zeros(1, 1), torch.tensor([adv]), 0.2, None, delta)
    per_token.sum().backward()
    assert per_token.item() == pytest.approx(loss, abs=1e-6)
    assert logps.grad.item() == pytest.approx(grad, abs=1e-6)


# ------------------------------------------------------------------------------------------------ CISPO
@pytest.mark.parametrize(
    "p, old, adv, clip_min, weight, low, high",
    [
        (0.6, 0.1, 1.0, None, 5.0, False, True),  # ratio 6 -> capped at 5
        (0.5, 0.1, 1.0, None, 5.0, False, False),  # ratio exactly 5: at the bound, not counted
        (0.1, 0.4, -1.0, None, 0.25, False, False),  # ratio 0.25, no lower bound
        (0.1, 0.4, -1.0, 0.5, 0.5, True, False),  # ratio 0.25 raised to 0.5
        (0.3, 0.6, 1.0, 0.5, 0.5, False, False),  # ratio exactly 0.5: at the bound
    ],
)
def test_cispo_clips_the_weight_and_keeps_every_gradient(p, old, adv, clip_min, weight, low, high):
    # loss = -w * A * logp with w = sg(clip(p / old)); d loss / d logp = -w * A, never 0
    logps = torch.log(torch.tensor([[p]])).requires_grad_()
    log_w = logps - torch.log(torch.tensor([[old]]))
    per_token, low_clipped, high_clipped = cispo_surrogate(logps, log_w, torch.tensor([adv]), clip_min, 5.0)
    per_token.sum().backward()
    assert per_token.item() == pytest.approx(-weight * adv * math.log(p), rel=1e-5)
    assert logps.grad.item() == pytest.approx(-weight * adv, rel=1e-5)
    assert (low_clipped.item(), high_clipped.item()) == (low, high)


def test_cispo_loss_is_aggregated_over_the_batch_tokens():
    # two tokens, logp log 0.5, ratio 1, A = 1: per token -log 0.5 = 0.693147; dapo-style sum / 2 tokens
    logps = torch.log(torch.full((1, 2), 0.5))
    out = grpo_loss(logps, logps, torch.tensor([1.0]), torch.ones(1, 2), "cispo", 4, 0.2)
    assert out.loss.item() == pytest.approx(math.log(2), abs=1e-6)
    out = grpo_loss(logps, logps, torch.tensor([1.0]), torch.ones(1, 2), "cispo", 4, 0.2, num_tokens=4)
    assert out.loss.item() == pytest.approx(math.log(2) / 2, abs=1e-6)


# ------------------------------------------------------------------------------------- top-entropy tokens
def test_top_entropy_quantile_keeps_the_highest_entropy_tokens():
    # loss-token entropies [0.1, 0.5, 0.3, 0.9, 0.2] (row 1's last token is padding). rho = 0.4:
    # quantile 0.6 of the sorted [0.1, 0.2, 0.3, 0.5, 0.9] sits at 0.6 * 4 = 2.4 -> 0.3 + 0.4 * 0.2 = 0.38
    entropy = torch.tensor([[0.1, 0.5, 0.3], [0.9, 0.2, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    threshold = entropy_threshold(entropy[mask.bool()], 0.4)
    assert threshold.item() == pytest.approx(0.38)
    assert high_entropy_mask(entropy, mask, threshold).tolist() == [
        [False, True, False],
        [True, False, False],
    ]
    # rho = 1 keeps every loss token (padding excluded), rho = 0 only the highest
    assert high_entropy_mask(entropy, mask, entropy_threshold(entropy[mask.bool()], 1.0)).tolist() == [
        [True, True, True],
        [True, True, False],
    ]
    assert high_entropy_mask(entropy, mask, entropy_threshold(entropy[mask.bool()], 0.0)).sum().item() == 1


def test_entropy_mask_removes_the_policy_loss_but_not_the_kl():
    # two tokens, ratio 1, A = 1: surrogate -1 each; k3 per token 0.193147, beta 0.1. Mask keeps token 0:
    # per token [-1 + 0.0193147, 0 + 0.0193147] -> grpo mean (-0.961371 + 0.019315) / 2 = -0.471028
    logps = torch.log(torch.full((1, 2), 0.5))
    out = grpo_loss(
        logps, logps, torch.tensor([1.0]), torch.ones(1, 2), "grpo", 4, 0.2,
        beta=0.1, ref_logps=torch.log(torch.full((1, 2), 0.25)), entropy_mask=torch.tensor([[True, False]]),
    )  # fmt: skip
    assert out.loss.item() == pytest.approx((-1 + 2 * 0.0193147) / 2, abs=1e-6)


# ----------------------------------------------------------------------------- sampler importance weights
OLD = torch.tensor([[0.0, 0.0, 0.0]])
# pi_old / pi_sampler per token [1, 4, 0.2]: sampling log-probs 0, -log 4, log 5
SAMPLED = torch.tensor([[0.0, -math.log(4.0), math.log(5.0)]])


@pytest.mark.parametrize(
    "mode, clip_min, clip_max, expected",
    [
        ("token_truncate", None, 3.0, [[1.0, 3.0, 0.2]]),  # 4 above the cap -> 3
        ("token_truncate", 0.5, 3.0, [[1.0, 3.0, 0.5]]),
        ("token_mask", None, 3.0, [[1.0, 0.0, 0.2]]),  # 4 above the cap -> that token leaves the loss
        ("token_mask", 0.5, 3.0, [[1.0, 0.0, 0.0]]),
        ("token_mask", 0.5, None, [[1.0, 4.0, 0.0]]),  # no upper bound
        ("sequence_truncate", None, 3.0, [[0.8]]),  # product 1 * 4 * 0.2 = 0.8
        ("sequence_truncate", 0.9, 3.0, [[0.9]]),
        ("sequence_mask", 0.9, 3.0, [[0.0]]),  # the whole sequence leaves the loss
        ("sequence_mask", None, 3.0, [[0.8]]),
    ],
)
def test_sampling_importance_weights(mode, clip_min, clip_max, expected):
    weights = sampling_importance_weights(OLD, SAMPLED, torch.ones(1, 3), mode, clip_min, clip_max)
    torch.testing.assert_close(weights, torch.tensor(expected))


def test_sampling_weight_exactly_at_the_cap_is_kept():
    # ratio exactly 3 (exp(log 3) is 3.0 in float32): at the bound, neither masked nor changed
    sampled = torch.tensor([[-math.log(3.0)]])
    assert (
        sampling_importance_weights(torch.zeros(1, 1), sampled, torch.ones(1, 1), "token_mask").item() == 3.0
    )
    assert (
        sampling_importance_weights(torch.zeros(1, 1), sampled, torch.ones(1, 1), "sequence_mask").item()
        == 3.0
    )


def test_sampling_weight_exactly_at_the_lower_bound_is_kept():
    # ratio exactly 0.5 (exp(log 0.5) is 0.5 in float32) with clip_min 0.5: kept; a hair below it: masked
    at_bound, below = torch.tensor([[math.log(2.0)]]), torch.tensor([[math.log(2.0) + 1e-3]])
    for mode in ("token_mask", "sequence_mask"):
        weight = sampling_importance_weights(
            torch.zeros(1, 1), at_bound, torch.ones(1, 1), mode, clip_min=0.5
        )
        assert weight.item() == 0.5
        assert (
            sampling_importance_weights(torch.zeros(1, 1), below, torch.ones(1, 1), mode, clip_min=0.5).item()
            == 0.0
        )


def test_sampling_weights_skip_masked_and_unscored_tokens():
    # token 1 masked, token 2 unscored (NaN): both count as ratio 1 in the sequence product -> 1
    sampled = torch.tensor([[0.0, -math.log(4.0), NAN]])
    weights = sampling_importance_weights(OLD, sampled, torch.tensor([[1, 0, 1]]), "sequence_truncate")
    assert weights.item() == 1.0
    with pytest.raises(ValueError, match="importance_sampling_mode"):
        sampling_importance_weights(OLD, SAMPLED, torch.ones(1, 3), "token_clip")


def test_sampling_stats_by_hand():
    # |old - sampled| per token [0, log 4, log 5]: mean (1.386294 + 1.609438) / 3 = 0.998577, max log 5;
    # token ratios [1, 4, 0.2]: min 0.2, mean 5.2 / 3, max 4; sequence ratio 0.8
    stats = sampling_stats(OLD, SAMPLED, torch.ones(1, 3), sequence=False)
    assert (stats["logp_diff_sum"] / stats["logp_diff_count"]).item() == pytest.approx(0.998577, abs=1e-6)
    assert stats["logp_diff_max"].item() == pytest.approx(math.log(5), abs=1e-6)
    assert stats["is_ratio_min"].item() == pytest.approx(0.2) and stats[
        "is_ratio_max"
    ].item() == pytest.approx(4)
    assert (stats["is_ratio_sum"] / stats["is_ratio_count"]).item() == pytest.approx(5.2 / 3)
    assert sampling_stats(OLD, SAMPLED, torch.ones(1, 3), sequence=True)[
        "is_ratio_max"
    ].item() == pytest.approx(0.8)


def test_sampling_stats_count_the_ratios_outside_the_bounds():
    # token ratios [1, 4, 0.2], sequence ratio 0.8: what *_mask modes drop and *_truncate modes cap
    count = lambda sequence, low, high: sampling_stats(  # noqa: E731
        OLD, SAMPLED, torch.ones(1, 3), sequence, low, high
    )["is_ratio_outside"].item()
    assert count(False, None, None) == 0
    assert count(False, None, 3.0) == 1  # 4
    assert count(False, 0.5, 3.0) == 2  # 4 and 0.2
    assert count(False, 0.1, 5.0) == 0
    assert count(True, None, 3.0) == 0 and count(True, 0.9, None) == 1


def test_is_weights_multiply_the_policy_loss_only():
    # ratio 1, A = 1 per token: surrogate -1; weights [[3, 0.5]] -> [-3, -0.5]; KL (k3 0.193147, beta 0.1) is
    # added unweighted: grpo mean (-3 - 0.5 + 2 * 0.0193147) / 2 = -1.730685
    logps = torch.log(torch.full((1, 2), 0.5))
    out = grpo_loss(
        logps, logps, torch.tensor([1.0]), torch.ones(1, 2), "grpo", 4, 0.2,
        beta=0.1, ref_logps=torch.log(torch.full((1, 2), 0.25)), is_weights=torch.tensor([[3.0, 0.5]]),
    )  # fmt: skip
    assert out.loss.item() == pytest.approx((-3.5 + 2 * 0.0193147) / 2, abs=1e-6)


def test_sampler_terms_anchor_at_the_sampler_or_weight_by_it():
    from rlvr.algorithm import sampler_terms, sampling_importance_weights

    old = torch.tensor([[-1.0, -2.0, -0.5]])
    sampled = torch.tensor([[-1.5, float("nan"), -0.4]])  # the sampler could not score token 1
    mask = torch.ones(1, 3)
    anchor, weights = sampler_terms(old, sampled, mask, "sampler")
    assert torch.equal(anchor, torch.tensor([[-1.5, -2.0, -0.4]])) and weights is None
    anchor, weights = sampler_terms(old, sampled, mask, "trainer")
    assert anchor is old and weights is None
    anchor, weights = sampler_terms(old, sampled, mask, "trainer", True, "token_truncate", None, 1.2)
    assert anchor is old
    assert torch.equal(weights, sampling_importance_weights(old, sampled, mask, "token_truncate", None, 1.2))
