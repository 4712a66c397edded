"""Test helpers for episodes: a scripted engine and a tiny byte-level BPE tokenizer with chat templates."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlvr.rollout.engine import TokenEngine

# ChatML as SmolLM2-Instruct writes it, without its default system line: no `tools=`, any role rendered.
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Deliberately not prefix-preserving: the header counts the messages, so every new message rewrites the start.
COUNTING = "<|im_start|>system\n{{ messages | length }} messages<|im_end|>\n" + CHATML
# Llama 3-style: every message's content is trimmed, so a reply that ends in whitespace renders differently
# from how it was sampled, in the conversation's render and in the longer one alike.
TRIMMING = CHATML.replace("{{ message['content'] }}", "{{ message['content'] | trim }}")
# Gemma-style: roles must alternate user/assistant, so a tool message cannot be rendered.
ALTERNATING = (
    "{% for message in messages %}{% if message['role'] not in ['user', 'assistant', 'system'] %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = [
    '<tool_call>\n{"name": "calculate", "arguments": {"expression": "6 * 7"}}\n</tool_call>',
    "<tool_response>\n42\n</tool_response> What is 6 times 7? The answer is \\boxed{42}.",
    "You are a helpful assistant. # Tools You may call one or more functions to assist with the user query.",
    "<think>multiply them</think> That answer is not correct. Check your work and give your final answer again.",
    "system user assistant tool messages Error: unknown tool",
] * 20


def build_tokenizer(chat_template: str | None = CHATML, vocab_size: int = 420) -> Any:
    """A byte-level BPE tokenizer (exact round trip, as Qwen's and SmolLM2's) with ChatML's special tokens;
    EOS is <|im_end|>, the end of an assistant turn."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = chat_template
    return tokenizer


def trl_template(name: str) -> str | None:
    """A chat template TRL ships (trl/chat_templates/<name>.jinja), or None without TRL."""
    try:
        import trl
    except ImportError:
        return None
    path = Path(trl.__file__).parent / "chat_templates" / f"{name}.jinja"
    return path.read_text() if path.is_file() else None


def logp_at(position: int) -> float:
    """The scripted log-prob of the token sampled at `position` of the whole sequence (prompt included):
    a test can then tell which turn's prompt a token was sampled after."""
    return -(position + 1) / 1000.0


class ScriptedEngine(TokenEngine):
    """An engine that answers each prompt with `reply(prompt_text, sample_index)`: text (tokenized, then EOS
    appended) or a list of token ids (emitted as they are). Log-probs follow `logp_at`. Every call is recorded,
    and replies are cut at `config.max_completion_length` as an engine cuts them."""

    name = "scripted"

    def __init__(
        self, tokenizer: Any, reply: Callable[[str, int], str | list[int]], max_prompt_length: int = 512
    ):
        super().__init__(tokenizer, max_prompt_length, [tokenizer.eos_token_id])
        self.reply = reply
        self.calls: list[dict[str, Any]] = []

    def generate_ids(self, prompts, num_samples, config, seeds, greedy):
        self.calls.append(
            {"prompts": [list(p) for p in prompts], "num_samples": num_samples, "seeds": list(seeds)}
        )
        outputs = []
        for prompt in prompts:
            text = self.tokenizer.decode(prompt, skip_special_tokens=False)
            for j in range(num_samples):
                answer = self.reply(text, j)
                if isinstance(answer, str):
                    ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"] + [self.eos_ids[0]]
                else:
                    ids = list(answer)
                ids = ids[: config.max_completion_length]
                logps = None if greedy else [logp_at(len(prompt) + k) for k in range(len(ids))]
                outputs.append((ids, logps))
        return outputs

    def sync_weights(self) -> None:
        pass

    def close(self) -> None:
        pass
