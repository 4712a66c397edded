"""The `data` section: which dataset, how its rows become prompts, and reasoning-gym's options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rlvr.config.checks import ConfigError, at_least


@dataclass
class ReasoningGymConfig:
    size: int = 1000
    """Instances in the train split of a `reasoning_gym:` dataset."""
    eval_size: int = 200
    """Instances in each held-out split (validation, test) when no limit is given."""
    seed: int = 0
    """Seed of the train split; held-out splits use far-off seeds and leave out its questions."""
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Options per task: `weight` in a mix (default 1) and the task's own config keys, e.g.
    {chain_sum: {weight: 2, max_terms: 3}}. With a bare data.dataset `reasoning_gym`, these are the tasks."""

    def validate(self) -> None:
        if self.size < 1 or self.eval_size < 1:
            raise ConfigError("data.reasoning_gym.size and data.reasoning_gym.eval_size must be at least 1")


@dataclass
class DataConfig:
    dataset: str = "gsm8k"
    """`gsm8k`, another name in data_dir, a .jsonl/.json/.parquet/.csv file, a hub id, a save_to_disk dir, or
    reasoning-gym tasks: `reasoning_gym:chain_sum`, a mix `reasoning_gym:chain_sum+leg_counting`."""
    split: str = "train"
    """Split to train on."""
    data_dir: str | None = None
    """Folder with local copies (`<data_dir>/<name>/<split>.jsonl`), used when the hub is unreachable.
    Defaults to the RLVR_DATA_DIR environment variable."""
    hub_config: str | None = None
    """Hub dataset config name (gsm8k uses "main")."""
    question_field: str | None = None
    """Column holding the question (None: guess from question/problem/prompt)."""
    answer_field: str | None = None
    """Column holding the gold answer (None: guess from answer/solution/ground_truth)."""
    answer_format: Literal["auto", "gsm8k", "boxed", "plain"] = "auto"
    """How to read the gold final answer: after `####`, the last \\boxed{}, or the field as is."""
    template: Literal[
        "boxed", "xml_reasoning", "think_answer", "answer_tag", "reasoning_gym", "code", "plain"
    ] = "boxed"
    """Prompt format; each asks for the answer in the form its reward reads (reasoning_gym: the library's own
    prompt, the answer in <answer> tags)."""
    system_prompt: str | None = None
    """Replaces the template's system prompt."""
    few_shot: list[dict[str, str]] = field(default_factory=list)
    """Example turns [{question, answer}] placed before the question (answer_tag has its own default)."""
    max_prompt_length: int = 512
    """Prompts longer than this (tokens) are cut from the left; the run reports how many."""
    limit: int | None = None
    """Use only the first N rows."""
    shuffle: bool = True
    """Shuffle prompt order each epoch (seeded)."""
    reasoning_gym: ReasoningGymConfig = field(default_factory=ReasoningGymConfig)
    """Size, seed and per-task options of a `reasoning_gym:` dataset (needs `pip install -e ".[tasks]"`)."""

    def validate(self) -> None:
        at_least("data.max_prompt_length", self.max_prompt_length, 1)
        at_least("data.limit", self.limit, 1, " (null: every row)")
        self.reasoning_gym.validate()
