"""Environments: what an episode plays (tools, feedback, verifiers), speaking chat messages. Tokens are
`rlvr.rollout.episodes`'s business."""

from rlvr.config.environment import EnvironmentConfig
from rlvr.environments.base import Environment, Message, SingleTurnEnvironment, Step
from rlvr.environments.registry import (
    EnvironmentPool,
    EnvironmentSpecError,
    get_environment_class,
    list_environments,
    make_environment_factory,
    register_environment,
)
from rlvr.environments.tools import (
    FactoryEnvironment,
    ToolCall,
    ToolEnvironment,
    ToolSpecError,
    check_arguments,
    parse_tool_calls,
    tool_schema,
)

__all__ = [
    "environment_errors",
    "Environment",
    "EnvironmentConfig",
    "EnvironmentPool",
    "EnvironmentSpecError",
    "FactoryEnvironment",
    "Message",
    "SingleTurnEnvironment",
    "Step",
    "ToolCall",
    "ToolEnvironment",
    "ToolSpecError",
    "check_arguments",
    "get_environment_class",
    "list_environments",
    "make_environment_factory",
    "parse_tool_calls",
    "register_environment",
    "tool_schema",
]


def environment_errors() -> tuple[type[Exception], ...]:
    """The errors an environment, its tools or the chat template raise that are the user's to fix: a command
    prints their message and exits 2, with no traceback."""
    from rlvr.rollout.chat_tokens import ChatFormatError
    from rlvr.rollout.episodes import EpisodeError

    return (EnvironmentSpecError, ToolSpecError, ChatFormatError, EpisodeError)
