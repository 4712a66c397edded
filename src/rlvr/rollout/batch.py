"""The Rollout: one step's samples as the trainer trains on them, rows of tokens and masks with their episodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from rlvr.rollout.generation import pad_to


@dataclass
class Rollout:
    """One step's samples as the trainer trains on them: E episodes (N = prompts * G, each group of G adjacent)
    laid out in R >= E rows. A one-reply sample is one row; an episode is one row unless its chat template
    rewrote the past, when it continues in a row of its own (`episode_index` says whose each row is)."""

    prompt_ids: torch.Tensor  # [R, P] left-padded
    prompt_mask: torch.Tensor  # [R, P]
    completion_ids: torch.Tensor  # [R, C] right-padded: sampled tokens (and an episode's environment tokens)
    completion_mask: torch.Tensor  # [R, C] 1 on every completion token up to and including the last EOS
    truncated: torch.Tensor  # [R] bool: the row's last reply has no EOS (cut by a length limit)
    prompts: list[Any]  # [E] chat messages or text, as reward functions receive them
    completions: list[str]  # [E] decoded text of the (last) reply, special tokens removed
    columns: dict[str, list[Any]] = field(
        default_factory=dict
    )  # [E] dataset columns, repeated per completion
    num_prompts_cut: int = 0  # prompts cut from the left to max_prompt_length
    # [R, C] float32 log-prob of each sampled token under the distribution it was drawn from (after
    # temperature, top_k, top_p, min_p and the repetition penalty: vLLM's processed_logprobs, which TRL asks
    # for), 0 on environment tokens and past the end; None when the engine gave none
    sampling_logps: torch.Tensor | None = None
    # [R, C] 1 on the tokens the policy sampled, which alone train and are counted; 0 on environment tokens of
    # an episode (tool results, feedback) and on padding. None at construction: completion_mask (one reply).
    loss_mask: torch.Tensor | None = None
    # [R] long: each row's episode (index into prompts, completions, columns). None at construction: row i is
    # episode i.
    episode_index: torch.Tensor | None = None
    # [R, C] long: the episode's turn of each sampled token, -1 elsewhere; None: one reply
    turn_index: torch.Tensor | None = None
    # [R, C] long: the policy version (training steps taken) each sampled token was drawn from, -1 elsewhere; an
    # episode that crossed a weight push has several. None: sampled in the synchronous loop, from this step's policy
    policy_version: torch.Tensor | None = None
    # [E] for episodes: the messages after the prompt (replies, tool results), which reward functions receive as
    # completions (TRL's convention), and each episode's trajectory (turns, tool calls, infos, step rewards)
    completion_messages: list[list[dict[str, Any]]] | None = None
    trajectories: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.loss_mask is None:
            self.loss_mask = self.completion_mask
        if self.episode_index is None:
            self.episode_index = torch.arange(len(self.completion_ids), device=self.completion_ids.device)

    @property
    def input_ids(self) -> torch.Tensor:  # [R, P + C]
        return torch.cat([self.prompt_ids, self.completion_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:  # [R, P + C]
        return torch.cat([self.prompt_mask, self.completion_mask], dim=1)

    def __len__(self) -> int:
        """Rows (what micro-batches split); `num_episodes` counts the samples."""
        return self.completion_ids.shape[0]

    @property
    def num_episodes(self) -> int:
        return len(self.completions)

    def per_row(self, values: torch.Tensor) -> torch.Tensor:
        """[E, ...] per-episode values (advantages, flags) -> [R, ...], each row its episode's."""
        return values[self.episode_index.to(values.device)]

    @property
    def episode_lengths(self) -> torch.Tensor:  # [E] sampled tokens of each episode, all its rows
        lengths = torch.zeros(self.num_episodes, dtype=torch.float32, device=self.loss_mask.device)
        return lengths.index_add(0, self.episode_index, self.loss_mask.sum(1).float())

    @property
    def episode_truncated(self) -> torch.Tensor:  # [E] bool: the episode's last row is truncated
        last = torch.zeros(self.num_episodes, dtype=torch.long, device=self.truncated.device)
        last[self.episode_index] = torch.arange(len(self), device=self.truncated.device)  # later rows win
        return self.truncated[last]

    def take_groups(self, groups: list[int], num_generations: int) -> Rollout:
        """The episodes of `groups` (indices of groups of G adjacent episodes), in that order, with all their rows.
        `num_prompts_cut` stays the whole rollout's: which prompts were cut is not recorded."""
        episodes = group_rows(groups, num_generations)
        rows, renumbered = [], []
        for new, episode in enumerate(episodes):
            mine = (self.episode_index == episode).nonzero().flatten().tolist()
            rows += mine
            renumbered += [new] * len(mine)
        index = torch.tensor(rows, dtype=torch.long, device=self.completion_ids.device)

        def pick(values: list[Any] | None) -> list[Any] | None:
            return None if values is None else [values[i] for i in episodes]

        return Rollout(
            prompt_ids=self.prompt_ids[index],
            prompt_mask=self.prompt_mask[index],
            completion_ids=self.completion_ids[index],
            completion_mask=self.completion_mask[index],
            truncated=self.truncated[index],
            prompts=pick(self.prompts),
            completions=pick(self.completions),
            columns={key: pick(values) for key, values in self.columns.items()},
            num_prompts_cut=self.num_prompts_cut,
            sampling_logps=self.sampling_logps[index] if self.sampling_logps is not None else None,
            loss_mask=self.loss_mask[index],
            episode_index=torch.tensor(renumbered, dtype=torch.long, device=index.device),
            turn_index=self.turn_index[index] if self.turn_index is not None else None,
            policy_version=self.policy_version[index] if self.policy_version is not None else None,
            completion_messages=pick(self.completion_messages),
            trajectories=pick(self.trajectories),
        )


def group_rows(groups: list[int], num_generations: int) -> list[int]:
    """The indices of `groups` (groups of G adjacent episodes), in that order.

    >>> group_rows([2, 0], 3)
    [6, 7, 8, 0, 1, 2]
    """
    return [g * num_generations + j for g in groups for j in range(num_generations)]


def concat_rollouts(parts: list[Rollout], pad_id: int) -> Rollout:
    """One rollout of `parts` in order, laid out as one batched `sample` call would: prompts padded on the
    left, completions (and sampling log-probs, with 0) on the right, masks 0 where padded. A dataset column
    some part lacks is None in its episodes."""
    prompt_width = max(p.prompt_ids.shape[1] for p in parts)
    completion_width = max(p.completion_ids.shape[1] for p in parts)

    def joined(name: str, width: int, value: float, left: bool) -> torch.Tensor:
        return torch.cat([pad_to(getattr(p, name), width, value, left) for p in parts])

    keys = dict.fromkeys(key for p in parts for key in p.columns)  # first-seen order
    return Rollout(
        prompt_ids=joined("prompt_ids", prompt_width, pad_id, left=True),
        prompt_mask=joined("prompt_mask", prompt_width, 0, left=True),
        completion_ids=joined("completion_ids", completion_width, pad_id, left=False),
        completion_mask=joined("completion_mask", completion_width, 0, left=False),
        truncated=torch.cat([p.truncated for p in parts]),
        prompts=[prompt for p in parts for prompt in p.prompts],
        completions=[completion for p in parts for completion in p.completions],
        columns={
            key: [v for p in parts for v in p.columns.get(key, [None] * p.num_episodes)] for key in keys
        },
        num_prompts_cut=sum(p.num_prompts_cut for p in parts),
        sampling_logps=None
        if any(p.sampling_logps is None for p in parts)
        else joined("sampling_logps", completion_width, 0.0, left=False),
        loss_mask=joined("loss_mask", completion_width, 0, left=False),
        episode_index=torch.cat(
            [p.episode_index + sum(q.num_episodes for q in parts[:k]) for k, p in enumerate(parts)]
        ),
        turn_index=None
        if any(p.turn_index is None for p in parts)
        else joined("turn_index", completion_width, -1, left=False),
        policy_version=None
        if any(p.policy_version is None for p in parts)
        else joined("policy_version", completion_width, -1, left=False),
        completion_messages=None
        if any(p.completion_messages is None for p in parts)
        else [m for p in parts for m in p.completion_messages],
        trajectories=None
        if any(p.trajectories is None for p in parts)
        else [t for p in parts for t in p.trajectories],
    )
