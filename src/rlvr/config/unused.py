"""Settings a config changes from their defaults that the run will never read: the section they belong to is off
(LoRA disabled, rlvr's own engine, one-reply episodes, no held-out set, no remote reward). Said at start, so a
setting that does nothing is not mistaken for one that acts."""

from __future__ import annotations

import dataclasses
from typing import Any


def _changed(section: Any, prefix: str, skip: tuple[str, ...] = ()) -> list[str]:
    """`prefix.field=value` of each field of `section` that differs from its default, nested sections included."""
    default = type(section)()
    out = []
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if f.name in skip:
            continue
        if dataclasses.is_dataclass(value):
            out += _changed(value, f"{prefix}{f.name}.")
        elif value != getattr(default, f.name):
            out.append(f"{prefix}{f.name}={value}")
    return out


def unused_settings(config: Any) -> list[str]:
    """`key=value (why it does nothing)` for every changed setting of a section this run leaves off.

    >>> from rlvr.config import GRPOConfig
    >>> unused_settings(GRPOConfig.from_dict({"model": {"lora": {"merge": True}}, "vllm": {"mode": "server"}}))
    ['model.lora.merge=True (model.lora.enabled is false)', 'vllm.mode=server (generation.engine is hf)']
    """
    t, d, r = config.training, config.data, config.rewards
    evaluated = t.eval_dataset is not None and t.eval_steps > 0
    datasets = [d.dataset, *([t.eval_dataset] if evaluated else [])]
    rewards = [*r.functions, *([t.eval_reward] if evaluated else [])]
    eval_keys = ("eval_split", "eval_limit", "eval_reward", "metric_for_best_model")
    sections = [  # (the section is off, its changed settings, why)
        (
            not config.model.lora.enabled,
            lambda: _changed(config.model.lora, "model.lora.", ("enabled",)),
            "model.lora.enabled is false",
        ),
        (
            config.generation.engine != "vllm",
            lambda: _changed(config.vllm, "vllm."),
            f"generation.engine is {config.generation.engine}",
        ),
        (
            config.environment.name == "single_turn",
            lambda: _changed(config.environment, "environment.", ("name",)),
            "environment.name is single_turn",
        ),
        (
            not any(n == "reasoning_gym" or n.startswith("reasoning_gym:") for n in datasets),
            lambda: _changed(d.reasoning_gym, "data.reasoning_gym."),
            "no dataset is reasoning_gym",
        ),
        (
            t.eval_dataset is None,
            lambda: [f"training.{k}={getattr(t, k)}" for k in eval_keys if getattr(t, k) != _default(t, k)],
            "training.eval_dataset is not set",
        ),
        (
            not any(s.startswith("remote:") for s in rewards),
            lambda: [
                f"rewards.{k}={getattr(r, k)}"
                for k in ("remote_timeout", "remote_retries")
                if getattr(r, k) != _default(r, k)
            ],
            "no reward is remote:",
        ),
    ]
    return [f"{setting} ({why})" for off, changed, why in sections if off for setting in changed()]


def _default(section: Any, key: str) -> Any:
    return getattr(type(section)(), key)
