"""Dynamic sampling in the trainer: draw more prompts until every rank has enough informative groups.

`DynamicSamplingMixin` is a part of `GRPOTrainer`, kept apart so the loop file reads as the loop; which
groups a step keeps is `algorithm.dynamic_sampling`'s pure `select_groups`.
"""

from __future__ import annotations

import torch

from rlvr.algorithm import normalize_then_sum, select_groups, zero_range_groups
from rlvr.distributed import moment_sums, moments, sum_over_ranks
from rlvr.rollout import Rollout, concat_rollouts, group_rows


class DynamicSamplingMixin:
    """`GRPOTrainer`'s algorithm.dynamic_sampling: it draws and scores through the trainer's
    `generate_rollout` and `score_rollout`, and weighs rewards with its `combined_rewards`."""

    def informative_batch(
        self, rollout: Rollout, rewards_per_fn: torch.Tensor, timings: dict[str, float]
    ) -> tuple[Rollout, torch.Tensor, dict[str, float]]:
        """DAPO's dynamic sampling (`algorithm.select_groups`): draw more prompts while any rank holds fewer
        informative groups than its prompts_per_step, at most max_resample_rounds more draws; then train on
        the first prompts_per_step informative groups, filled up with zero-variance ones (advantage 0) when
        the draws ran out. Returns the batch, its rewards [N, F] and the `dynamic_sampling/*` figures.

        All ranks draw together, as often as the one furthest from its quota needs: under FSDP sampling is
        collective, and the prompt order is one for all ranks. A rank that has its quota drops the surplus.
        """
        a = self.config.algorithm
        g = self.config.generation.num_generations
        parts, rewards = [rollout], [rewards_per_fn]
        informative = self.informative_groups(rewards_per_fn, rollout.episode_truncated)
        while len(parts) <= a.max_resample_rounds and self.ranks_short(informative):
            more, more_timings = self.generate_rollout(draw=len(parts))
            more_rewards = self.score_rollout(more, more_timings)
            for key, seconds in more_timings.items():
                timings[key] += seconds
            parts.append(more)
            rewards.append(more_rewards)
            informative = torch.cat(
                [informative, self.informative_groups(more_rewards, more.episode_truncated)]
            )
        selection = select_groups(informative, self.prompts_per_step)
        drawn = torch.cat(rewards)
        total = sum_over_ranks(
            {
                "kept": selection.kept,
                "dropped": selection.dropped,
                "filled": selection.filled,
                "extra_prompts": (len(parts) - 1) * self.prompts_per_step,
                **moment_sums(self.combined_rewards(drawn)),
            },
            self.dist,
        )
        batch = concat_rollouts(parts, self.tokenizer.pad_token_id).take_groups(selection.groups, g)
        return (
            batch,
            drawn[group_rows(selection.groups, g)],
            {
                "dynamic_sampling/rounds": len(parts),
                "dynamic_sampling/kept_groups": total["kept"],
                "dynamic_sampling/dropped_groups": total["dropped"],
                "dynamic_sampling/extra_prompts": total["extra_prompts"],
                "dynamic_sampling/filled_groups": total["filled"],
                "dynamic_sampling/reward_all": moments(total)[0],
            },
        )

    def informative_groups(self, rewards_per_fn: torch.Tensor, truncated: torch.Tensor) -> torch.Tensor:
        """[N // G] bool: groups whose advantages are not all 0, by the test the advantages use, and that
        reach the loss: with mask_truncated_completions a group whose every completion is truncated does not."""
        a, g = self.config.algorithm, self.config.generation.num_generations
        if a.multi_objective_aggregation == "normalize_then_sum":
            informative = ~zero_range_groups(normalize_then_sum(rewards_per_fn, self.reward_weights, g), g)
        else:
            informative = ~zero_range_groups(self.combined_rewards(rewards_per_fn), g)
        if a.mask_truncated_completions:
            informative &= ~truncated.view(-1, g).all(dim=1)
        return informative

    def ranks_short(self, informative: torch.Tensor) -> bool:
        """Whether any rank holds fewer informative groups than its prompts_per_step (the same on every rank)."""
        short = int(informative.sum().item()) < self.prompts_per_step
        return sum_over_ranks({"short": short}, self.dist)["short"] > 0
