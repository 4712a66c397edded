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


# Seconds a timeout may be: sockets and thread joins overflow on a few hundred years (httpx refuses 1e10), and
# nothing rlvr waits for should take longer than a day.
MAX_SECONDS = 86400.0
# Seeds NumPy takes are 32-bit; each process adds its rank to the run's seed.
MAX_SEED = 2**31 - 1


def seconds(key: str, value: float | None, off: str = "") -> None:
    """`value` a timeout above 0 and at most a day; 0 or None only where `off` says what they mean.

    >>> seconds("vllm.server_timeout", 1e300)
    Traceback (most recent call last):
    ...
    rlvr.config.checks.ConfigError: vllm.server_timeout must be above 0 and at most 86400 seconds (a day), got 1e+300
    """
    if value is None or (off and value == 0):
        return
    if not 0 < value <= MAX_SECONDS:
        raise ConfigError(
            f"{key} must be above 0 and at most {MAX_SECONDS:g} seconds (a day), got {value:g}"
            + (f" ({off})" if off else "")
        )


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
