"""The whole config of a run: its sections, loaded from YAML with overrides, and the checks across sections."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlvr.config.algorithm import AlgorithmConfig
from rlvr.config.checks import ConfigError, non_finite
from rlvr.config.data import DataConfig
from rlvr.config.distributed import DistributedConfig
from rlvr.config.environment import EnvironmentConfig
from rlvr.config.generation import GenerationConfig
from rlvr.config.loading import apply_overrides, build, read_yaml
from rlvr.config.model import ModelConfig
from rlvr.config.rewards import RewardsConfig
from rlvr.config.rollout import RolloutConfig
from rlvr.config.training import TrainingConfig, check_best_model_metric
from rlvr.config.vllm import VLLMConfig


@dataclass
class GRPOConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    """Policy model."""
    data: DataConfig = field(default_factory=DataConfig)
    """Training prompts."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """Sampling."""
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    """The vLLM rollout engine (generation.engine=vllm)."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """How far sampling may run ahead of training (asynchronous rollouts)."""
    rewards: RewardsConfig = field(default_factory=RewardsConfig)
    """Reward functions."""
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    """GRPO objective."""
    training: TrainingConfig = field(default_factory=TrainingConfig)
    """Optimisation, logging and saving."""
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    """Multi-process settings."""
    environment: EnvironmentConfig = field(default_factory=EnvironmentConfig)
    """What each sample plays: one reply (single_turn), or an episode with tools and feedback (docs/environments.md)."""

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> GRPOConfig:
        """Load a YAML file and apply `key.sub=value` overrides."""
        return cls.from_dict(apply_overrides(read_yaml(path), overrides or []))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> GRPOConfig:
        """Build from nested dicts, checking every key and type."""
        return build(cls, raw)

    @property
    def max_sequence_length(self) -> int:
        """The longest prompt + completion a sample reaches: one reply, or a whole episode of a multi-turn
        environment (`environment.max_total_tokens`); what a vLLM engine must hold."""
        one_reply = self.data.max_prompt_length + self.generation.max_completion_length
        if self.environment.name == "single_turn":
            return one_reply
        return max(one_reply, self.environment.max_total_tokens)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


_NON_FINITE_HINTS = {
    "training.max_grad_norm": " (null: no clipping)",
    "rewards.timeout": " (at most 86400 s, a day; raise it for a slow verifier)",
}
_TAG_TEMPLATES = ("reasoning_gym", "answer_tag", "xml_reasoning", "think_answer")


def validate(config: GRPOConfig) -> None:
    """Checks across sections, then each section's own, so a bad run fails before loading a model."""
    g, t = config.generation, config.training
    g.validate()
    if t.batch_size < 1:
        raise ConfigError(
            f"training.batch_size must be at least 1, got {t.batch_size}: it counts the completions of a step, "
            f"prompts per step * num_generations, e.g. {2 * g.num_generations}"
        )
    t.validate()
    if t.batch_size % g.num_generations != 0:
        raise ConfigError(
            f"training.batch_size ({t.batch_size}) must be divisible by generation.num_generations "
            f"({g.num_generations}): each prompt's {g.num_generations} completions stay in one batch; "
            f"try batch_size={max(1, t.batch_size // g.num_generations) * g.num_generations}"
        )
    if t.gradient_accumulation_steps < 1 or t.batch_size % t.gradient_accumulation_steps != 0:
        raise ConfigError(
            f"training.batch_size ({t.batch_size}) must be divisible by training.gradient_accumulation_steps "
            f"({t.gradient_accumulation_steps})"
        )
    for key, value in non_finite(config):
        raise ConfigError(f"{key} must be a finite number, got {value}" + _NON_FINITE_HINTS.get(key, ""))
    config.model.validate()
    config.data.validate()
    config.algorithm.validate()
    longest = "data.max_prompt_length + generation.max_completion_length"
    if config.max_sequence_length > config.data.max_prompt_length + g.max_completion_length:
        longest = "environment.max_total_tokens"
    config.vllm.validate(config.max_sequence_length, longest)
    config.rewards.validate()
    config.rollout.validate()
    config.environment.validate()
    check_evaluation(config)
    if (
        "reasoning_gym" in (*config.rewards.functions, t.eval_reward)
        and config.data.template not in _TAG_TEMPLATES
    ):
        raise ConfigError(
            "the reasoning_gym reward reads the answer from <answer> tags, but "
            f"data.template {config.data.template!r} does not ask for them: use data.template=reasoning_gym "
            f"(or {', '.join(_TAG_TEMPLATES[1:])})"
        )


def check_evaluation(config: GRPOConfig) -> None:
    """Evaluation settings that would do nothing without a word: a held-out set that is never evaluated, a best
    checkpoint chosen by a figure that is never logged."""
    t = config.training
    if t.eval_dataset is not None and t.eval_steps == 0:
        raise ConfigError(
            f"training.eval_dataset is {t.eval_dataset!r} but training.eval_steps is 0, so it would never be "
            "evaluated: set training.eval_steps=N to evaluate every N steps, or training.eval_dataset=null"
        )
    tasks: list[str] = []
    if t.eval_dataset is not None and t.eval_dataset.startswith("reasoning_gym:"):
        tasks = [task for task in t.eval_dataset.partition(":")[2].split("+") if task]
    elif t.eval_dataset == "reasoning_gym":
        tasks = list(config.data.reasoning_gym.tasks)
    check_best_model_metric(t.metric_for_best_model, tasks)
