"""The error every config check raises, and the range checks each section's validation is written with.

A section's `validate()` names its keys in full (`generation.top_p`), so a message always says which setting to
change; a hint in brackets says what the off-value is where one exists (`(0: off)`, `(null: no limit)`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any


class ConfigError(ValueError):
    """A config that cannot run: the message names the key and what to do."""


def at_least(key: str, value: float | None, least: float, hint: str = "") -> None:
    """`value` >= `least`; None turns a setting off and is never out of range.

    >>> at_least("training.max_steps", 0, 1)
    Traceback (most recent call last):
    ...
    rlvr.config.checks.ConfigError: training.max_steps must be at least 1, got 0
    """
    if value is not None and value < least:
        raise ConfigError(f"{key} must be at least {least}, got {value}{hint}")


def above_zero(key: str, value: float | None, hint: str = "") -> None:
    """`value` > 0, or None."""
    if value is not None and value <= 0:
        raise ConfigError(f"{key} must be > 0, got {value}{hint}")


def within(
    key: str, value: float, low: float, high: float, low_in: bool = True, high_in: bool = True, hint: str = ""
) -> None:
    """`value` in the interval from `low` to `high`, each end included or not.

    >>> within("generation.top_p", 0.0, 0.0, 1.0, low_in=False)
    Traceback (most recent call last):
    ...
    rlvr.config.checks.ConfigError: generation.top_p must be in (0, 1], got 0.0
    """
    if not ((low <= value if low_in else low < value) and (value <= high if high_in else value < high)):
        interval = f"{'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"
        raise ConfigError(f"{key} must be in {interval}, got {value}{hint}")


def non_finite(node: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """(key, value) of every NaN or infinite float in a config dataclass, nested sections and lists included."""
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        key = prefix + f.name
        if dataclasses.is_dataclass(value):
            yield from non_finite(value, key + ".")
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            if isinstance(item, float) and not math.isfinite(item):
                yield (f"{key}[{i}]" if isinstance(value, list) else key), item
