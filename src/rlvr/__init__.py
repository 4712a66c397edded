"""rlvr: GRPO fine-tuning with verifiable rewards."""

__version__ = "0.1.0"

from rlvr.config import ConfigError, GRPOConfig
from rlvr.trainer import GRPOTrainer

__all__ = ["ConfigError", "GRPOConfig", "GRPOTrainer", "__version__"]
