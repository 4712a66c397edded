"""The GRPO training loop and what it writes.

`GRPOTrainer` is imported on first use, so importing a part of the package (`checkpoint_files`) does not load
transformers. `TrainingError` lives here, where every part of the trainer can raise it.
"""

from typing import Any

__all__ = ["GRPOTrainer", "TrainingError"]


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss keeps diverging); the message says where the last good state is."""


def __getattr__(name: str) -> Any:
    if name == "GRPOTrainer":
        from rlvr.trainer.trainer import GRPOTrainer

        return GRPOTrainer
    raise AttributeError(f"module 'rlvr.trainer' has no attribute {name!r}")
