"""Shared fixtures: a tiny Llama model and tokenizer built locally (no download)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

# `training.bf16: auto` picks bfloat16 on CPUs with AMX or AVX512-BF16 and float32 elsewhere: the suite runs float32
# on every machine kind (subprocesses inherit this), and tests of the choice itself set the variable themselves.
os.environ["RLVR_NATIVE_BF16"] = "0"

# ChatML, the template SmolLM2 and Qwen2.5 use; add_generation_prompt opens the assistant turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# A small corpus so the byte-level BPE learns merges for the words tests use.
CORPUS = [
    "What is 2 + 3? The answer is 5. \\boxed{5}",
    "<reasoning>3 apples and 4 apples make 7 apples.</reasoning><answer>7</answer>",
    "<think>add them</think><answer>12</answer>",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "You are a helpful assistant. Solve the problem step by step. Answer with a number.",
    "#### 72 The total is 18 dollars. 1,000 0.5 \\frac{1}{2}",
] * 20


def build_tiny_model(path: Path, vocab_size: int = 384, seed: int = 0, head_dim: int = 16) -> Path:
    """Write a tiny Llama (2 layers, width 64, 4 query and 2 key/value heads of `head_dim`) and a byte-level
    BPE tokenizer to `path`. vLLM's CPU attention needs head_dim 32 or more."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
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
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(path)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=head_dim,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A directory holding a tiny randomly initialised Llama and its tokenizer."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def gsm8k_rows() -> list[dict]:
    """Six GSM8K-style rows (question, answer with `#### N`)."""
    path = Path(__file__).parent / "fixtures" / "gsm8k_small.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(process: subprocess.Popen, url: str, timeout: float = 60.0) -> None:
    """Poll `url`/health until the server started as `process` answers 200; fail if it dies or times out."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, process.stdout.read() if process.stdout else "server exited"
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer /health in {timeout:.0f} s"
        time.sleep(0.2)
