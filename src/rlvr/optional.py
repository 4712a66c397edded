"""Optional packages a run asks for through its config, checked before any model loads.

A logger, an engine, LoRA or reasoning-gym named in the config but not installed would otherwise fail where it is
first used: after the model has loaded, or after the first steps (a logger starts with the loop). Each missing one
is a ConfigError that says what to install, or what to set instead.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from rlvr.config import ConfigError

# package -> how to install it (reasoning-gym: its pinned version, from `rlvr.rewards.reasoning_gym`)
INSTALL = {"tensorboard": "pip install tensorboard", "wandb": "pip install wandb", "peft": "pip install peft"}


def installed(package: str) -> bool:
    """Whether `package` can be imported here (without importing it).

    >>> installed("json"), installed("no_such_package_here")
    (True, False)
    """
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a parent package that is missing, or a module without a spec
        return False


def require(package: str, needed_by: str, instead: str) -> None:
    """ConfigError unless `package` is installed: `needed_by` names the setting, `instead` the way around it."""
    if installed(package):
        return
    if package == "reasoning_gym":
        from rlvr.rewards.reasoning_gym import INSTALL_HINT as how
    else:
        how = INSTALL[package]
    raise ConfigError(f"{needed_by} needs {package}, which is not installed: {how}, or {instead}")


def check_optional_packages(config: Any) -> None:
    """Every optional package the config asks for is installed (`GRPOConfig`; vLLM through `require_vllm`)."""
    from rlvr.rollout.engine import require_vllm

    t, v = config.training, config.vllm
    if config.generation.engine == "vllm" and (v.mode == "colocate" or v.weight_transfer == "collective"):
        require_vllm(v.mode == "server")
    for logger in ("tensorboard", "wandb"):
        if logger in t.report_to:
            require(logger, f"training.report_to {logger}", "drop it from training.report_to")
    if config.model.lora.enabled:
        require("peft", "model.lora.enabled", "set model.lora.enabled=false to train every weight")
    datasets = [config.data.dataset, *([t.eval_dataset] if t.eval_dataset and t.eval_steps else [])]
    if any(name == "reasoning_gym" or name.startswith("reasoning_gym:") for name in datasets):
        require("reasoning_gym", "a reasoning_gym: dataset", "choose another data.dataset")
    rewards = [*config.rewards.functions, *([t.eval_reward] if t.eval_dataset and t.eval_steps else [])]
    if "reasoning_gym" in rewards:
        require("reasoning_gym", "the reasoning_gym reward", "name another reward")
