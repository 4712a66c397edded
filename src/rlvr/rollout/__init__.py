"""Sampling completions: G per prompt, EOS-aware masks, the Rollout container."""

from rlvr.rollout.generation import (
    Rollout,
    autocast,
    completion_mask_from_eos,
    concat_rollouts,
    decode_completions,
    eos_token_ids,
    group_rows,
    pad_to,
    sample,
    tokenize_prompts,
)

__all__ = [
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
