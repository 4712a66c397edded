"""The `rollout` section: how far sampling may run ahead of training (asynchronous rollouts)."""

from __future__ import annotations

from dataclasses import dataclass

from rlvr.config.checks import at_least


@dataclass
class RolloutConfig:
    max_staleness: int = 0
    """S: steps a batch's sampling policy may lag the policy that trains on it. 0: sample, score, update, push,
    in turn (the synchronous loop). S > 0: a producer thread samples and scores the next batches while the
    trainer updates, starting a batch only when the engine's weights are at most S steps old (no sample is
    drawn to be thrown away); needs an engine on devices of its own (vllm.mode=server): rlvr's loop and the
    colocated vLLM engine share the trainer's and run synchronously (docs/rollouts.md, "Asynchronous rollouts")."""

    def validate(self) -> None:
        at_least("rollout.max_staleness", self.max_staleness, 0, " (0: synchronous)")
