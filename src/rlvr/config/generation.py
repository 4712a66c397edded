"""The `generation` section: how completions are sampled (G, length, temperature and filters, the engine)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlvr.config.checks import ConfigError, above_zero, at_least, within


@dataclass
class GenerationConfig:
    num_generations: int = 4
    """G: completions sampled per prompt; advantages are relative within these groups."""
    max_completion_length: int = 128
    """Tokens generated at most per completion."""
    temperature: float = 0.9
    """Sampling temperature (log-probs are computed at the same temperature)."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    top_k: int = 0
    """Top-k sampling (0: off)."""
    min_p: float = 0.0
    """Min-p sampling (0: off)."""
    repetition_penalty: float = 1.0
    """>1 discourages repeats."""
    seed_per_prompt: bool = False
    """Sample each prompt's G completions in a call of their own, seeded from (training.seed, step, the prompt's
    place in the global batch): completions then do not depend on the number of processes or on the other
    prompts (a run on N GPUs repeats one on 1), at the cost of one generate call per prompt instead of one per
    step (docs/distributed.md has the cost). false: one batched call on the process's random state."""
    engine: Literal["hf", "vllm"] = "hf"
    """What samples the completions (training and evaluation): `hf`, rlvr's own decode loop on the policy
    (no extra dependency), or `vllm` (`make setup-vllm`), colocated or as a server (the `vllm` section;
    docs/rollouts.md)."""

    def validate(self) -> None:
        if self.num_generations < 2:
            raise ConfigError(
                f"generation.num_generations must be at least 2, got {self.num_generations}: group-relative "
                "advantages compare completions of the same prompt, and a group of one has nothing to compare"
            )
        at_least("generation.max_completion_length", self.max_completion_length, 1)
        at_least("generation.top_k", self.top_k, 0, " (0: off)")
        within(
            "generation.top_p",
            self.top_p,
            0.0,
            1.0,
            low_in=False,
            hint=" (1.0: sampling from the whole distribution)",
        )
        within("generation.min_p", self.min_p, 0.0, 1.0, hint=" (0: off)")
        above_zero("generation.repetition_penalty", self.repetition_penalty, " (1.0: off)")
        if self.temperature <= 0:
            raise ConfigError(f"generation.temperature must be > 0 for sampling, got {self.temperature}")
