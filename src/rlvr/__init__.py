"""rlvr: GRPO fine-tuning with verifiable rewards.

`GRPOConfig` and `GRPOTrainer` are imported on first use, so `rlvr.rewards` and the reward server's
workers load without torch and transformers.
"""

from typing import Any

__version__ = "0.1.0"

_LAZY = {"GRPOConfig": "rlvr.config", "ConfigError": "rlvr.config", "GRPOTrainer": "rlvr.trainer"}

__all__ = ["ConfigError", "GRPOConfig", "GRPOTrainer", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rlvr' has no attribute {name!r}")
