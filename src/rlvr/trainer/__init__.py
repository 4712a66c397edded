"""The GRPO training loop and what it writes.

`GRPOTrainer` is imported on first use, so importing a part of the package (`checkpoint`) does not load
transformers.
"""

from typing import Any

__all__ = ["GRPOTrainer"]


def __getattr__(name: str) -> Any:
    if name == "GRPOTrainer":
        from rlvr.trainer.trainer import GRPOTrainer

        return GRPOTrainer
    raise AttributeError(f"module 'rlvr.trainer' has no attribute {name!r}")
