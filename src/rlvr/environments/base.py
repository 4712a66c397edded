"""The environment contract: an environment speaks chat messages, one `Step` per assistant reply.

An episode is `reset(**row)` once, then, for each reply of the model, `step(assistant_message)` until a step
says `done` (or a limit of `EnvironmentConfig` ends it). Tokens, masks and log-probs are not an environment's
business: `rlvr.rollout.episodes` turns the messages into tokens, once, for every engine.

A single-turn task (today's GRPO: one prompt, one completion, a reward) is `SingleTurnEnvironment`, done
after the first reply.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, Any]
"""A chat message: `{"role": "user" | "assistant" | "system" | "tool", "content": str, ...}`; tool replies also
carry `"name"` (the tool's), as TRL writes them."""


@dataclass
class Step:
    """An environment's answer to one assistant reply.

    >>> Step([{"role": "user", "content": "Wrong, try again."}], done=False, reward=0.0)
    Step(messages=[{'role': 'user', 'content': 'Wrong, try again.'}], done=False, reward=0.0, info={})
    """

    messages: list[Message] = field(default_factory=list)
    """What the model reads next (tool replies, feedback); ignored when `done`."""
    done: bool = False
    """The episode is over: no further reply is sampled."""
    reward: float | None = None
    """This step's reward, or None when the step does not score."""
    info: dict[str, Any] = field(default_factory=dict)
    """Anything to log or to pass to reward functions (tool-call counts, errors); `info["truncation"]` names a
    limit the environment ended the episode on (e.g. `"max_tool_calls"`)."""


class Environment(abc.ABC):
    """Base class of an environment: override `step`, and `reset` when the row decides more than the prompt.

    `tools` are OpenAI function schemas (`{"type": "function", "function": {...}}`) offered to the model in
    the prompt; an environment without tools leaves it empty. One instance plays one episode at a time;
    instances are reused, `reset` starts each episode afresh.
    """

    tools: Sequence[dict[str, Any]] = ()

    def reset(self, **row: Any) -> list[Message] | None:
        """Start an episode for a dataset row: its columns, plus `prompt`, the chat messages built for it.
        Return the messages the model starts from, or None for the row's `prompt` as is."""
        return None

    @abc.abstractmethod
    def step(self, message: Message) -> Step:
        """Answer the assistant's reply `message` (`{"role": "assistant", "content": text}`)."""


class SingleTurnEnvironment(Environment):
    """One prompt, one reply: done after the first reply, no reward of its own (the reward functions score it).

    >>> SingleTurnEnvironment().step({"role": "assistant", "content": "5"})
    Step(messages=[], done=True, reward=None, info={})
    """

    def step(self, message: Message) -> Step:
        return Step(done=True)
