"""The `model` section: which weights to train, their dtype and device, and LoRA."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rlvr.config.checks import above_zero, at_least, within


@dataclass
class LoraConfig:
    enabled: bool = False
    """Train LoRA adapters (peft) instead of all weights."""
    r: int = 16
    """LoRA rank."""
    alpha: int = 32
    """LoRA scaling numerator (scale = alpha / r)."""
    dropout: float = 0.05
    """Dropout on the LoRA branch."""
    target_modules: list[str] | str = "all-linear"
    """Module names to adapt, or "all-linear"."""
    merge: bool = False
    """At the end of training also save the base model with the adapters merged in (`final-merged/`)."""

    def validate(self) -> None:
        at_least("model.lora.r", self.r, 1)
        above_zero("model.lora.alpha", self.alpha)
        within("model.lora.dropout", self.dropout, 0.0, 1.0, high_in=False)


@dataclass
class ModelConfig:
    name_or_path: str = "smollm2-135m-instruct"
    """Hub id, local Hugging Face directory, `.gguf` file, or a name known to `rlvr prepare-model`."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Dtype of the stored weights (and optimizer state). Use bf16 autocast for speed with float32 weights."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train; auto picks cuda when available."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward: less memory, about a third more compute."""
    trust_remote_code: bool = False
    """Passed to from_pretrained for models with custom code."""
    cache_dir: str | None = None
    """Where converted GGUF models and prepared models are kept (default: ~/.cache/rlvr)."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA settings."""

    def validate(self) -> None:
        self.lora.validate()
