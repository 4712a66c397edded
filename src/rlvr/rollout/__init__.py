"""Sampling completions: G per prompt, EOS-aware masks, the Rollout container."""

from rlvr.rollout.batch import Rollout, concat_rollouts, group_rows
from rlvr.rollout.generation import (
    Generation,
    autocast,
    completion_mask_from_eos,
    decode_completions,
    eos_token_ids,
    pad_to,
    sample,
    tokenize_prompts,
)

__all__ = [
    "Generation",
    "Rollout",
    "autocast",
    "completion_mask_from_eos",
    "concat_rollouts",
    "decode_completions",
    "eos_token_ids",
    "group_rows",
    "pad_to",
    "sample",
    "tokenize_prompts",
]
