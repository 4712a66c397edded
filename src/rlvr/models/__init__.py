"""Loading and preparing models."""

from rlvr.models.loading import (
    DTYPES,
    check_trainable,
    is_peft,
    load_policy,
    load_tokenizer,
    make_reference,
    resolve_device,
)
from rlvr.models.prepare import SHIPPED, ModelError, convert_gguf, prepare_model, resolve_model_path

__all__ = [
    "DTYPES",
    "SHIPPED",
    "ModelError",
    "check_trainable",
    "convert_gguf",
    "is_peft",
    "load_policy",
    "load_tokenizer",
    "make_reference",
    "prepare_model",
    "resolve_device",
    "resolve_model_path",
]
