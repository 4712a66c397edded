"""Environments by name: the built-ins, `@register_environment`, `module:Class`, `path/file.py:Class`; and the
Python API's `tools=[fn, ...]` and `environment_factory=Cls`, all made into one factory of `Environment`s.

A class named this way is either an `Environment` (it has `step`) or a TRL-style environment class (`reset`,
public methods as tools, an optional `get_reward`), which `FactoryEnvironment` wraps.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rlvr.config.environment import EnvironmentConfig
from rlvr.environments.base import Environment, SingleTurnEnvironment
from rlvr.environments.tools import FactoryEnvironment, ToolEnvironment
from rlvr.rewards.registry import _load_file  # one module per user file, as for rewards

_BUILTINS = {
    "single_turn": "rlvr.environments.base:SingleTurnEnvironment",
    "calculator": "rlvr.environments.calculator:CalculatorEnvironment",
    "retry": "rlvr.environments.retry:RetryEnvironment",
    "python": "rlvr.environments.python:PythonEnvironment",
}
_REGISTRY: dict[str, type] = {}

EnvironmentFactory = Callable[[], Environment]


class EnvironmentSpecError(ValueError):
    """An environment spec that names nothing usable; the message says what is missing and where."""


def register_environment(name: str) -> Callable[[type], type]:
    """Class decorator that makes an environment available by `name` (`environment.name` in configs).

    >>> @register_environment("echo")
    ... class Echo(Environment):
    ...     def step(self, message):
    ...         ...
    >>> get_environment_class("echo").__name__
    'Echo'
    """
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"environment name must be a non-empty string without ':', got {name!r}")

    def decorator(cls: type) -> type:
        existing = _REGISTRY.get(name) or _BUILTINS.get(name)
        qualified = f"{cls.__module__}:{cls.__qualname__}"
        if (
            existing is not None
            and (existing if isinstance(existing, str) else _qualified(existing)) != qualified
        ):
            raise ValueError(f"environment {name!r} is already registered by {existing}")
        _REGISTRY[name] = cls
        return cls

    return decorator


def _qualified(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def list_environments() -> list[str]:
    """Names of the registered environments, sorted."""
    return sorted({*_BUILTINS, *_REGISTRY})


def get_environment_class(spec: str) -> type:
    """The class `spec` names: a registered name (`calculator`), `package.module:Class` or `path/to/file.py:Class`.

    >>> get_environment_class("calculater")
    Traceback (most recent call last):
    ...
    rlvr.environments.registry.EnvironmentSpecError: unknown environment 'calculater'; did you mean 'calculator'? ...
    """
    if not isinstance(spec, str) or not spec.strip():
        raise EnvironmentSpecError(f"environment spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    if spec in _REGISTRY:
        return _REGISTRY[spec]
    if spec in _BUILTINS:
        return _load(_BUILTINS[spec], spec)
    if ":" in spec:
        return _load(spec, spec)
    names = list_environments()
    close = difflib.get_close_matches(spec, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise EnvironmentSpecError(
        f"unknown environment {spec!r}; {hint}registered environments: {', '.join(names)}. "
        "Name your own as module:Class or path/to/file.py:Class."
    )


def _load(target_spec: str, spec: str) -> type:
    target, _, attribute = target_spec.rpartition(":")
    if not target or not attribute:
        raise EnvironmentSpecError(
            f"environment spec {spec!r} must look like module:Class or path/file.py:Class"
        )
    if target.endswith(".py"):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise EnvironmentSpecError(
                f"environment file {target!r} does not exist (resolved to {path}; environment spec {spec!r})"
            )
        try:
            module = _load_file(target, spec)
        except ValueError as exc:  # the file's import failed: say why
            raise EnvironmentSpecError(
                f"importing {path} failed for environment spec {spec!r}: {exc.__cause__!r}"
            ) from exc
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise EnvironmentSpecError(
                f"cannot import module {target!r} for environment spec {spec!r}: {exc}"
            ) from exc
    cls = getattr(module, attribute, None)
    if cls is None:
        raise EnvironmentSpecError(f"{target} has no attribute {attribute!r} (environment spec {spec!r})")
    if not inspect.isclass(cls):
        raise EnvironmentSpecError(
            f"{target}:{attribute} is a {type(cls).__name__}, not a class (environment spec {spec!r})"
        )
    return cls


def make_environment_factory(
    config: EnvironmentConfig,
    tools: Sequence[Callable[..., Any]] | None = None,
    environment_factory: Callable[[], Any] | None = None,
) -> EnvironmentFactory:
    """A function making one fresh environment for an episode, from the Python API's `environment_factory`
    (TRL's convention) and/or `tools`, else from `config.name` and `config.args`. Tool environments get
    `config.max_tool_calls` and `config.tool_timeout`.

    >>> make_environment_factory(EnvironmentConfig())().step({"role": "assistant", "content": "5"}).done
    True
    """
    limits = {"max_tool_calls": config.max_tool_calls, "tool_timeout": config.tool_timeout or None}
    if environment_factory is not None:
        return lambda: FactoryEnvironment(environment_factory, tools or (), **limits)
    if tools:
        if config.name != "single_turn":
            raise EnvironmentSpecError(
                f"tools= and environment.name={config.name!r} both name the environment; give one of them "
                "(an environment class offers its own tools)"
            )
        tools = list(tools)
        return lambda: ToolEnvironment(tools, **limits)
    cls = get_environment_class(config.name)
    args = dict(config.args)
    if issubclass(cls, ToolEnvironment):
        args = {**limits, **args}

    def build() -> Environment:
        try:
            return cls(**args)
        except TypeError as exc:
            raise EnvironmentSpecError(
                f"environment {config.name!r} cannot be made with environment.args {args}: {exc} "
                f"({cls.__name__}{inspect.signature(cls)})"
            ) from exc

    if not callable(getattr(cls, "step", None)):  # a TRL-style class: its methods are the tools
        return lambda: FactoryEnvironment(build, **limits)
    return build


class EnvironmentPool:
    """Environments made once and reused (each `reset` starts an episode afresh), TRL's "construct once, reset
    often": `take(n)` returns n distinct instances, making more only when a batch needs more than exist. The
    first is made at once, so a spec that cannot work fails before any model is loaded."""

    def __init__(self, factory: EnvironmentFactory) -> None:
        self.factory = factory
        self.instances: list[Environment] = [factory()]

    def take(self, count: int) -> list[Environment]:
        while len(self.instances) < count:
            self.instances.append(self.factory())
        return self.instances[:count]


__all__ = [
    "EnvironmentFactory",
    "EnvironmentPool",
    "EnvironmentSpecError",
    "SingleTurnEnvironment",
    "get_environment_class",
    "list_environments",
    "make_environment_factory",
    "register_environment",
]
