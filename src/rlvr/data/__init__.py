"""Problem sets and prompt templates."""

from rlvr.data.datasets import KNOWN, DataError, load_problems, load_raw, parse_gold, parse_gsm8k_answer
from rlvr.data.prompts import TEMPLATES, build_messages, render_prompt

__all__ = [
    "KNOWN",
    "TEMPLATES",
    "DataError",
    "build_messages",
    "load_problems",
    "load_raw",
    "parse_gold",
    "parse_gsm8k_answer",
    "render_prompt",
]
