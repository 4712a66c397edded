"""One config system: nested dataclasses, one module per section with its checks, loaded from YAML with
`key.sub=value` overrides.

Every hyperparameter of a run lives here; the trainer reads it and never keeps its own copy. Unknown keys and wrong
types are errors that name the key (and suggest the nearest valid one), raised before any model is loaded.
"""

from rlvr.config.algorithm import AlgorithmConfig
from rlvr.config.checks import ConfigError
from rlvr.config.data import DataConfig, ReasoningGymConfig
from rlvr.config.distributed import DistributedConfig
from rlvr.config.environment import EnvironmentConfig
from rlvr.config.generation import GenerationConfig
from rlvr.config.grpo import GRPOConfig, validate
from rlvr.config.loading import apply_overrides
from rlvr.config.model import LoraConfig, ModelConfig
from rlvr.config.rewards import RewardsConfig
from rlvr.config.rollout import RolloutConfig
from rlvr.config.training import TrainingConfig
from rlvr.config.vllm import VLLMConfig

__all__ = [
    "AlgorithmConfig",
    "ConfigError",
    "DataConfig",
    "DistributedConfig",
    "EnvironmentConfig",
    "GRPOConfig",
    "GenerationConfig",
    "LoraConfig",
    "ModelConfig",
    "ReasoningGymConfig",
    "RewardsConfig",
    "RolloutConfig",
    "TrainingConfig",
    "VLLMConfig",
    "apply_overrides",
    "validate",
]
