"""Loading a config: YAML files, `key.sub=value` overrides, and the type checks that build the dataclasses.

Every value is checked against its field's annotation (`int`, `float`, `Literal[...]`, unions, lists, nested
sections); an unknown key suggests the nearest valid one. The checks of values against each other live with
each section (`validate()`), not here.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from rlvr.config.checks import ConfigError


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping of sections in a YAML config file; a missing, unreadable or malformed file is a ConfigError."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(
            f"config file {path} does not exist; give a YAML file such as configs/gsm8k_boxed.yaml"
        )
    if path.is_dir():
        raise ConfigError(f"config {path} is a directory; give a YAML file such as configs/gsm8k_boxed.yaml")
    try:
        raw = load_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, got {type(raw).__name__}")
    return raw


def load_yaml(text: str) -> Any:
    """`yaml.safe_load`, except that a key given twice in one mapping is a `yaml.YAMLError` (PyYAML keeps the last
    one silently)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error: PyYAML keeps the last
    silently, so of two `max_steps:` lines in a section the one the reader sees first would do nothing."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"{key!r} is given twice (lines {seen[key]} and {line}): keep one",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` strings to nested dicts; values are parsed as YAML (`[1, 2]`, `true`, `1e-6`)."""
    raw = dict(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        key, value = item.split("=", 1)
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        try:
            node[parts[-1]] = load_yaml(value) if value.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"override {item!r}: the value is not valid YAML ({_yaml_problem(exc)}); quote it, e.g. {key}='...'"
            ) from None
    return raw


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """The parser's complaint with its 1-based line and column."""
    mark, context = getattr(exc, "problem_mark", None), getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if context is not None and getattr(exc, "context", None):  # e.g. where an unclosed bracket opened
        problem += f" ({exc.context} at line {context.line + 1})"
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def build(cls: type, raw: Any, prefix: str = "") -> Any:
    """An instance of the config dataclass `cls` from nested dicts, every key and type checked."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in raw.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean {prefix + close[0]!r}?" if close else f"; valid keys: {', '.join(fields)}"
            raise ConfigError(f"unknown config key {prefix + key!r}{hint}")
        kwargs[key] = _coerce(hints[key], value, f"{prefix}{key}")
    return cls(**kwargs)


def check_value(tp: Any, value: Any, key: str) -> Any:
    """`value` checked against the annotation `tp` as a config value is (ints become floats where a float is
    wanted); a ConfigError naming `key` otherwise. For settings typed elsewhere, such as a reward's options.

    >>> check_value(float | None, 5, "rewards.options.code_tests.timeout")
    5.0
    """
    return _coerce(tp, value, key)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, converting ints to floats where a float is expected."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value if value is not None else {}, prefix=key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{key} must be one of {', '.join(map(repr, args))}, got {value!r}{hint}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list ({_type_name(tp)}), got {value!r}")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)] if args else value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return value
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads `1e-6` as a string
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool) and (
        not isinstance(value, tp) or (tp is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    return value


def _type_name(tp: Any) -> str:
    """`int`, `int | None`, `bool | 'auto'`: the annotation as a user would write the value."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in typing.get_args(tp))
    if origin is Literal:
        return " | ".join(map(repr, typing.get_args(tp)))
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
