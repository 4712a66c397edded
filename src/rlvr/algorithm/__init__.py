"""The maths of GRPO as small pure functions: advantages, log-probs, clipped surrogate, KL, aggregation."""

from rlvr.algorithm.advantages import combine_rewards, group_advantages
from rlvr.algorithm.logprobs import completion_logps, logps_from_hidden, selective_log_softmax
from rlvr.algorithm.loss import LossOutput, aggregate_loss, clipped_surrogate, grpo_loss, kl_k3

__all__ = [
    "LossOutput",
    "aggregate_loss",
    "clipped_surrogate",
    "combine_rewards",
    "completion_logps",
    "grpo_loss",
    "group_advantages",
    "kl_k3",
    "logps_from_hidden",
    "selective_log_softmax",
]
