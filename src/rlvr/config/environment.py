"""The `environment` section: what a run's episodes play (one reply, tools, a verifier that lets the model retry)
and the limits every episode keeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rlvr.config.checks import ConfigError, seconds


@dataclass
class EnvironmentConfig:
    name: str = "single_turn"
    """The environment: a registered name (single_turn, calculator, retry, python), `module:Class` or `path/file.py:Class`."""
    args: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the environment's constructor, e.g. `{reward: accuracy}` for retry."""
    max_turns: int = 4
    """Assistant replies per episode at most; an episode not done by then ends (truncation `max_turns`)."""
    max_tool_calls: int = 8
    """Tool calls per episode at most; a reply that would pass it ends the episode (truncation `max_tool_calls`)."""
    max_observation_tokens: int = 512
    """Tokens of text per environment message at most: a longer one keeps its first tokens and a marker line (0: no limit)."""
    max_total_tokens: int = 2048
    """Tokens per episode at most (prompt, replies, environment messages): sampling stops there (truncation `max_total_tokens`)."""
    tool_timeout: float = 10.0
    """Seconds one tool call may run; past it the model reads an error as the tool's reply (the call is abandoned, and interrupted once)."""
    step_timeout: float = 60.0
    """Seconds one environment step may take; past it the episode ends (truncation `step_timeout`)."""
    step_workers: int = 1
    """Episodes whose steps run at once (threads): more for environments that wait on a sandbox or a server."""
    reward_weight: float = 1.0
    """Weight of the environment's own reward (get_reward(), else its step rewards summed) among the rewards,
    as the reward `environment`; episodes of environments that give none score None there."""
    tool_prompt: Literal["auto", "template", "system"] = "auto"
    """How tools are offered: the chat template's `tools=` (template), a description in the system message (system), or auto (template where it renders tools)."""
    tool_role: Literal["auto", "tool", "user"] = "auto"
    """How tool replies are rendered: role tool, or a user message of `<tool_response>` blocks (user); auto: tool where the template renders it."""

    def validate(self) -> None:
        """Raise ConfigError naming the first field out of range."""
        for key in ("max_turns", "max_tool_calls", "max_total_tokens", "step_workers"):
            if getattr(self, key) < 1:
                raise ConfigError(f"environment.{key} must be at least 1, got {getattr(self, key)}")
        for key in ("max_observation_tokens", "tool_timeout", "step_timeout"):
            if getattr(self, key) < 0:
                raise ConfigError(f"environment.{key} must be >= 0 (0: no limit), got {getattr(self, key)}")
        for key in ("tool_timeout", "step_timeout"):
            seconds(f"environment.{key}", getattr(self, key), "0: no limit")
        if self.tool_prompt not in ("auto", "template", "system"):
            raise ConfigError(
                f"environment.tool_prompt must be auto, template or system, got {self.tool_prompt!r}"
            )
        if self.tool_role not in ("auto", "tool", "user"):
            raise ConfigError(f"environment.tool_role must be auto, tool or user, got {self.tool_role!r}")
