"""The `rewards` section: which reward functions score completions, their weights, and where they run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlvr.argtypes import MAX_TIMEOUT
from rlvr.config.checks import ConfigError, at_least, seconds

# Seconds a reward call may take unless told otherwise: a healthy verifier takes milliseconds to a minute on a
# batch; a judge model behind `remote:` up to remote_timeout x (remote_retries + 1), about two minutes.
DEFAULT_REWARD_TIMEOUT = 600.0


@dataclass
class RewardsConfig:
    functions: list[str] = field(default_factory=lambda: ["accuracy"])
    """Registry names, `module:function`, `path/file.py:function`, or `remote:http://host:port/get_reward`."""
    weights: list[float] | None = None
    """One weight per function (default 1.0 each)."""
    remote_timeout: float = 30.0
    """Seconds per remote reward request."""
    remote_retries: int = 3
    """Retries (with exponential backoff) for a remote reward."""
    num_workers: int = 0
    """Processes that run the reward functions (per training process), each on a chunk of whole groups, so a
    slow verifier does not hold up the step and one that hangs or crashes is killed; 0 runs them in the training
    process."""
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Options per reward, by its name in `functions`: `{code_tests: {sandbox: bubblewrap, partial_credit: false,
    timeout: 5}}`. An option is any parameter of the function but prompts and completions (docs/rewards.md)."""
    timeout: float = DEFAULT_REWARD_TIMEOUT
    """Seconds one reward call (one function on a batch or a worker's chunk) may take before the run stops with
    an error naming the function: a worker is killed; a call in the training process is interrupted, and one that
    cannot be (stuck in C code) ends the process 30 to 60 s later. Raise it for a slow verifier (a judge model)."""

    def validate(self) -> None:
        if not self.functions:
            raise ConfigError("rewards.functions is empty: name at least one reward, e.g. [accuracy]")
        if self.weights is not None and len(self.weights) != len(self.functions):
            raise ConfigError(
                f"rewards.weights has {len(self.weights)} entries but rewards.functions has "
                f"{len(self.functions)}: give one weight per function"
            )
        for name, options in self.options.items():
            if not isinstance(options, dict):
                raise ConfigError(
                    f"rewards.options.{name} must be a mapping of option: value, e.g. {{timeout: 5}}, "
                    f"got {options!r}"
                )
        # imported here, so that importing rlvr.config does not import the rewards
        from rlvr.rewards.options import check_option_names

        try:
            check_option_names(self.functions, self.options, "rewards.options")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        seconds("rewards.remote_timeout", self.remote_timeout)
        at_least("rewards.remote_retries", self.remote_retries, 0)
        if self.num_workers < 0:
            raise ConfigError(f"rewards.num_workers must be >= 0, got {self.num_workers}")
        if self.timeout is None:
            raise ConfigError(
                "rewards.timeout must be a number of seconds: every reward call has a limit, so a reward that "
                f"hangs cannot hang the run; raise it for a slow verifier (default {DEFAULT_REWARD_TIMEOUT:g})"
            )
        if not 0 < self.timeout <= MAX_TIMEOUT:
            raise ConfigError(
                f"rewards.timeout must be above 0 and at most {MAX_TIMEOUT:g} seconds (a day), got {self.timeout}"
            )
        for name, options in self.options.items():
            per_program = options.get("timeout")
            if isinstance(per_program, (int, float)) and per_program >= self.timeout:
                # one program that loops for ever would use up the whole call's limit and stop the run
                raise ConfigError(
                    f"rewards.options.{name}.timeout={per_program:g} s per program is not below rewards.timeout="
                    f"{self.timeout:g} s per reward call: lower it, or raise rewards.timeout"
                )
