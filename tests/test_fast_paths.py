"""The speed work leaves the learning signal unchanged: fast and plain paths agree on the same batch."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from rlvr.algorithm import completion_logps, grpo_loss
from rlvr.config import GenerationConfig
from rlvr.data import build_messages, render_prompt
from rlvr.models import load_tokenizer
from rlvr.rollout import sample
from rlvr.rollout.generation import weights_in

G = 4


@pytest.fixture
def model(tiny_model_dir):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).train()


def grpo_batch(vocab: int, prompts: int = 2, prompt_len: int = 10, completion_len: int = 8):
    """G adjacent rows per prompt; prompt 0 left-padded by 3, row 1 ends early."""
    torch.manual_seed(1)
    prompt_ids = torch.randint(5, vocab, (prompts, prompt_len))
    prompt_mask = torch.ones_like(prompt_ids)
    prompt_ids[0, :3], prompt_mask[0, :3] = 0, 0
    input_ids = torch.cat(
        [prompt_ids.repeat_interleave(G, 0), torch.randint(5, vocab, (prompts * G, completion_len))], 1
    )
    attention_mask = torch.cat(
        [prompt_mask.repeat_interleave(G, 0), torch.ones(prompts * G, completion_len, dtype=torch.long)], 1
    )
    completion_mask = torch.ones(prompts * G, completion_len, dtype=torch.long)
    completion_mask[1, 5:] = 0
    return input_ids, attention_mask, completion_mask


def logps_loss_and_grads(model, batch, group_size, dtype=None):
    model.zero_grad(set_to_none=True)
    input_ids, attention_mask, completion_mask = batch
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        logps, _ = completion_logps(
            model,
            input_ids,
            attention_mask,
            completion_mask,
            temperature=0.9,
            chunk_size=5,
            group_size=group_size,
        )
    advantages = torch.linspace(-1, 1, input_ids.shape[0])
    out = grpo_loss(
        logps,
        logps.detach() - 0.05,
        advantages,
        completion_mask,
        "grpo",
        8,
        0.2,
        beta=0.1,
        ref_logps=logps.detach() + 0.1,
    )
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    return logps.detach(), out.loss.detach(), grads


@pytest.mark.parametrize("dtype, atol", [(None, 1e-5), (torch.bfloat16, 2e-2)])
def test_shared_prompt_logps_loss_and_gradients_match_the_plain_path(model, dtype, atol):
    batch = grpo_batch(model.config.vocab_size)
    plain = logps_loss_and_grads(model, batch, group_size=1, dtype=dtype)
    shared = logps_loss_and_grads(model, batch, group_size=G, dtype=dtype)
    torch.testing.assert_close(shared[0], plain[0], atol=atol, rtol=0)
    torch.testing.assert_close(shared[1], plain[1], atol=atol, rtol=0)
    for name, grad in plain[2].items():
        scale = grad.abs().max().item() + 1e-8
        assert (shared[2][name] - grad).abs().max().item() <= max(atol, 1e-3) * scale * 10, name


def test_rows_that_do_not_share_a_prompt_take_the_plain_path(model):
    input_ids, attention_mask, completion_mask = grpo_batch(model.config.vocab_size)
    input_ids[1, 4] += 1  # row 1's prompt now differs from row 0's
    with torch.no_grad():
        plain, _ = completion_logps(model, input_ids, attention_mask, completion_mask, group_size=1)
        grouped, _ = completion_logps(model, input_ids, attention_mask, completion_mask, group_size=G)
    torch.testing.assert_close(grouped, plain)


def test_static_decode_loop_matches_generate_greedily(model, tiny_model_dir):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    texts = [
        render_prompt(tokenizer, build_messages(q, "plain")) for q in ["What is 2 + 3?", "Natalia sold clips"]
    ]
    config = GenerationConfig(num_generations=2, max_completion_length=12, temperature=1.0, top_k=1)  # argmax
    fast = sample(model, tokenizer, texts, config, 2, 64, backend="static")
    reference = sample(model, tokenizer, texts, config, 2, 64, backend="hf")
    assert torch.equal(fast[2], reference[2])
    assert torch.equal(fast[3], reference[3])


def test_sampling_in_bfloat16_restores_the_float32_weights(model):
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with weights_in(model, torch.bfloat16):
        assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert all(p.dtype == torch.float32 and torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied
