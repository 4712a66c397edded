"""Policy, reference model and tokenizer, as the config asks: dtype, device, LoRA, checkpointing."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch

from rlvr.config import ModelConfig
from rlvr.models.prepare import ModelError, resolve_model_path

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("model.device=cuda but no CUDA device is available; use model.device=cpu or auto")
    return torch.device(device)


def load_tokenizer(path: str, trust_remote_code: bool = False) -> Any:
    """Tokenizer padded on the left (generation appends on the right), with a pad token."""
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer, path, trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_policy(
    config: ModelConfig, device: torch.device | None = None, train: bool = True
) -> tuple[Any, Any]:
    """Load (model, tokenizer) for training; LoRA adapters are added when config.lora.enabled. `train=False`
    (eval, generate) also takes a quantized model, which rlvr does not train."""
    from transformers import AutoModelForCausalLM

    if config.lora.enabled:
        check_trainable(config)
    path = resolve_model_path(config.name_or_path, config.cache_dir)
    device = device or resolve_device(config.device)
    tokenizer = load_tokenizer(path, config.trust_remote_code)
    model = _from_pretrained(
        AutoModelForCausalLM, path, dtype=DTYPES[config.dtype], trust_remote_code=config.trust_remote_code
    )
    quantized = getattr(model, "is_quantized", False) or getattr(model.config, "quantization_config", None)
    if train and quantized:
        raise ModelError(
            f"{path} loads as a quantized model, which rlvr does not train (in full or with model.lora): give "
            "an unquantized copy (rlvr eval and rlvr generate take the quantized one)"
        )
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if config.lora.enabled:
        model = add_lora(model, config)
    return model.to(device), tokenizer


def check_trainable(config: ModelConfig) -> None:
    """Raise ModelError, before any weights are read, when `model.name_or_path` is a LoRA adapter directory
    (a LoRA run's `final/`): training it in full finds no trainable weights, and a new adapter on top of it
    would be saved as if it sat on the bare base model, losing the first adapter. Generating from it is fine."""
    path = Path(config.name_or_path).expanduser()
    adapter = path / "adapter_config.json"
    if not adapter.is_file() or (path / "config.json").is_file():
        return
    try:
        base = json.loads(adapter.read_text()).get("base_model_name_or_path") or "its base model"
    except (OSError, ValueError, AttributeError):
        base = "its base model"
    raise ModelError(
        f"model.name_or_path: {path} holds a LoRA adapter, not a full model, and cannot be trained "
        f"{'with another adapter on top' if config.lora.enabled else 'in full'}: train from the base model "
        f"({base}), or from the merged copy a LoRA run writes with model.lora.merge=true (final-merged/); "
        "to continue the adapter's own run, use --resume with its training.output_dir"
    )


def add_lora(model: Any, config: ModelConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    lora = config.lora
    peft_config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    if config.gradient_checkpointing:
        model.enable_input_require_grads()
    try:
        return get_peft_model(model, peft_config)
    except ValueError as exc:  # peft's NoMatchingPeftModuleError and its other refusals of target_modules
        linear = sorted(
            {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
        )
        raise ModelError(
            f"model.lora.target_modules {lora.target_modules!r} does not fit this model: {exc} Its linear modules "
            f"are {', '.join(linear)}: name some of them, or use all-linear"
        ) from None


def make_reference(policy: Any, matmul_dtype: torch.dtype | None = None) -> Any | None:
    """A frozen copy of the policy for the KL term; None for LoRA, whose base model (adapters off) is the
    reference, so no second copy of the weights is needed.

    With `matmul_dtype` (autocast's, when training in bfloat16) the copy's linear layers are stored in
    it: autocast casts their weights to that dtype at every call anyway, so the reference gives the same
    numbers from half the memory. Weights shared with another module (a tied output head) stay as they are.
    """
    if is_peft(policy):
        return None
    ref = copy.deepcopy(policy)
    ref.eval()
    ref.requires_grad_(False)
    if matmul_dtype is not None:
        shared = {
            id(p) for m in ref.modules() if not isinstance(m, torch.nn.Linear) for p in m.parameters(False)
        }
        for module in ref.modules():
            if isinstance(module, torch.nn.Linear) and id(module.weight) not in shared:
                module.to(matmul_dtype)
    return ref


def is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def _from_pretrained(cls: Any, path: str, **kwargs: Any) -> Any:
    from safetensors import SafetensorError

    try:
        return cls.from_pretrained(path, **kwargs)
    except (OSError, ValueError, RuntimeError, EOFError, SafetensorError) as exc:
        if not Path(path).expanduser().is_dir():
            raise ModelError(
                f"could not load {path!r}: {exc}\nIf the hub is unreachable, give a local Hugging Face "
                "directory, a .gguf file, or run `rlvr prepare-model smollm2-135m-instruct` and use the "
                "directory it prints."
            ) from exc
        # a local directory that does not load: a file cut short (an interrupted copy or download) or damaged
        what = "tokenizer" if "Tokenizer" in getattr(cls, "__name__", "") else "model"
        raise ModelError(
            f"cannot load the {what} in {path}: {type(exc).__name__}: {str(exc).strip().rstrip('.')[:300]}. Its files look "
            "damaged or incomplete (a copy or download cut short?): copy the model directory again"
        ) from exc
