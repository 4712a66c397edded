"""docs/training.md's table of defaults that differ from TRL's, checked against TRL's own GRPOConfig."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from rlvr import GRPOConfig

trl = pytest.importorskip("trl")

DOC = Path(__file__).resolve().parents[1] / "docs" / "training.md"

# rlvr setting -> (TRL field, TRL's effective default from its config object). Settings whose off-values are
# spelled differently but mean the same (min_p 0 / None) compare by meaning.
SAME_MEANING = {("generation.min_p", 0.0, None)}


def _trl_effective(trl_config) -> dict[str, tuple[str, object]]:
    t = trl_config
    epsilon_high = t.epsilon_high if t.epsilon_high is not None else t.epsilon  # TRL's own fallback
    return {
        "algorithm.beta": ("beta", t.beta),
        "algorithm.epsilon": ("epsilon", t.epsilon),
        "algorithm.epsilon_high": ("epsilon_high", t.epsilon_high),
        "algorithm.mu": ("num_iterations", t.num_iterations),
        "algorithm.loss_type": ("loss_type", t.loss_type),
        "algorithm.scale_rewards": ("scale_rewards", t.scale_rewards),
        "algorithm.mask_truncated_completions": ("mask_truncated_completions", t.mask_truncated_completions),
        "algorithm.sync_ref_model": ("sync_ref_model", t.sync_ref_model),
        "algorithm.ref_model_sync_steps": ("ref_model_sync_steps", t.ref_model_sync_steps),
        "algorithm.ref_model_mixup_alpha": ("ref_model_mixup_alpha", t.ref_model_mixup_alpha),
        "algorithm.importance_sampling_level": ("importance_sampling_level", t.importance_sampling_level),
        "algorithm.delta": ("delta", t.delta),
        "algorithm.top_entropy_quantile": ("top_entropy_quantile", t.top_entropy_quantile),
        "algorithm.use_bias_correction_kl": ("use_bias_correction_kl", t.use_bias_correction_kl),
        "algorithm.multi_objective_aggregation": (
            "multi_objective_aggregation",
            t.multi_objective_aggregation,
        ),
        "algorithm.cispo_clip_max": ("epsilon_high", epsilon_high),  # TRL's CISPO cap is epsilon_high
        "algorithm.importance_sampling_correction": (
            "vllm_importance_sampling_correction",
            t.vllm_importance_sampling_correction,
        ),
        "algorithm.importance_sampling_mode": (
            "vllm_importance_sampling_mode",
            t.vllm_importance_sampling_mode,
        ),
        "algorithm.importance_sampling_clip_min": (
            "vllm_importance_sampling_clip_min",
            t.vllm_importance_sampling_clip_min,
        ),
        "algorithm.importance_sampling_clip_max": (
            "vllm_importance_sampling_clip_max",
            t.vllm_importance_sampling_clip_max,
        ),
        "generation.num_generations": ("num_generations", t.num_generations),
        "generation.max_completion_length": ("max_completion_length", t.max_completion_length),
        "generation.temperature": ("temperature", t.temperature),
        "generation.top_p": ("top_p", t.top_p),
        "generation.top_k": ("top_k", t.top_k),
        "generation.min_p": ("min_p", t.min_p),
        "generation.repetition_penalty": ("repetition_penalty", t.repetition_penalty),
        "training.learning_rate": ("learning_rate", t.learning_rate),
        "training.adam_beta1": ("adam_beta1", t.adam_beta1),
        "training.adam_beta2": ("adam_beta2", t.adam_beta2),
        "training.weight_decay": ("weight_decay", t.weight_decay),
        "training.lr_scheduler_type": ("lr_scheduler_type", str(t.lr_scheduler_type).split(".")[-1].lower()),
        "training.max_grad_norm": ("max_grad_norm", t.max_grad_norm),
        "training.bf16": ("bf16", t.bf16),
        "training.seed": ("seed", t.seed),
        "training.logging_steps": ("logging_steps", t.logging_steps),
        "training.save_steps": ("save_steps", t.save_steps),
        "training.save_total_limit": ("save_total_limit", t.save_total_limit),
        "training.batch_size": ("per_device_train_batch_size", t.per_device_train_batch_size),
        "training.gradient_accumulation_steps": (
            "gradient_accumulation_steps",
            t.gradient_accumulation_steps,
        ),
        "data.shuffle": ("shuffle_dataset", t.shuffle_dataset),
        "vllm.gpu_memory_utilization": ("vllm_gpu_memory_utilization", t.vllm_gpu_memory_utilization),
        "vllm.mode": ("vllm_mode", t.vllm_mode),
    }


def _trl_defaults():
    """TRL's GRPOConfig field defaults, as declared (instantiating it would check for a bf16 GPU)."""
    from types import SimpleNamespace

    from trl import GRPOConfig as TRLConfig

    values = {}
    for f in dataclasses.fields(TRLConfig):
        if f.default is not dataclasses.MISSING:
            values[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            values[f.name] = f.default_factory()
    return SimpleNamespace(**values)


def _rlvr_default(key: str) -> object:
    node = GRPOConfig()
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _documented() -> dict[str, str]:
    """rlvr setting -> the TRL cell of its row in the table."""
    text = DOC.read_text()
    section = text[text.index("## Defaults that differ from TRL's") :]
    section = section[: section.index("\n## ", 1)]
    rows = re.findall(r"^\| `([a-z0-9_.]+)` \| `[^`]+` \| ([^|]+) \|", section, re.M)
    return {key: cell.strip() for key, cell in rows}


def test_every_default_that_differs_from_trls_is_in_the_table_with_trls_value():
    mapping = _trl_effective(_trl_defaults())
    differing = {
        key: (trl_name, trl_value)
        for key, (trl_name, trl_value) in mapping.items()
        if _rlvr_default(key) != trl_value and (key, _rlvr_default(key), trl_value) not in SAME_MEANING
    }
    documented = _documented()
    assert sorted(documented) == sorted(differing)
    for key, (_, trl_value) in differing.items():
        # the TRL cell quotes TRL's effective default: `name` = `value`, or the fallback chain ending in it
        assert f"`{trl_value!r}`" in documented[key] or f"`{trl_value}`" in documented[key], (key, trl_value)


def test_the_mapping_names_real_trl_fields():
    from trl import GRPOConfig as TRLConfig

    names = {f.name for f in dataclasses.fields(TRLConfig)}
    mapping = _trl_effective(_trl_defaults())
    assert {trl_name for trl_name, _ in mapping.values()} <= names
