"""Episodes: environments played on any engine that takes token ids, and the padded batch they train as.

`run_episodes` plays B rows x G episodes in waves: each wave sends every unfinished episode's next turn to
the engine in one `generate_ids` call (the first wave as B prompts x G samples, as a single-turn step does),
then steps each environment with the reply. Tokens follow `rollout.chat_tokens`'s rules: sampled tokens are
kept as sampled, environment tokens are the chat template's difference, and a template that rewrites the
past starts a new training row. A turn ends at an end-of-turn token (`eos_ids`), tool calls included: the
model writes its calls and closes its turn as the template's tool-call examples do, so every token of an
assistant turn, its end included, is sampled and trained.

`episode_batch` lays the rows out as `Rollout` does, with a `loss_mask` (1 on sampled tokens only) and
`episode_index` (each row's episode, for the episode's advantage).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from rlvr.config.environment import EnvironmentConfig
from rlvr.environments.base import Environment, Message, Step
from rlvr.environments.tools import run_calls
from rlvr.rollout.batch import Rollout
from rlvr.rollout.chat_tokens import ChatFormat
from rlvr.rollout.generation import pad_to


class EpisodeError(RuntimeError):
    """An environment that broke its contract while playing; the message names it and what to fix."""


class TokenGenerator(Protocol):
    """What `run_episodes` needs of an engine: `RolloutEngine.generate` (prompts may be token ids) for the first
    turn, `TokenEngine.generate_ids`'s contract for the later ones."""

    def generate(
        self, texts: Any, num_samples: int, config: Any, seeds: list[int] | None = None, greedy: bool = False
    ) -> Any: ...

    def generate_ids(
        self, prompts: list[list[int]], num_samples: int, config: Any, seeds: list[int], greedy: bool
    ) -> list[tuple[list[int], list[float] | None]]: ...


@dataclass
class EpisodeRow:
    """One training row of an episode: a prompt and what followed it, sampled and environment tokens."""

    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)  # sampled and environment tokens, interleaved
    loss_mask: list[int] = field(default_factory=list)  # 1 on sampled tokens, 0 on environment tokens
    logps: list[float] = field(default_factory=list)  # the sampler's log-prob per sampled token, 0 elsewhere
    turn_spans: list[tuple[int, int]] = field(
        default_factory=list
    )  # [start, end) of each reply in completion_ids
    truncated: bool = False  # its last reply has no end-of-turn token (cut by a length limit)

    @property
    def context_ids(self) -> list[int]:
        """What the engine is given for this row's next turn."""
        return self.prompt_ids + self.completion_ids


@dataclass
class Turn:
    """One assistant reply and the environment's answer to it."""

    row: int  # index in Episode.rows
    span: tuple[int, int]  # [start, end) in that row's completion_ids
    message: Message  # the reply as the conversation holds it
    text: str  # the reply decoded without special tokens, as reward functions read completions
    step: Step | None = None  # None: not stepped (cut reply, step timeout)


@dataclass
class Episode:
    """One played episode: its conversation, training rows, turns and how it ended."""

    group: int  # the dataset row (prompt) it played: episodes g * G ... g * G + G - 1 share one
    prompt: list[Message]  # the messages it started from (after reset, tools described)
    tools: list[dict[str, Any]]
    messages: list[Message]  # the conversation the model read: prompt, replies, environment messages
    rows: list[EpisodeRow]
    turns: list[Turn] = field(default_factory=list)
    done: bool = False  # the environment ended it
    truncation: str | None = None  # the limit that ended it: turn_length, max_total_tokens, max_turns, ...
    reward: float | None = (
        None  # the environment's reward for the episode (get_reward, else step rewards summed)
    )
    prompt_cut: bool = False  # the first prompt was cut from the left to max_prompt_length
    retokenized: int = 0  # continuations whose full render tokenizes the same text differently
    observations_truncated: int = 0  # environment messages cut to max_observation_tokens
    has_logps: bool = True  # the engine gave the sampler's log-probs (not when greedy)

    @property
    def finished(self) -> bool:
        return self.done or self.truncation is not None

    @property
    def completion_messages(self) -> list[Message]:
        """The messages after the prompt (replies and environment messages): TRL's `completions` of a tool loop."""
        return self.messages[len(self.prompt) :]

    @property
    def completion_text(self) -> str:
        """The last reply's text, as a single-turn reward reads its completion."""
        return self.turns[-1].text if self.turns else ""

    @property
    def step_rewards(self) -> list[float | None]:
        return [t.step.reward if t.step else None for t in self.turns]

    def count(self, key: str) -> int:
        """A `Step.info` count summed over the turns (`tool_calls`, `tool_errors`, `tool_timeouts`)."""
        return sum(int(t.step.info.get(key, 0)) for t in self.turns if t.step)

    def trajectory(self) -> dict[str, Any]:
        """What reward functions may read besides the completions."""
        return {
            "turns": len(self.turns),
            "tool_calls": [call for t in self.turns if t.step for call in t.step.info.get("calls", [])],
            "infos": [t.step.info if t.step else None for t in self.turns],
            "step_rewards": self.step_rewards,
            "done": self.done,
            "truncation": self.truncation,
        }


def turn_seed(seed: int, sample: int, turn: int) -> int:
    """The seed of an episode's later turn: mixed from its prompt's seed, its sample index and the turn,
    so no two (episode, turn) share a stream (as `derived_seed` mixes).

    >>> turn_seed(7, 0, 1) == turn_seed(7, 0, 1) != turn_seed(7, 1, 0)
    True
    """
    return int(np.random.SeedSequence([int(seed), int(sample), int(turn)]).generate_state(1)[0] >> 1)


def run_episodes(
    engine: TokenGenerator,
    chat: ChatFormat,
    environments: Sequence[Environment],
    rows: Sequence[dict[str, Any]],
    prompts: Sequence[list[Message]],
    num_generations: int,
    generation: Any,
    limits: EnvironmentConfig,
    eos_ids: Sequence[int],
    max_prompt_length: int,
    seeds: list[int] | None = None,
    greedy: bool = False,
) -> list[Episode]:
    """Play `num_generations` episodes of each of `rows` (with its chat messages `prompts`), episode
    i on `environments[i]` (G adjacent per row), each turn sampled with `generation` (a GenerationConfig:
    its `max_completion_length` bounds one reply). The first turn is the engine's own `generate` call on the
    rows' prompts with `seeds` (one per row, or None: the engine's default), so a single-turn environment samples
    exactly what a plain step samples; later turns go to `generate_ids` with `turn_seed`s derived from `seeds`
    (drawn from torch's random state when None)."""
    g = num_generations
    if len(environments) != len(rows) * g or len(prompts) != len(rows):
        raise ValueError(
            f"{len(environments)} environments and {len(prompts)} prompts for {len(rows)} rows x {g}"
        )
    eos = [int(i) for i in eos_ids]
    episodes = [
        _start(chat, env, rows[i // g], prompts[i // g], i // g, max_prompt_length, limits)
        for i, env in enumerate(environments)
    ]
    wave = 0
    while active := [i for i, e in enumerate(episodes) if not e.finished]:
        contexts = [episodes[i].rows[-1].context_ids for i in active]
        if (
            wave == 0
            and len(active) == len(episodes)
            and all(contexts[k] == contexts[k - k % g] for k in range(len(contexts)))
        ):  # the engine's own single-turn call: a one-turn episode samples exactly what a plain step samples
            outputs = _as_token_lists(engine.generate(contexts[::g], g, generation, seeds, greedy))
        else:
            if seeds is None:  # later turns need seeds of their own: drawn once, from the process's state
                seeds = torch.randint(0, 2**31 - 1, (len(rows),)).tolist()
            wave_seeds = [turn_seed(seeds[i // g], i % g, len(episodes[i].turns)) for i in active]
            outputs = engine.generate_ids(contexts, 1, generation, wave_seeds, greedy)
        if len(outputs) != len(active):
            raise EpisodeError(f"the engine returned {len(outputs)} completions for {len(active)} prompts")
        replied = [i for i, out in zip(active, outputs) if _take_reply(episodes[i], chat, out, eos, limits)]
        steps = run_calls(
            [lambda env=environments[i], m=episodes[i].messages[-1]: env.step(m) for i in replied],
            limits.step_timeout or None,
            limits.step_workers,
        )
        for i, outcome in zip(replied, steps):
            _take_step(episodes[i], environments[i], chat, outcome, limits)
        wave += 1
    for episode, env in zip(episodes, environments):
        get_reward = getattr(env, "get_reward", None)
        rewards = [r for r in episode.step_rewards if r is not None]
        episode.reward = get_reward() if callable(get_reward) else (sum(rewards) if rewards else None)
    return episodes


def _as_token_lists(out: Any) -> list[tuple[list[int], list[float] | None]]:
    """A `Generation`'s rows as `generate_ids` answers: each completion's ids up to and including its EOS, and
    their sampling log-probs (None when greedy)."""
    rows = []
    for row, mask in enumerate(out.completion_mask.bool()):
        logps = out.sampling_logps[row][mask].tolist() if out.sampling_logps is not None else None
        rows.append((out.completion_ids[row][mask].tolist(), logps))
    return rows


def _start(
    chat: ChatFormat,
    env: Environment,
    row: dict[str, Any],
    prompt: list[Message],
    group: int,
    max_prompt_length: int,
    limits: EnvironmentConfig,
) -> Episode:
    """Reset `env` for `row` and tokenize the first prompt (cut from the left as `tokenize_prompts` cuts)."""
    try:
        messages = env.reset(**{**row, "prompt": prompt})
    except Exception as exc:
        raise EpisodeError(
            f"{type(env).__name__}.reset raised {type(exc).__name__}: {exc}. reset receives the row's columns "
            f"({', '.join(row)}) and `prompt` as keywords: accept **row"
        ) from exc
    messages = list(prompt if messages is None else messages)
    tools = list(getattr(env, "tools", None) or [])
    messages = chat.prompt_messages(messages, tools)
    ids = chat.prompt_ids(messages, tools)
    episode = Episode(
        group=group,
        prompt=messages,
        tools=tools,
        messages=list(messages),
        rows=[EpisodeRow(prompt_ids=ids[-max_prompt_length:])],
        prompt_cut=len(ids) > max_prompt_length,
    )
    if len(episode.rows[0].prompt_ids) >= limits.max_total_tokens:
        episode.truncation = "max_total_tokens"
    return episode


def _take_reply(
    episode: Episode,
    chat: ChatFormat,
    output: tuple[list[int], list[float] | None],
    eos: list[int],
    limits: EnvironmentConfig,
) -> bool:
    """Append one sampled reply to the episode's current row; whether it ended its turn (to be stepped)."""
    ids, logps = list(output[0]), None if output[1] is None else list(output[1])
    if not ids:  # nothing generated: one end-of-turn token, as `assemble` keeps
        ids, logps = [eos[0]], None if logps is None else [0.0]
    episode.has_logps &= logps is not None
    end = next((k + 1 for k, token in enumerate(ids) if token in eos), len(ids))  # up to the first EOS
    row = episode.rows[-1]
    room = limits.max_total_tokens - len(row.context_ids)
    cut_by_budget = end > room
    end = min(end, room)
    ids = ids[:end]
    logps = [0.0] * end if logps is None else [float(x) for x in logps[:end]] + [0.0] * (end - len(logps))
    start = len(row.completion_ids)
    row.completion_ids += ids
    row.loss_mask += [1] * len(ids)
    row.logps += logps
    row.turn_spans.append((start, start + len(ids)))
    message = chat.assistant_message(ids)
    episode.messages.append(message)
    episode.turns.append(
        Turn(len(episode.rows) - 1, (start, start + len(ids)), message, chat.decode(ids, True))
    )
    if ids and ids[-1] in eos:
        return True
    row.truncated = True
    episode.truncation = "max_total_tokens" if cut_by_budget else "turn_length"
    return False


def _take_step(
    episode: Episode, env: Environment, chat: ChatFormat, outcome: Any, limits: EnvironmentConfig
) -> None:
    """Record the environment's answer and append its messages (or end the episode)."""
    if outcome.timed_out:
        episode.truncation = "step_timeout"
        return
    if outcome.error is not None:
        raise EpisodeError(
            f"{type(env).__name__}.step raised {type(outcome.error).__name__}: {outcome.error}. Fix the environment; "
            "what the model should read about its mistakes belongs in Step.messages"
        ) from outcome.error
    step = outcome.value
    if not isinstance(step, Step):
        raise EpisodeError(f"{type(env).__name__}.step returned {type(step).__name__}; it must return a Step")
    episode.turns[-1].step = step
    if step.done:
        episode.done = True
        episode.truncation = step.info.get("truncation")
        return
    if len(episode.turns) >= limits.max_turns:
        episode.truncation = "max_turns"
        return
    new: list[Message] = []
    for message in step.messages:
        message, cut = chat.truncate(message, limits.max_observation_tokens)
        new.append(message)
        episode.observations_truncated += cut
    row = episode.rows[-1]
    follow = chat.continuation(row.context_ids, episode.messages, new, episode.tools)
    length = len(follow.ids) if follow.new_row else len(row.context_ids) + len(follow.ids)
    if length >= limits.max_total_tokens:  # no room left for a reply: the messages are not shown
        episode.truncation = "max_total_tokens"
        return
    episode.messages += new
    if follow.new_row:
        episode.rows.append(EpisodeRow(prompt_ids=follow.ids))
        return
    episode.retokenized += follow.retokenized
    row.completion_ids += follow.ids
    row.loss_mask += [0] * len(follow.ids)
    row.logps += [0.0] * len(follow.ids)


@dataclass
class EpisodeBatch:
    """The rows of a batch of episodes, padded as `Rollout` pads: R rows >= N episodes, a row's episode in
    `episode_index` (rows of one episode adjacent, in order; episodes in the order played)."""

    prompt_ids: torch.Tensor  # [R, P] left-padded
    prompt_mask: torch.Tensor  # [R, P]
    completion_ids: torch.Tensor  # [R, C] right-padded: sampled and environment tokens
    completion_mask: torch.Tensor  # [R, C] 1 on every token of the completion, sampled or not; 0 on padding
    loss_mask: torch.Tensor  # [R, C] 1 on sampled tokens only: what the loss, KL, entropy and counts use
    truncated: torch.Tensor  # [R] bool: the row's last reply has no end-of-turn token
    episode_index: torch.Tensor  # [R] long: the episode each row belongs to
    turn_index: torch.Tensor  # [R, C] long: the episode's turn of each sampled token, -1 elsewhere
    num_prompts_cut: int  # rows (prompts) whose first prompt was cut to max_prompt_length
    # [R, C] float32 the sampler's log-prob of each sampled token, 0 on environment tokens and padding;
    # None when greedy
    sampling_logps: torch.Tensor | None = None


def episode_batch(episodes: Sequence[Episode], pad_id: int) -> EpisodeBatch:
    """Pad the episodes' rows into one batch; `sampling_logps` None unless every episode has them."""
    rows = [(e, index, row) for index, e in enumerate(episodes) for row in e.rows]
    prompt_width = max(len(row.prompt_ids) for _, _, row in rows)
    width = max(1, max(len(row.completion_ids) for _, _, row in rows))

    def left(values: list[int], fill: int) -> torch.Tensor:
        return pad_to(torch.tensor([values], dtype=torch.long), prompt_width, fill, left=True)

    def right(values: list, fill: float, dtype: torch.dtype) -> torch.Tensor:
        return pad_to(torch.tensor([values], dtype=dtype).reshape(1, -1), width, fill, left=False)

    turn_rows = []
    for episode in episodes:
        for row_index, row in enumerate(episode.rows):
            turns = [-1] * len(row.completion_ids)
            for number, turn in enumerate(episode.turns):
                if turn.row == row_index:
                    turns[turn.span[0] : turn.span[1]] = [number] * (turn.span[1] - turn.span[0])
            turn_rows.append(right(turns, -1, torch.long))
    groups = sorted({e.group for e in episodes})
    return EpisodeBatch(
        prompt_ids=torch.cat([left(row.prompt_ids, pad_id) for _, _, row in rows]),
        prompt_mask=torch.cat([left([1] * len(row.prompt_ids), 0) for _, _, row in rows]),
        completion_ids=torch.cat([right(row.completion_ids, pad_id, torch.long) for _, _, row in rows]),
        completion_mask=torch.cat(
            [right([1] * len(row.completion_ids), 0, torch.long) for _, _, row in rows]
        ),
        loss_mask=torch.cat([right(row.loss_mask, 0, torch.long) for _, _, row in rows]),
        truncated=torch.tensor([row.truncated for _, _, row in rows], dtype=torch.bool),
        episode_index=torch.tensor([index for _, index, _ in rows], dtype=torch.long),
        turn_index=torch.cat(turn_rows),
        num_prompts_cut=sum(any(e.prompt_cut for e in episodes if e.group == g) for g in groups),
        sampling_logps=torch.cat([right(row.logps, 0.0, torch.float32) for _, _, row in rows])
        if all(e.has_logps for e in episodes)
        else None,
    )


def episode_rollout(
    episodes: Sequence[Episode],
    rows: Sequence[dict[str, Any]],
    prompts: Sequence[Any],
    num_generations: int,
    pad_id: int,
    detailed: bool,
) -> Rollout:
    """The trainer's `Rollout` of played episodes (G per row of `rows`, whose chat `prompts` reward functions
    receive). `detailed` (episodes that can have more than one turn): each episode's messages become its
    completion for reward functions, its trajectory and the environment's reward are columns, and its turns
    are kept per token; a one-reply episode is a plain GRPO sample."""
    g = num_generations
    batch = episode_batch(episodes, pad_id)
    columns = {key: [row.get(key) for row in rows for _ in range(g)] for key in rows[0] if key != "prompt"}
    if detailed:  # what reward functions read besides the completions
        columns["trajectory"] = [e.trajectory() for e in episodes]
        columns["environment_reward"] = [e.reward for e in episodes]
    return Rollout(
        prompt_ids=batch.prompt_ids,
        prompt_mask=batch.prompt_mask,
        completion_ids=batch.completion_ids,
        completion_mask=batch.completion_mask,
        truncated=batch.truncated,
        prompts=[m for m in prompts for _ in range(g)],
        completions=[e.completion_text for e in episodes],
        columns=columns,
        num_prompts_cut=batch.num_prompts_cut,
        sampling_logps=batch.sampling_logps,
        loss_mask=batch.loss_mask,
        episode_index=batch.episode_index,
        turn_index=batch.turn_index if detailed else None,
        completion_messages=[e.completion_messages for e in episodes] if detailed else None,
        trajectories=[episode_record(e) for e in episodes] if detailed else None,
    )


TRUNCATIONS = ("turn_length", "max_total_tokens", "max_turns", "max_tool_calls", "step_timeout")


def episode_record(episode: Episode) -> dict[str, Any]:
    """What a finished episode was, in plain values: for the step's `env/*` figures and completions.jsonl."""
    return {
        "turns": len(episode.turns),
        "done": episode.done,
        "truncation": episode.truncation,
        "tool_calls": episode.count("tool_calls"),
        "tool_errors": episode.count("tool_errors"),
        "tool_timeouts": episode.count("tool_timeouts"),
        "new_rows": len(episode.rows) - 1,
        "retokenized": episode.retokenized,
        "observations_truncated": episode.observations_truncated,
        "sampled_tokens": sum(sum(r.loss_mask) for r in episode.rows),
        "environment_tokens": sum(len(r.loss_mask) - sum(r.loss_mask) for r in episode.rows),
        "reward": episode.reward,
        "step_rewards": episode.step_rewards,
        "messages": episode.completion_messages,
    }


def episode_stats(episodes: Sequence[Episode]) -> dict[str, float]:
    """Per-episode means to log (times `env/episodes` gives counts), and the share ended by each limit."""
    return record_stats([episode_record(e) for e in episodes])


def record_stats(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """`episode_stats` from `episode_record`s: means per episode, and the share ended by each limit."""
    n = max(1, len(records))
    keys = ("turns", "done", "tool_calls", "tool_errors", "tool_timeouts", "new_rows", "retokenized")
    keys += ("observations_truncated", "sampled_tokens", "environment_tokens")
    stats = {"env/episodes": float(len(records))}
    stats.update({f"env/{key}": sum(float(r[key]) for r in records) / n for key in keys})
    for reason in TRUNCATIONS:
        stats[f"env/truncation/{reason}"] = sum(r["truncation"] == reason for r in records) / n
    rewards = [r["reward"] for r in records if r["reward"] is not None]
    if rewards:
        stats["env/reward"] = sum(rewards) / len(rewards)
    return stats


def turn_logp_gaps(
    old_logps: torch.Tensor, sampling_logps: torch.Tensor, mask: torch.Tensor, turn_index: torch.Tensor
) -> dict[str, float]:
    """Sums and counts of |trainer - sampler| log-prob per turn of the episodes, over mask tokens [B, C]:
    a later turn's gap growing is a sign the tokens it was sampled after are not the ones trained on."""
    gap = (old_logps.detach().float() - sampling_logps.float()).abs()
    out: dict[str, float] = {}
    for turn in turn_index[mask.bool()].unique().tolist():
        where = mask.bool() & (turn_index == turn)
        out[f"{turn}/sum"] = gap[where].sum().item()
        out[f"{turn}/count"] = where.sum().item()
    return out


def sum_turn_gaps(parts: Sequence[dict[str, float]]) -> dict[str, float]:
    """`sampling/logp_diff/turn_T`: the mean gap of turn T over `turn_logp_gaps` parts (micro-batches)."""
    totals: dict[str, float] = {}
    for part in parts:
        for key, value in part.items():
            totals[key] = totals.get(key, 0.0) + value
    turns = sorted({int(key.split("/")[0]) for key in totals})
    return {
        f"sampling/logp_diff/turn_{t}": totals[f"{t}/sum"] / totals[f"{t}/count"]
        for t in turns
        if totals[f"{t}/count"]
    }
