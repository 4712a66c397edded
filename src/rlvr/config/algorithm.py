"""The `algorithm` section: the GRPO family's objective (clipping, KL, loss aggregation, importance sampling)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlvr.config.checks import ConfigError, at_least


@dataclass
class AlgorithmConfig:
    beta: float = 0.04
    """KL coefficient to the reference model; 0 loads no reference model."""
    epsilon: float = 0.2
    """Lower clip range of the ratio: 1 - epsilon."""
    epsilon_high: float | None = None
    """Upper clip range 1 + epsilon_high (DAPO's clip-higher); None means epsilon."""
    mu: int = 1
    """Policy updates per generation batch (num_iterations); old log-probs are taken before the first."""
    loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo", "cispo"] = "grpo"
    """Loss aggregation: grpo (per-sequence mean, then mean), bnpo (token mean over the micro-batch),
    dr_grpo (sum / (batch * max_completion_length)), dapo (token sum / token count of the whole batch);
    cispo: MiniMax-M1's clipped-weight objective (bounds cispo_clip_min/max), aggregated as dapo."""
    scale_rewards: Literal["group", "batch", "none"] = "group"
    """Divide centred rewards by the group std, the batch std, or nothing (Dr. GRPO)."""
    mask_truncated_completions: bool = False
    """Exclude completions that hit max_completion_length from the loss (DAPO)."""
    ref_model_refresh_steps: int | None = None
    """Copy the policy into the reference every N steps (the from-scratch tutorial's outer iterations)."""
    sync_ref_model: bool = False
    """Soft-update the reference every ref_model_sync_steps (TR-DPO)."""
    ref_model_mixup_alpha: float = 0.9
    """TR-DPO mix: ref <- alpha * policy + (1 - alpha) * ref."""
    ref_model_sync_steps: int = 64
    """Steps between TR-DPO soft updates."""
    logprob_chunk_size: int = 256
    """Token rows per chunk in log-softmax, so a float32 [tokens, vocab] tensor is never whole."""
    # The GRPO family as practised in 2026 (docs/training.md has each option's paper and TRL/verl/OpenRLHF names).
    multi_objective_aggregation: Literal["sum_then_normalize", "normalize_then_sum"] = "sum_then_normalize"
    """Several rewards: weighted sum then group advantages, or normalise each within its group, sum, then
    normalise over the batch (GDPO; scale_rewards is then not used)."""
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    """Per-token KL(policy || ref) estimator (Schulman 2020): k1 log-ratio, k2 half squared, k3."""
    kl_in: Literal["loss", "reward"] = "loss"
    """Where beta * KL goes: added to the loss, or subtracted per token from the reward (sampled tokens)."""
    use_bias_correction_kl: bool = False
    """Weight the loss's KL by the importance ratio (DeepSeek-V3.2; TRL's default is true): its gradient is
    then the reverse KL's."""
    importance_sampling_level: Literal["token", "sequence"] = "token"
    """Importance ratio per token, or one length-normalised ratio per sequence (GSPO)."""
    delta: float | None = None
    """Two-sided clipping (INTELLECT-2): cap the unclipped ratio at delta (> 1 + epsilon_high); None: off."""
    cispo_clip_min: float | None = None
    """loss_type cispo: lower bound of the clipped importance weight (None: unbounded, as MiniMax-M1)."""
    cispo_clip_max: float = 5.0
    """loss_type cispo: upper bound of the clipped importance weight (ScaleRL's 5.0; TRL's epsilon_high)."""
    top_entropy_quantile: float = 1.0
    """Train the policy loss on the top rho of loss tokens by entropy ("Beyond the 80/20 rule": 0.2); 1.0: all."""
    importance_sampling_correction: bool = False
    """Weight the policy loss by pi_old / pi_sampler (the sampler's log-probs travel in the Rollout)."""
    old_logps_source: Literal["trainer", "sampler"] = "trainer"
    """pi_old of the PPO ratio pi_theta / pi_old: the trainer's log-probs before the update (the sampler's lag
    is left to importance_sampling_correction: AReaL's decoupled loss), or the sampler's own log-probs (TRL's
    AsyncGRPO; AReaL without use_decoupled_loss and recompute_logprob): the clip then bounds each update's move
    away from the policy that sampled, however many steps old it is (rollout.max_staleness)."""
    off_policy_mask_threshold: float | None = None
    """DeepSeek-V3.2's off-policy sequence masking (TRL's name): a sequence with a negative advantage whose mean
    per-token log(pi_sampler / pi_theta) exceeds this leaves the policy loss (e.g. 0.5); None: off. Uses the
    sampler's log-probs where the engine returns them (the trainer's pi_old otherwise), so it sees both the
    sampler mismatch and the lag of rollout.max_staleness; logged as off_policy_masked."""
    importance_sampling_mode: Literal[
        "token_truncate", "token_mask", "sequence_truncate", "sequence_mask"
    ] = "sequence_mask"
    """Truncate (clip) or mask (zero) the weights outside the bounds, per token or per sequence."""
    importance_sampling_clip_min: float | None = None
    """Lower bound of the sampler importance weight (None: none)."""
    importance_sampling_clip_max: float | None = 3.0
    """Upper bound of the sampler importance weight (None: none)."""
    dynamic_sampling: bool = False
    """DAPO's dynamic sampling: drop groups whose rewards are all equal and draw more prompts until the batch
    holds batch_size completions of groups whose rewards differ, or max_resample_rounds is reached."""
    max_resample_rounds: int = 3
    """Dynamic sampling: generation rounds a step may draw after its first; a batch still short then trains
    on what it has, filled up with zero-variance groups (advantage 0)."""

    def validate(self) -> None:
        at_least("algorithm.mu", self.mu, 1)
        at_least("algorithm.logprob_chunk_size", self.logprob_chunk_size, 1)
        at_least("algorithm.ref_model_sync_steps", self.ref_model_sync_steps, 1)
        at_least("algorithm.ref_model_refresh_steps", self.ref_model_refresh_steps, 1, " (null: never)")
        at_least("algorithm.epsilon_high", self.epsilon_high, 0)
        at_least("algorithm.off_policy_mask_threshold", self.off_policy_mask_threshold, 0, " (null: off)")
        at_least(
            "algorithm.max_resample_rounds",
            self.max_resample_rounds,
            0,
            " (0: one generation round per step, nothing drawn again)",
        )
        self._validate_objective()
        if self.beta < 0 or self.epsilon < 0:
            raise ConfigError("algorithm.beta and algorithm.epsilon must be >= 0")
        if not 0.0 <= self.ref_model_mixup_alpha <= 1.0:
            raise ConfigError(
                f"algorithm.ref_model_mixup_alpha must be in [0, 1], got {self.ref_model_mixup_alpha}"
            )

    def _validate_objective(self) -> None:
        """The GRPO-family options: clip bounds, CISPO's caps, entropy masking, importance sampling."""
        high = 1 + (self.epsilon if self.epsilon_high is None else self.epsilon_high)
        if self.delta is not None and self.delta <= high:
            raise ConfigError(
                f"algorithm.delta ({self.delta}) must be above 1 + epsilon_high ({high:g}): it caps ratios that the "
                "clip leaves unbounded"
            )
        if self.cispo_clip_max <= 0 or (
            self.cispo_clip_min is not None and not 0 <= self.cispo_clip_min < self.cispo_clip_max
        ):
            raise ConfigError(
                f"algorithm.cispo_clip_min ({self.cispo_clip_min}) and algorithm.cispo_clip_max "
                f"({self.cispo_clip_max}) must satisfy 0 <= cispo_clip_min < cispo_clip_max"
            )
        if not 0.0 <= self.top_entropy_quantile <= 1.0:
            raise ConfigError(
                f"algorithm.top_entropy_quantile must be in [0, 1], got {self.top_entropy_quantile}"
            )
        low, top = self.importance_sampling_clip_min, self.importance_sampling_clip_max
        if (
            (low is not None and low < 0)
            or (top is not None and top <= 0)
            or (None not in (low, top) and low >= top)
        ):
            raise ConfigError(
                f"algorithm.importance_sampling_clip_min ({low}) and algorithm.importance_sampling_clip_max ({top}) "
                "must satisfy 0 <= min < max"
            )
        if self.old_logps_source == "sampler" and self.importance_sampling_correction:
            raise ConfigError(
                "algorithm.old_logps_source=sampler makes the PPO ratio pi_theta / pi_sampler already; "
                "importance_sampling_correction would weight it by pi_sampler / pi_sampler = 1: turn one of them off"
            )
        if self.use_bias_correction_kl and self.kl_in == "reward":
            raise ConfigError(
                "algorithm.use_bias_correction_kl weights the KL in the loss; with algorithm.kl_in=reward there is none"
            )
