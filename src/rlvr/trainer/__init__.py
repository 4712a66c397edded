"""The GRPO training loop and what it writes.

`GRPOTrainer` is imported on first use, so reward worker processes (which import `scoring`) do not load
transformers.
"""

from typing import Any

from rlvr.trainer.scoring import RewardError, score

__all__ = ["GRPOTrainer", "RewardError", "score"]


def __getattr__(name: str) -> Any:
    if name == "GRPOTrainer":
        from rlvr.trainer.trainer import GRPOTrainer

        return GRPOTrainer
    raise AttributeError(f"module 'rlvr.trainer' has no attribute {name!r}")
