"""The words each command has for the settings that code shared by every command names in its messages.

Loading data and models, resolving rewards and making environments is the same code for `rlvr train` and for
`rlvr eval` or `rlvr generate`, and its errors say what to change in config terms (`set data.split`). A command
whose user has flags instead (`--split`) passes its error through `in_command_terms`, so the message names
something the user can set in the command they ran.
"""

from __future__ import annotations

import re
from functools import lru_cache

# `rlvr eval`: config key -> the flag that sets the same thing.
EVAL_FLAGS = {
    "model.name_or_path": "--model",
    "model.device": "--device",
    "model.dtype": "--dtype",
    "model.cache_dir": "--cache-dir",
    "model.trust_remote_code": "--trust-remote-code",
    "data.dataset": "--dataset",
    "data.split": "--split",
    "data.data_dir": "--data-dir",
    "data.limit": "--limit",
    "data.question_field": "--question-field",
    "data.answer_field": "--answer-field",
    "data.reasoning_gym": "--task-options",
    "data.template": "--template",
    "data.system_prompt": "--system-prompt",
    "data.few_shot": "--few-shot",
    "data.max_prompt_length": "--max-prompt-length",
    "generation.engine": "--engine",
    "generation.max_completion_length": "--max-new-tokens",
    "generation.temperature": "--temperature",
    "rewards.functions": "--reward",
    "training.eval_reward": "--reward",
    "training.bf16": "--bf16",
    "environment.name": "--environment",
    "environment.args": "--environment-args",
    "environment.max_turns": "--max-turns",
    "environment.max_total_tokens": "--max-total-tokens",
    "vllm.cpu_kv_cache_gb": "--vllm-kv-cache-gb",
    "vllm.enforce_eager": "--vllm-enforce-eager",
    "num_samples": "--num-samples",  # evaluate_model's own argument, in check_settings' messages
}
# `rlvr generate`: the model and the prompt format.
GENERATE_FLAGS = {
    "model.name_or_path": "--model",
    "model.cache_dir": "--cache-dir",
    "data.template": "--template",
    "data.system_prompt": "--system-prompt",
    "training.bf16": "--bf16",
}
# `rlvr serve-rollouts`: the model its engine loads.
SERVE_ROLLOUTS_FLAGS = {
    "model.name_or_path": "--model",
    "model.cache_dir": "--cache-dir",
    "vllm.dtype": "--dtype",
    "vllm.max_model_len": "--max-model-len",
    "vllm.enforce_eager": "--enforce-eager",
}
# `rlvr train`'s held-out set: the data settings of training.eval_dataset, and `rlvr eval`'s own words (its
# checks are shared) in config terms.
TRAIN_EVAL_KEYS = {
    "data.dataset": "training.eval_dataset",
    "data.split": "training.eval_split",
    "data.limit": "training.eval_limit",
    "--template": "data.template",
    "--reward": "training.eval_reward",
    "--temperature": "generation.temperature",
    "rewards.functions": "training.eval_reward",
}
COMMAND_FLAGS = {"eval": EVAL_FLAGS, "generate": GENERATE_FLAGS, "serve-rollouts": SERVE_ROLLOUTS_FLAGS}


def in_command_terms(message: str, words: dict[str, str]) -> str:
    """`message` with each setting named as `words` names it; a sub-key of a mapped section follows its flag.

    >>> in_command_terms("no CUDA device: use model.device=cpu", EVAL_FLAGS)
    'no CUDA device: use --device=cpu'
    >>> in_command_terms("data.reasoning_gym.tasks.chain_sum.weight must be > 0", EVAL_FLAGS)
    '--task-options tasks.chain_sum.weight must be > 0'
    >>> in_command_terms("model.safetensors is damaged", EVAL_FLAGS)  # a file name, not a setting
    'model.safetensors is damaged'
    >>> in_command_terms("/data/data.split/train.jsonl: set data.split", EVAL_FLAGS)  # nor a path
    '/data/data.split/train.jsonl: set --split'
    """
    if not words:
        return message
    return _pattern(tuple(words)).sub(lambda m: words[m[1]] + (" " + m[2] if m[2] else ""), message)


@lru_cache(maxsize=8)
def _pattern(keys: tuple[str, ...]) -> re.Pattern[str]:
    # longest first, so data.reasoning_gym wins over a shorter key; not inside a longer name or a path
    alternatives = "|".join(map(re.escape, sorted(keys, key=len, reverse=True)))
    return re.compile(rf"(?<![\w./-])({alternatives})(?:\.([\w.]+\w))?(?![\w/-])")
