"""The maths of GRPO as small pure functions: advantages, log-probs, clipped surrogate, KL, aggregation."""

from rlvr.algorithm.advantages import (
    batch_advantages,
    combine_rewards,
    group_advantages,
    nanstd,
    normalize_then_sum,
    unscorable,
    zero_range_groups,
)
from rlvr.algorithm.dynamic_sampling import GroupSelection, select_groups
from rlvr.algorithm.logprobs import completion_logps, logps_from_hidden, selective_log_softmax
from rlvr.algorithm.loss import (
    LossOutput,
    aggregate_loss,
    cispo_surrogate,
    clipped_surrogate,
    entropy_threshold,
    grpo_loss,
    high_entropy_mask,
    kl_estimate,
    kl_k3,
    kl_penalized_advantages,
    log_importance_weights,
)
from rlvr.algorithm.sampling import (
    off_policy_sequence_mask,
    sampler_terms,
    sampling_importance_weights,
    sampling_log_ratio,
    sampling_stats,
)

__all__ = [
    "GroupSelection",
    "LossOutput",
    "aggregate_loss",
    "batch_advantages",
    "cispo_surrogate",
    "clipped_surrogate",
    "combine_rewards",
    "completion_logps",
    "entropy_threshold",
    "group_advantages",
    "grpo_loss",
    "high_entropy_mask",
    "kl_estimate",
    "kl_k3",
    "kl_penalized_advantages",
    "log_importance_weights",
    "logps_from_hidden",
    "nanstd",
    "normalize_then_sum",
    "off_policy_sequence_mask",
    "sampler_terms",
    "sampling_importance_weights",
    "sampling_log_ratio",
    "sampling_stats",
    "select_groups",
    "selective_log_softmax",
    "unscorable",
    "zero_range_groups",
]
