"""Sampling G completions per prompt, and the masks that say which completion tokens count."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from rlvr.algorithm.logprobs import cache_argument, groups_share_prompts, selective_log_softmax
from rlvr.config import GenerationConfig


@dataclass
class Generation:
    """What an engine sampled: N = prompts * num_samples rows, each prompt's samples adjacent."""

    prompt_ids: torch.Tensor  # [N, P] left-padded
    prompt_mask: torch.Tensor  # [N, P]
    completion_ids: torch.Tensor  # [N, C] right-padded, C <= max_completion_length
    completion_mask: torch.Tensor  # [N, C] 1 up to and including the first EOS
    truncated: torch.Tensor  # [N] bool: no EOS within max_completion_length
    num_prompts_cut: int  # prompts cut from the left to max_prompt_length
    # [N, C] float32 log-prob of each sampled token under the distribution it was drawn from, 0 past the end;
    # None when greedy (no distribution) or not asked for
    sampling_logps: torch.Tensor | None = None


def pad_to(tensor: torch.Tensor, width: int, value: float, left: bool) -> torch.Tensor:
    """[N, W] -> [N, width], padded with `value` on the left or on the right.

    >>> pad_to(torch.tensor([[7, 8]]), 3, 0, left=True)
    tensor([[0, 7, 8]])
    """
    extra = width - tensor.shape[1]
    return torch.nn.functional.pad(tensor, (extra, 0) if left else (0, extra), value=value)


def completion_mask_from_eos(
    completion_ids: torch.Tensor, eos_ids: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask [N, C] covering tokens up to and including the first EOS, and truncated [N] (no EOS).

    >>> completion_mask_from_eos(torch.tensor([[5, 2, 2], [5, 6, 7]]), [2])
    (tensor([[1, 1, 0],
            [1, 1, 1]]), tensor([False,  True]))
    """
    is_eos = torch.isin(completion_ids, torch.tensor(eos_ids, device=completion_ids.device))
    length = completion_ids.shape[1]
    positions = torch.arange(length, device=completion_ids.device).expand_as(completion_ids)
    first_eos = torch.where(is_eos, positions, torch.full_like(positions, length)).min(dim=1).values
    mask = (positions <= first_eos.unsqueeze(1)).long()
    return mask, first_eos == length


def eos_token_ids(tokenizer: Any, model: Any) -> list[int]:
    """EOS ids from the tokenizer and the model's generation config (Qwen lists two)."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif gen_eos:
        ids.update(int(i) for i in gen_eos)
    return sorted(ids)


def tokenize_prompts(
    tokenizer: Any, texts: list[str] | list[list[int]], max_prompt_length: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Left-padded prompt ids [B, P] and mask, each prompt (a text, or token ids) cut from the left to
    max_prompt_length.

    Returns (ids, mask, number of prompts that were cut).
    """
    # A chat template already writes BOS and the turn markers; adding special tokens would double them.
    add_special = not getattr(tokenizer, "chat_template", None)
    # token ids pass through as they are: an episode's next turn is the tokens it holds, never re-tokenized
    encoded = [
        t if isinstance(t, list) else tokenizer(t, add_special_tokens=add_special)["input_ids"] for t in texts
    ]
    cut = sum(len(ids) > max_prompt_length for ids in encoded)
    encoded = [ids[-max_prompt_length:] for ids in encoded]
    width = max(len(ids) for ids in encoded)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, tokens in enumerate(encoded):
        ids[row, width - len(tokens) :] = torch.tensor(tokens, dtype=torch.long)
        mask[row, width - len(tokens) :] = 1
    return ids.to(device), mask.to(device), cut


def hf_generation_config(
    config: GenerationConfig, eos_ids: list[int], pad_id: int, force_full_length: bool = False
) -> Any:
    """A transformers GenerationConfig for sampling with our settings (the model's defaults are ignored)."""
    from transformers import GenerationConfig as HFGenerationConfig

    return HFGenerationConfig(
        do_sample=True,
        max_new_tokens=config.max_completion_length,
        min_new_tokens=config.max_completion_length if force_full_length else 0,
        temperature=config.temperature,
        top_p=config.top_p,
        # 0 written out, not None: transformers fills None from the model's generation_config and its own
        # defaults (top_k=50), which would sample from a different distribution than the loss scores.
        top_k=config.top_k,
        min_p=config.min_p,
        repetition_penalty=config.repetition_penalty,
        typical_p=1.0,
        no_repeat_ngram_size=0,
        eos_token_id=eos_ids,
        pad_token_id=pad_id,
    )


def logits_processors(config: GenerationConfig) -> Any:
    """The sampling transforms of `config` as transformers' own logits processors, in generate()'s order."""
    from transformers import (
        LogitsProcessorList,
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    processors = LogitsProcessorList()
    if config.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(config.repetition_penalty))
    if config.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(config.temperature))
    if config.top_k:
        processors.append(TopKLogitsWarper(config.top_k))
    if config.top_p < 1.0:
        processors.append(TopPLogitsWarper(config.top_p))
    if config.min_p:
        processors.append(MinPLogitsWarper(config.min_p))
    return processors


@torch.no_grad()
def generate_static(
    model: Any,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    config: GenerationConfig,
    eos_ids: list[int],
    pad_id: int,
    force_full_length: bool = False,
    greedy: bool = False,
    group_size: int = 1,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sample (or, with `greedy`, decode by argmax) completions [N, C] with a preallocated KV cache.

    Decoding a 135M model on a CPU is bound by reading the weights once per token, and half of
    `generate()`'s per-token time goes to bookkeeping around that; this loop keeps only the forward,
    the logits processors and the sampling. With `group_size` G and each run of G rows sharing one
    prompt (as `sample` lays them out), each prompt is prefilled once and its keys and values repeated.
    Rows that finished get padding; the loop stops when all have. Returns (completion ids [N, C], the
    sampled tokens' log-probs [N, C] under the processed distribution they were drawn from, 0 on padding;
    None when greedy): one gather per step from the probabilities the draw already computed.
    """
    from transformers import StaticCache

    batch, prompt_len = prompt_ids.shape
    max_new = config.max_completion_length
    device = prompt_ids.device
    cache = StaticCache(config=model.config, max_cache_len=prompt_len + max_new)
    cache_arg = {cache_argument(model): cache}
    mask = torch.cat([prompt_mask, prompt_mask.new_ones(batch, max_new)], dim=1)
    positions = (prompt_mask.long().cumsum(-1) - 1).clamp(min=0)
    share = groups_share_prompts(prompt_ids, group_size) and _rows_repeatable(cache)
    rows = slice(None, None, group_size) if share else slice(None)
    out = model(
        input_ids=prompt_ids[rows],
        attention_mask=prompt_mask[rows],
        position_ids=positions[rows],
        **cache_arg,
        use_cache=True,
        cache_position=torch.arange(prompt_len, device=device),
        logits_to_keep=1,
    )
    logits = out.logits[:, -1]
    if logits.shape[0] != batch:
        _repeat_cache_rows(cache, group_size, batch)
        logits = logits.repeat_interleave(group_size, dim=0)
    processors = logits_processors(config) if not greedy else None
    eos = torch.tensor(eos_ids, device=device)
    seen = prompt_ids  # the repetition penalty looks at prompt and completion so far
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    next_position = positions[:, -1:] + 1
    tokens, logps = [], []
    for step in range(max_new):
        scores = logits.float()
        if processors:
            scores = processors(seen, scores)
        if force_full_length and step < max_new - 1:
            scores[:, eos] = -math.inf  # min_new_tokens: EOS only at the last position
        if greedy:
            token = scores.argmax(dim=-1)
        else:
            probs = torch.softmax(scores, dim=-1)
            token = draw(probs)
            logps.append(probs.gather(1, token.unsqueeze(1)).squeeze(1).log())
        token = torch.where(finished, torch.full_like(token, pad_id), token)
        tokens.append(token)
        finished |= torch.isin(token, eos)
        if finished.all() or step == max_new - 1:
            break
        if processors:
            seen = torch.cat([seen, token.unsqueeze(1)], dim=1)
        logits = model(
            input_ids=token.unsqueeze(1),
            attention_mask=mask[:, : prompt_len + step + 1],
            position_ids=next_position + step,
            **cache_arg,
            use_cache=True,
            cache_position=torch.tensor([prompt_len + step], device=device),
        ).logits[:, -1]
    return torch.stack(tokens, dim=1), torch.stack(logps, dim=1) if logps else None


def draw(probs: torch.Tensor) -> torch.Tensor:
    """One index per row of `probs` [B, V], drawn with those probabilities (rows need not sum to 1).

    By inverting the cumulative sum at one uniform number per row: for a 49k vocabulary this takes a
    small part of `torch.multinomial`'s time on a CPU, which draws an exponential number per entry.

    >>> draw(torch.tensor([[0.0, 1.0, 0.0]]))
    tensor([1])
    """
    # float64: in float32 the running sum's rounding past 0.5 (6e-8) would swallow or double tiny entries
    cdf = probs.cumsum(dim=-1, dtype=torch.float64)
    total = cdf[:, -1:]
    if not bool(torch.isfinite(total).all() and (total > 0).all()):
        raise ValueError(
            "cannot sample: a row of probabilities is all zero, inf or NaN (overflowing logits?); "
            "check the model's outputs and the sampling settings (temperature, top_k, top_p, min_p)"
        )
    point = torch.rand(probs.shape[0], 1, device=probs.device, dtype=cdf.dtype) * total
    # the first index whose cumulative sum exceeds the point: zero-probability entries are never chosen
    return torch.searchsorted(cdf, point, right=True).clamp_(max=probs.shape[1] - 1).squeeze(1)


def _rows_repeatable(cache: Any) -> bool:
    """Whether `_repeat_cache_rows` can copy this cache's rows: plain static key/value layers only."""
    from transformers.cache_utils import StaticLayer

    return all(isinstance(layer, StaticLayer) for layer in cache.layers)


def _repeat_cache_rows(cache: Any, repeats: int, batch: int) -> None:
    """Repeat each row of a prefilled StaticCache `repeats` times (transformers implements this for
    dynamic caches only)."""
    for layer in cache.layers:
        layer.keys = layer.keys.repeat_interleave(repeats, dim=0)
        layer.values = layer.values.repeat_interleave(repeats, dim=0)
        layer.batch_size = batch


@torch.no_grad()
def sample(
    model: Any,
    tokenizer: Any,
    prompt_texts: list[str],
    config: GenerationConfig,
    num_samples: int,
    max_prompt_length: int,
    autocast_dtype: torch.dtype | None = None,
    force_full_length: bool = False,
    backend: str = "static",
    greedy: bool = False,
    return_logps: bool = False,
) -> Generation:
    """Sample `num_samples` completions per prompt in one padded batch.

    backend "static" is rlvr's decode loop (generate_static); "hf" is transformers' generate(), kept as
    the reference. `greedy` decodes by argmax (evaluation). With `return_logps` (sampling only) the
    Generation holds the sampled tokens' log-probs under the processed sampling distribution.
    """
    device = next(model.parameters()).device
    prompt_ids, prompt_mask, cut = tokenize_prompts(tokenizer, prompt_texts, max_prompt_length, device)
    prompt_ids = prompt_ids.repeat_interleave(num_samples, dim=0)
    prompt_mask = prompt_mask.repeat_interleave(num_samples, dim=0)
    eos_ids = eos_token_ids(tokenizer, model)
    was_training = model.training
    model.eval()
    try:
        with weights_in(model, autocast_dtype), prepacked_linears(model, enabled=backend == "static"):
            if backend == "static":
                completion_ids, sampled_logps = generate_static(
                    model,
                    prompt_ids,
                    prompt_mask,
                    config,
                    eos_ids,
                    tokenizer.pad_token_id,
                    force_full_length,
                    greedy,
                    group_size=num_samples,
                )
            elif backend == "hf":
                gen_config = hf_generation_config(config, eos_ids, tokenizer.pad_token_id, force_full_length)
                gen_config.do_sample = not greedy
                output = model.generate(
                    input_ids=prompt_ids,
                    attention_mask=prompt_mask,
                    generation_config=gen_config,
                    output_scores=return_logps,  # the processed scores each token was drawn from
                    return_dict_in_generate=True,
                )
                completion_ids = output.sequences[:, prompt_ids.shape[1] :]
                sampled_logps = None
                if return_logps and completion_ids.shape[1]:
                    scores = torch.stack(output.scores, dim=1).float()
                    sampled_logps = selective_log_softmax(scores, completion_ids)
            else:
                raise ValueError(f"backend must be static or hf, got {backend!r}")
    finally:
        model.train(was_training)
    if completion_ids.shape[1] == 0:  # every row stopped at once: keep one (EOS) column
        completion_ids = torch.full((len(prompt_ids), 1), eos_ids[0], device=device)
    completion_mask, truncated = completion_mask_from_eos(completion_ids, eos_ids)
    generation = Generation(prompt_ids, prompt_mask, completion_ids, completion_mask, truncated, cut)
    if not return_logps:
        return generation
    if greedy:
        raise ValueError("return_logps needs sampling: greedy decoding draws from no distribution")
    if sampled_logps is None or sampled_logps.shape != completion_ids.shape:
        sampled_logps = torch.zeros(completion_ids.shape, device=device)
    generation.sampling_logps = sampled_logps * completion_mask  # 0 past each completion's end
    return generation


@contextlib.contextmanager
def weights_in(model: Any, dtype: torch.dtype | None) -> Iterator[None]:
    """Run the block with the model's floating-point weights cast to `dtype`, then restore them.

    Sampling in bfloat16 this way matches autocast's matmuls but keeps every activation, and the KV
    cache, in one dtype (under autocast RoPE promotes keys to float32 while values stay bfloat16), and
    avoids autocast's per-op dispatch. The float32 master weights are put back untouched. No gradients
    may be taken inside.
    """
    if dtype is None:
        yield
        return
    saved = {}
    for param in model.parameters():  # tied weights appear once
        if param.is_floating_point() and param.dtype != dtype:
            saved[param] = param.data
            param.data = param.data.to(dtype)
    try:
        yield
    finally:
        for param, data in saved.items():
            param.data = data


@contextlib.contextmanager
def prepacked_linears(model: Any, enabled: bool = True) -> Iterator[None]:
    """On a CPU, run the block's linear layers from weights reordered once into oneDNN's blocked layout.

    A decode step multiplies a handful of rows by every weight matrix, and the plain `linear` reorders
    each weight on every call: reading from the prepacked copy is 1.2x (bfloat16) to 1.4x (float32)
    faster per decode step of SmolLM2-135M on the 2-core machine, for one reorder pass per `sample` call.
    The products are oneDNN's either way: in bfloat16 the samples were identical to the plain path's,
    in float32 equal up to rounding (another summation order). Call it inside `weights_in`; parameters
    are not touched, and without oneDNN, or on another device, nothing changes.
    """
    reorder = getattr(torch.ops.mkldnn, "_reorder_linear_weight", None)
    patched = []
    try:
        if enabled and reorder is not None and torch.backends.mkldnn.is_available():
            for module in model.modules():
                if isinstance(module, torch.nn.Linear) and _packable(module.weight):
                    module.forward = _prepacked_forward(module, reorder(module.weight.detach(), None))
                    patched.append(module)
        yield
    finally:
        for module in patched:
            del module.forward  # back to the class's forward


def _packable(weight: torch.Tensor) -> bool:
    if weight.device.type != "cpu" or weight.dtype not in (torch.float32, torch.bfloat16):
        return False
    # oneDNN's bfloat16 path needs AVX-512 (BW, VL, DQ); elsewhere it refuses to reorder
    return weight.dtype != torch.bfloat16 or torch.ops.mkldnn._is_mkldnn_bf16_supported()


def _prepacked_forward(module: torch.nn.Linear, packed: torch.Tensor) -> Any:
    def forward(x: torch.Tensor) -> torch.Tensor:
        if x.dtype != packed.dtype or x.device != packed.device:
            return torch.nn.functional.linear(x, module.weight, module.bias)
        return torch.ops.mkldnn._linear_pointwise(x, packed, module.bias, "none", [], "")

    return forward


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CPU or CUDA when asked for, else nothing."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def decode_completions(
    tokenizer: Any, completion_ids: torch.Tensor, completion_mask: torch.Tensor
) -> list[str]:
    """Completion texts, each cut at its mask (EOS and padding dropped)."""
    return [
        tokenizer.decode(ids[mask.bool()], skip_special_tokens=True)
        for ids, mask in zip(completion_ids, completion_mask)
    ]
