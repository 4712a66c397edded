"""The reference model's part of the trainer: its log-probs (or the base model's under LoRA) and its refresh.

`ReferenceMixin` is a part of `GRPOTrainer`, kept apart so the loop file reads as the loop; it uses the trainer's
policy, reference and config.
"""

from __future__ import annotations

import torch

from rlvr.distributed import PolicyForward
from rlvr.rollout import autocast


class ReferenceMixin:
    """Log-prob passes without gradient (pi_old, the reference) and the reference's refresh or soft sync."""

    @torch.no_grad()
    def batched_logps(
        self,
        policy: PolicyForward,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        completion_mask: torch.Tensor,
        slices: list[slice],
    ) -> torch.Tensor:
        parts = []
        for part in slices:
            with autocast(self.device, self.autocast_dtype):
                logps, _ = policy(
                    input_ids[part],
                    attention_mask[part],
                    completion_mask[part],
                    self.config.generation.temperature,
                    self.config.algorithm.logprob_chunk_size,
                    self.config.generation.num_generations,
                    entropy=False,  # only the trained pass reports entropy
                )
            parts.append(logps)
        return torch.cat(parts)

    def reference_logps(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        completion_mask: torch.Tensor,
        slices: list[slice],
    ) -> torch.Tensor:
        if self.ref_policy is not None:
            return self.batched_logps(self.ref_policy, input_ids, attention_mask, completion_mask, slices)
        with self.model.disable_adapter():  # LoRA: the base model is the reference
            return self.batched_logps(self.policy, input_ids, attention_mask, completion_mask, slices)

    def update_reference(self) -> None:
        """Hard refresh every ref_model_refresh_steps, or TR-DPO soft sync every ref_model_sync_steps."""
        a = self.config.algorithm
        if self.ref_policy is None:
            return
        # Through the PolicyForward roots: under FSDP both hold their shards in the same layout, and a root's
        # state_dict() first puts back any shards left gathered after a forward.
        if a.ref_model_refresh_steps and self.step % a.ref_model_refresh_steps == 0:
            self.ref_policy.load_state_dict(self.policy.state_dict())
        elif a.sync_ref_model and self.step % a.ref_model_sync_steps == 0:
            # parameters(), not state_dict(): tied embeddings appear once, so each is mixed once
            with torch.no_grad():
                for ref, policy in zip(self.ref_policy.parameters(), self.policy.parameters()):
                    ref.mul_(1 - a.ref_model_mixup_alpha).add_(policy, alpha=a.ref_model_mixup_alpha)
