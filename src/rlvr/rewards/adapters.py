"""The same reward functions for verl and OpenRLHF; TRL needs no adapter, its reward contract is rlvr's.

Both frameworks load a reward *file* by path, so this module uses absolute imports only and can be loaded that way.
Its path: `python -c "import rlvr.rewards.adapters as a; print(a.__file__)"`.

- verl: `custom_reward_function.path` = that path, `.name` = `verl_compute_score`, and pick the rewards with
  `custom_reward_function.reward_kwargs: {reward: "math_verifier"}` (or `RLVR_REWARDS`).
- OpenRLHF: `--remote_rm_url` = that path; it calls `reward_func`. Pick the rewards with the environment variables
  `RLVR_REWARDS=accuracy,xml_format` and optionally `RLVR_REWARD_WEIGHTS=1.0,0.5` (default: `accuracy`, weight 1).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from typing import Any

from rlvr.rewards.registry import RewardFn, combine_rewards, resolve_rewards

DEFAULT_REWARDS = "accuracy"


def split_response(query: str, prompt: str) -> str:
    """The response inside an OpenRLHF query, which is the prompt followed by the response.

    >>> split_response("Q: 2+3?\\nA: 5", "Q: 2+3?\\nA:")
    ' 5'
    >>> split_response("no prompt here", "Q:")
    'no prompt here'
    """
    return query[len(prompt) :] if prompt and query.startswith(prompt) else query


def reward_specs(reward: str | Sequence[str] | None = None) -> tuple[str, ...]:
    """Reward specs from an argument (a spec, comma-separated specs, or a list), else `$RLVR_REWARDS`, else accuracy.

    >>> reward_specs("math_verifier, xml_format")
    ('math_verifier', 'xml_format')
    """
    if reward is None:
        reward = os.environ.get("RLVR_REWARDS") or DEFAULT_REWARDS
    if isinstance(reward, str):
        reward = reward.split(",")
    specs = tuple(spec.strip() for spec in reward if spec and spec.strip())
    if not specs:
        raise ValueError("no reward named: pass reward=... or set RLVR_REWARDS, e.g. RLVR_REWARDS=accuracy")
    return specs


def reward_weights(weights: Sequence[float] | str | None, count: int) -> list[float]:
    """Weights from an argument, else `$RLVR_REWARD_WEIGHTS` (comma-separated), else 1.0 each."""
    if weights is None:
        weights = os.environ.get("RLVR_REWARD_WEIGHTS") or None
    if weights is None:
        return [1.0] * count
    if isinstance(weights, str):
        weights = [w for w in weights.split(",") if w.strip()]
    values = [float(w) for w in weights]
    if len(values) != count:
        raise ValueError(f"{len(values)} reward weights for {count} rewards: give one weight per reward")
    return values


@functools.lru_cache(maxsize=64)
def _resolve(specs: tuple[str, ...]) -> dict[str, RewardFn]:
    return resolve_rewards(specs)  # once per process: a file spec is imported once


def verl_compute_score(
    data_source: Any,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict | None = None,
    reward: str | Sequence[str] | None = None,
    weights: Sequence[float] | str | None = None,
    **kwargs: Any,
) -> float:
    """verl's `compute_score`: the weighted sum of the chosen rlvr rewards for one response; None counts as 0.

    The question, when verl's `extra_info` has one (`question` or `prompt`), is passed as the prompt.

    >>> verl_compute_score("openai/gsm8k", "<answer>72</answer>", "72", reward="gsm8k_correctness")
    2.0
    >>> verl_compute_score("math", r"... \\boxed{\\frac{1}{2}}", "0.5")  # default reward: accuracy
    1.0
    """
    specs = reward_specs(reward)
    fns = _resolve(specs)
    info = extra_info if isinstance(extra_info, dict) else {}
    prompt = info.get("question") or info.get("prompt") or ""
    totals, _ = combine_rewards(
        fns,
        [prompt],
        [solution_str],
        reward_weights(weights, len(fns)),
        answer=[ground_truth],
        ground_truth=[ground_truth],
        data_source=[data_source],
        extra_info=[extra_info],
    )
    return totals[0]


def reward_func(
    queries: list[str], prompts: list[str], labels: list[str] | None = None, **kwargs: Any
) -> dict:
    """OpenRLHF's custom reward: `{"rewards": tensor, "scores": tensor, "extra_logs": {name: tensor}}`.

    `rewards` is the weighted sum of the rewards in `$RLVR_REWARDS`; `scores` (OpenRLHF's dynamic-filtering
    signal) is the same; `extra_logs` holds each function's values, NaN where one returned None.

    >>> out = reward_func(["Q: 2+3? \\\\boxed{5}"], ["Q: 2+3?"], ["5"])
    >>> out["rewards"].tolist(), sorted(out["extra_logs"])
    ([1.0], ['accuracy'])
    """
    import torch

    fns = _resolve(reward_specs(None))
    responses = [split_response(q, p) for q, p in zip(queries, prompts, strict=True)]
    totals, per_fn = combine_rewards(
        fns, prompts, responses, reward_weights(None, len(fns)), answer=labels, ground_truth=labels
    )
    rewards = torch.tensor(totals, dtype=torch.float32)
    extra_logs = {
        name: torch.tensor([math.nan if v is None else v for v in values], dtype=torch.float32)
        for name, values in per_fn.items()
    }
    return {"rewards": rewards, "scores": rewards.clone(), "extra_logs": extra_logs}
