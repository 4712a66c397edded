"""Reward functions for RLVR: answer extraction, math equivalence, the built-in rewards, and a registry by name.

A reward is any callable `fn(prompts, completions, **columns) -> list[float | None]` (TRL's contract).
`RewardPool` calls them on a batch, in this process or in worker processes with a time limit per call.
"""

from rlvr.rewards.equivalence import math_equal, math_equal_many, numeric_equal, parse_number
from rlvr.rewards.extraction import (
    EXTRACTION_STYLES,
    completion_text,
    extract_answer,
    extract_answer_tag,
    extract_boxed,
    extract_gold,
    extract_golds,
    gold_choices,
    prompt_text,
)
from rlvr.rewards.functions import (
    accuracy,
    answer_content,
    answer_tag_accuracy,
    answer_tag_loose,
    answer_tag_strict,
    boxed_exact,
    gsm8k_correctness,
    length_penalty,
    math_verifier,
    overlong_penalty,
    xml_format,
)
from rlvr.rewards.pool import RewardPool
from rlvr.rewards.registry import (
    RewardCallError,
    RewardSpecError,
    combine_rewards,
    get_reward,
    list_rewards,
    register_reward,
)
from rlvr.rewards.remote import RemoteReward, RemoteRewardError
from rlvr.rewards.scoring import RewardError

__all__ = [
    "EXTRACTION_STYLES",
    "RemoteReward",
    "RemoteRewardError",
    "RewardCallError",
    "RewardError",
    "RewardPool",
    "RewardSpecError",
    "accuracy",
    "answer_content",
    "answer_tag_accuracy",
    "answer_tag_loose",
    "answer_tag_strict",
    "boxed_exact",
    "combine_rewards",
    "completion_text",
    "extract_answer",
    "extract_answer_tag",
    "extract_boxed",
    "extract_gold",
    "extract_golds",
    "get_reward",
    "gold_choices",
    "gsm8k_correctness",
    "length_penalty",
    "list_rewards",
    "math_equal",
    "math_equal_many",
    "math_verifier",
    "numeric_equal",
    "overlong_penalty",
    "parse_number",
    "prompt_text",
    "register_reward",
    "xml_format",
]
