"""Prompts against a run's token limits, said once before generating: how many are longer than the prompt limit
(and lose their start, cut from the left), and how many leave the completion too few of the positions the model
was built for (its `max_position_embeddings`), where a model with learned positions fails and a rotary one
degrades without a word."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The names model configs give the positions they were built for, most common first.
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


@dataclass(frozen=True)
class LimitNames:
    """How the command that was run names its two limits, so a warning says what to change."""

    max_prompt_length: str
    max_new_tokens: str


TRAIN_LIMITS = LimitNames("data.max_prompt_length", "generation.max_completion_length")
EVAL_LIMITS = LimitNames("--max-prompt-length", "--max-new-tokens")


def load_model_config(path: str, trust_remote_code: bool = False) -> Any | None:
    """The model config in `path` (a directory or hub id), or None when it cannot be read."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError):
        return None


def model_context(config: Any, trust_remote_code: bool = False) -> int | None:
    """The positions a model config (or the model directory or hub id holding it) says the model was built for,
    or None when it says nothing.

    >>> from types import SimpleNamespace
    >>> model_context(SimpleNamespace(max_position_embeddings=2048)), model_context(SimpleNamespace())
    (2048, None)
    """
    if isinstance(config, str):  # vLLM loads the weights itself: the config alone says the positions
        config = load_model_config(config, trust_remote_code)
    for source in (config, getattr(config, "text_config", None)):  # multimodal configs nest the text model's
        for key in _CONTEXT_KEYS:
            value = getattr(source, key, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


# Prompts counted at most: tokenizing GSM8K's 7,473 takes 2-4 s on a 2-core CPU; past this many, every k-th.
AT_MOST = 20_000


def counted(what: str, total: int) -> str:
    """How `length_warnings` names the prompts `prompt_lengths` counted out of `total`.

    >>> counted("prompts", 100), counted("prompts", 50_000)
    ('prompts', 'prompts (every 3rd of 50000 counted)')
    """
    step = -(-total // AT_MOST)
    if step <= 1:
        return what
    nth = {2: "2nd", 3: "3rd"}.get(step, f"{step}th")
    return f"{what} (every {nth} of {total} counted)"


def prompt_lengths(
    tokenizer: Any,
    rows: list[dict[str, Any]],
    template: str,
    system_prompt: str | None = None,
    few_shot: list[dict[str, str]] | None = None,
) -> list[int]:
    """Tokens of each row's prompt as generation sees it (every k-th row past `AT_MOST`, as `counted` says): the
    template's chat rendered, tokenized as `rollout.tokenize_prompts` tokenizes it."""
    from rlvr.data.prompts import build_messages, render_prompt

    rows = rows[:: max(1, -(-len(rows) // AT_MOST))]
    texts = [
        render_prompt(tokenizer, build_messages(r["question"], template, system_prompt, few_shot))
        for r in rows
    ]
    if not texts:
        return []
    add_special = not getattr(tokenizer, "chat_template", None)
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=add_special)["input_ids"]]


def length_warnings(
    lengths: list[int],
    max_prompt_length: int,
    max_new_tokens: int,
    context: int | None,
    names: LimitNames,
    what: str = "prompts",
) -> list[str]:
    """One line per limit that some prompts break, with their count; [] when every prompt fits.

    >>> length_warnings([10, 20], 512, 64, 2048, TRAIN_LIMITS)
    []
    >>> for line in length_warnings([10, 600, 700], 512, 128, 600, EVAL_LIMITS):
    ...     print(line)  # doctest: +NORMALIZE_WHITESPACE
    2 of 3 prompts are longer than --max-prompt-length (512 tokens; the longest has 700) and are cut from the left,
    losing their start: raise --max-prompt-length
    2 of 3 prompts (kept to 512 tokens) leave less than --max-new-tokens (128) of the model's context of 600
    positions: a completion that long runs past the positions the model was built for; lower --max-new-tokens or
    --max-prompt-length
    """
    warnings = []
    total = len(lengths)
    cut = [n for n in lengths if n > max_prompt_length]
    if cut:
        warnings.append(
            f"{len(cut)} of {total} {what} are longer than {names.max_prompt_length} ({max_prompt_length} tokens; "
            f"the longest has {max(cut)}) and are cut from the left, losing their start: raise "
            f"{names.max_prompt_length}"
        )
    if context is not None:
        kept = [min(n, max_prompt_length) for n in lengths]
        past = [n for n in kept if n + max_new_tokens > context]
        if past:
            within = "kept to " + str(max_prompt_length) + " tokens" if cut else "as they are"
            warnings.append(
                f"{len(past)} of {total} {what} ({within}) leave less than {names.max_new_tokens} "
                f"({max_new_tokens}) of the model's context of {context} positions: a completion that long runs "
                f"past the positions the model was built for; lower {names.max_new_tokens} or "
                f"{names.max_prompt_length}"
            )
    return warnings
