"""Prompt templates: the four formats of the seed tutorials, reasoning-gym's and code's, each asking for the answer
its reward reads."""

from __future__ import annotations

from typing import Any

# Seed 002 (GSM8K online RL): the answer goes in \boxed{}.
BOXED_SYSTEM = (
    "You are a helpful assistant that solves problems step-by-step. "
    "Always include the final numeric answer inside \\boxed{}."
)
# Seed 003 (GRPO from scratch): reasoning and answer in XML tags.
XML_REASONING_SYSTEM = (
    "Respond in the following format:\n<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>"
)
# Seed 000 (align-anything Math-Zero-RL / DeepSeek-R1-Zero): think, then answer.
THINK_ANSWER_SYSTEM = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and "
    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think>"
    "<answer> answer here </answer>."
)
# Seed 001 (TRL notebook): answer inside <answer> tags, with one worked example turn because
# small models do not follow the instruction alone.
ANSWER_TAG_SYSTEM = "Your answer must be inside <answer></answer> tags."
ANSWER_TAG_FEW_SHOT = [
    {"question": "How many 0s are in the number 10203040?", "answer": "<answer>4</answer>"}
]
# reasoning-gym's own default prompt (`reasoning_gym.utils.SYSTEM_PROMPTS["default"]`, 0.1.25), copied so that
# building a prompt needs no optional package: its scorers read the answer from the last <answer> tags.
REASONING_GYM_SYSTEM = (
    "Given a problem, your task is to answer the question by thinking step-by-step in a clear and specific "
    "manner.\nOnce you have thought about the reasoning process, provide the answer in the following format:\n"
    "<answer>answer here</answer>\nDo not explain your reasoning inside the answer tags, provide only the final "
    "answer. When an example is provided, you should strictly follow the format of the output/answer in that "
    "example.\n"
)

# Code (docs/code.md): the `code_tests` reward runs the last ```python block of the reply.
CODE_SYSTEM = (
    "You are an expert Python programmer. Answer with the complete solution, imports included, in a single "
    "```python code block."
)

TEMPLATES: dict[str, tuple[str | None, list[dict[str, str]]]] = {
    "boxed": (BOXED_SYSTEM, []),
    "xml_reasoning": (XML_REASONING_SYSTEM, []),
    "think_answer": (THINK_ANSWER_SYSTEM, []),
    "answer_tag": (ANSWER_TAG_SYSTEM, ANSWER_TAG_FEW_SHOT),
    "reasoning_gym": (REASONING_GYM_SYSTEM, []),
    "code": (CODE_SYSTEM, []),
    "plain": (None, []),
}


def build_messages(
    question: str,
    template: str = "boxed",
    system_prompt: str | None = None,
    few_shot: list[dict[str, str]] | None = None,
) -> list[dict[str, str]]:
    """Chat messages for one question.

    >>> build_messages("What is 2 + 3?", "plain")
    [{'role': 'user', 'content': 'What is 2 + 3?'}]
    """
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; choose one of {', '.join(TEMPLATES)}")
    default_system, default_shots = TEMPLATES[template]
    system = system_prompt if system_prompt is not None else default_system
    shots = few_shot if few_shot else default_shots
    messages: list[dict[str, str]] = []
    if system:
        messages.append({"role": "system", "content": system})
    for shot in shots:
        messages.append({"role": "user", "content": shot["question"]})
        messages.append({"role": "assistant", "content": shot["answer"]})
    messages.append({"role": "user", "content": question})
    return messages


def render_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The prompt text with the assistant turn opened, through the tokenizer's chat template."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # Base models without a template: plain turns, the answer follows "Assistant:".
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(lines) + "\n\nAssistant:"
