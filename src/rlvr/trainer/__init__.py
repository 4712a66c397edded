"""The GRPO training loop and what it writes."""

from rlvr.trainer.scoring import RewardError, score
from rlvr.trainer.trainer import GRPOTrainer

__all__ = ["GRPOTrainer", "RewardError", "score"]
