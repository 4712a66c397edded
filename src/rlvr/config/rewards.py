"""The `rewards` section: which reward functions score completions, their weights, and where they run."""

from __future__ import annotations

from dataclasses import dataclass, field

from rlvr.config.checks import ConfigError, at_least, seconds


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
    slow verifier does not hold up the step; 0 runs them in the training process."""
    timeout: float | None = None
    """Seconds one reward call may take in a worker before it is killed and the run stops with an error naming
    the function (needs num_workers >= 1: a call in the training process cannot be stopped). None: no limit."""

    def validate(self) -> None:
        if not self.functions:
            raise ConfigError("rewards.functions is empty: name at least one reward, e.g. [accuracy]")
        if self.weights is not None and len(self.weights) != len(self.functions):
            raise ConfigError(
                f"rewards.weights has {len(self.weights)} entries but rewards.functions has "
                f"{len(self.functions)}: give one weight per function"
            )
        seconds("rewards.remote_timeout", self.remote_timeout)
        at_least("rewards.remote_retries", self.remote_retries, 0)
        if self.num_workers < 0:
            raise ConfigError(f"rewards.num_workers must be >= 0, got {self.num_workers}")
        if self.timeout is not None:
            if self.timeout <= 0:
                raise ConfigError(f"rewards.timeout must be > 0 seconds, got {self.timeout}")
            if self.num_workers == 0:
                raise ConfigError(
                    "rewards.timeout needs rewards.num_workers >= 1: a reward call in the training process "
                    "cannot be stopped, one in a worker process can be killed"
                )
