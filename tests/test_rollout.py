"""Completion masks end at the first EOS; sampling gives G adjacent completions per prompt."""

import pytest
import torch

from rlvr.config import GenerationConfig
from rlvr.data import build_messages, render_prompt
from rlvr.models import load_tokenizer
from rlvr.rollout import completion_mask_from_eos, sample


@pytest.mark.parametrize(
    "ids, mask, truncated",
    [
        ([5, 2, 0, 0], [1, 1, 0, 0], False),  # EOS itself is inside the mask
        ([2, 2, 2, 2], [1, 0, 0, 0], False),  # pad == eos: only the first counts
        ([5, 6, 7, 8], [1, 1, 1, 1], True),  # no EOS: truncated, all tokens count
        ([5, 6, 7, 3], [1, 1, 1, 1], False),  # a second EOS id (Qwen lists two)
    ],
)
def test_completion_mask_from_eos(ids, mask, truncated):
    got_mask, got_truncated = completion_mask_from_eos(torch.tensor([ids]), [2, 3])
    assert got_mask.tolist() == [mask]
    assert got_truncated.tolist() == [truncated]


def test_sample_gives_num_generations_per_prompt(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).train()
    texts = [
        render_prompt(tokenizer, build_messages(q, "plain")) for q in ["What is 2 + 3?", "Natalia sold clips"]
    ]
    config = GenerationConfig(num_generations=3, max_completion_length=10, temperature=1.0)
    out = sample(model, tokenizer, texts, config, 3, max_prompt_length=64)
    prompt_ids, completion_ids, completion_mask = out.prompt_ids, out.completion_ids, out.completion_mask
    truncated, cut = out.truncated, out.num_prompts_cut
    assert prompt_ids.shape[0] == completion_ids.shape[0] == 6
    assert completion_ids.shape[1] <= 10 and cut == 0
    assert torch.equal(prompt_ids[0], prompt_ids[2]) and not torch.equal(prompt_ids[0], prompt_ids[3])
    assert completion_mask.shape == completion_ids.shape and truncated.shape == (6,)
    assert model.training  # sampling runs in eval mode and restores the caller's mode


def test_forced_full_length(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    texts = [render_prompt(tokenizer, build_messages("What is 2 + 3?", "plain"))]
    config = GenerationConfig(num_generations=2, max_completion_length=8)
    out = sample(model, tokenizer, texts, config, 2, 64, force_full_length=True)
    assert out.completion_ids.shape == (2, 8)
