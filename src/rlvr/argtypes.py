"""Command-line argument types shared by every command (`rlvr`, `serve-rewards`, `serve-rollouts`, evaluation).

Each is an argparse `type=`: it takes the flag's text and returns the value, or raises `ArgumentTypeError`
with a message that says what the flag accepts (argparse prefixes it with the flag's name). This module
imports only the standard library, so any command's parser can use it without pulling in another command.
"""

from __future__ import annotations

import argparse
import math

MAX_TIMEOUT = 86400.0  # seconds, a day: poll() cannot wait much longer than 2**31 ms


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan  # fails every range check below


def positive_int(text: str) -> int:
    """A whole number >= 1.

    >>> positive_int("3")
    3
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def count(text: str) -> int:
    """A whole number >= 0.

    >>> count("0")
    0
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def seed(text: str) -> int:
    """A random seed, 0 to 2**31 - 1 (as training.seed: NumPy refuses negative seeds and those past 32 bits)."""
    value = count(text)
    if value > 2**31 - 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to {2**31 - 1}, got {value}")
    return value


def port(text: str) -> int:
    """A TCP port, 1 to 65535."""
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be an integer from 1 to 65535, got {text!r}")
    return int(text)


def finite(text: str) -> float:
    """Any finite number (not inf, not NaN)."""
    value = _float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def temperature(text: str) -> float:
    """A finite number >= 0 (0: greedy decoding)."""
    value = _float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0 (0: greedy decoding), got {text!r}")
    return value


def probability(text: str) -> float:
    """A number in (0, 1], as top_p."""
    value = _float(text)
    if not 0 < value <= 1:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be in (0, 1] (1: no nucleus cut), got {text!r}")
    return value


def seconds(text: str) -> float:
    """A duration above 0 and at most a day."""
    value = _float(text)
    if not 0 < value <= MAX_TIMEOUT:  # False for NaN
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds above 0 and at most {MAX_TIMEOUT:g} (a day), got {text!r}"
        )
    return value


def megabytes(text: str) -> float:
    """A size in MiB of at least one byte."""
    value = _float(text)
    if not (math.isfinite(value) and value * 2**20 >= 1):
        raise argparse.ArgumentTypeError(f"must be a number above 0 (megabytes), got {text!r}")
    return value


def bf16_setting(text: str) -> bool | str:
    """`auto`, `true` or `false` (`--bf16` alone: true), as `training.bf16`."""
    value = text.strip().lower()
    if value not in ("auto", "true", "false"):
        raise argparse.ArgumentTypeError(
            f"must be auto (bfloat16 where the device runs it natively), true or false, got {text!r}"
        )
    return value if value == "auto" else value == "true"


def add_bf16_argument(parser: argparse.ArgumentParser) -> None:
    """`--bf16 [auto|true|false]`, default auto; the flag alone means true."""
    parser.add_argument(
        "--bf16",
        type=bf16_setting,
        nargs="?",
        const=True,
        default="auto",
        metavar="auto|true|false",
        help="bfloat16 autocast (float32 weights); auto (default): where the device runs it natively, else float32",
    )
