"""Chat messages to tokens for episodes: the first prompt, and what an environment's messages append.

The rules (issue #21; TRL's and verl's, with the checks they lack):
- Sampled tokens are never re-tokenized: a turn's prompt is the previous turn's prompt, its sampled tokens,
  and the tokens the chat template puts between that reply and the next one.
- Those tokens are the template's difference, as TRL's `_get_tool_suffix_ids` computes it: render the
  conversation with the new messages and the generation prompt, drop the render of the conversation (cut at
  its last end-of-turn token, so the template's "\\n" after it belongs to the new part).
- Checked against a full render: where the full render's text does not start with the text of the tokens
  so far (a template that rewrites earlier turns, e.g. Qwen3's, which drops earlier reasoning), the episode
  goes on in a new training row whose prompt is the full render, never a silently different context.
  Compared as text, not ids: a sampled reply that the tokenizer would split differently (a non-canonical
  tokenization) is still the same conversation; those turns are counted (`retokenized`), not split.
- Tools are offered through the template's own `tools=` where it renders them; elsewhere (SmolLM2) as a
  Hermes-style description in the system message, in the words Qwen2.5's template uses. Tool replies are
  role `tool` where the template renders that role; elsewhere a user message of `<tool_response>` blocks,
  again Qwen2.5's rendering.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rlvr.environments.base import Message

# Qwen2.5's own words around the tool schemas (its chat template, `tools=`), so a model sees one description
TOOLS_HEADER = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_FOOTER = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}'
    "\n</tool_call>"
)
_PROBE_NAME = "rlvr_probe_tool_5f3a"
_PROBE_CONTENT = "rlvr_probe_result_9c1e"
_PROBE_SCHEMA = {
    "type": "function",
    "function": {
        "name": _PROBE_NAME,
        "description": "Probe.",
        "parameters": {"type": "object", "properties": {}, "required": []},
    },
}


class ChatFormatError(ValueError):
    """A chat template that cannot play an episode as configured; the message says what to change."""


def describe_tools(tools: Sequence[dict[str, Any]]) -> str:
    """The plain-text description of `tools` for a template without `tools=` support: Qwen2.5's text.

    >>> describe_tools([{"type": "function", "function": {"name": "f"}}]).splitlines()[6]
    '{"type": "function", "function": {"name": "f"}}'
    """
    return (
        TOOLS_HEADER + "".join("\n" + json.dumps(tool, ensure_ascii=False) for tool in tools) + TOOLS_FOOTER
    )


def tool_replies_as_user(messages: Sequence[Message]) -> list[Message]:
    """Each run of tool messages as one user message of `<tool_response>` blocks, as Qwen2.5 renders them.

    >>> tool_replies_as_user([{"role": "tool", "name": "f", "content": "1"}, {"role": "tool", "name": "f", "content": "2"}])
    [{'role': 'user', 'content': '<tool_response>\\n1\\n</tool_response>\\n<tool_response>\\n2\\n</tool_response>'}]
    """
    out: list[Message] = []
    for message in messages:
        if message.get("role") != "tool":
            out.append(message)
            continue
        block = f"<tool_response>\n{message.get('content', '')}\n</tool_response>"
        if out and out[-1].get("role") == "user" and out[-1].get("_tool_replies"):
            out[-1] = {**out[-1], "content": out[-1]["content"] + "\n" + block}
        else:
            out.append({"role": "user", "content": block, "_tool_replies": True})
    return [{k: v for k, v in m.items() if k != "_tool_replies"} for m in out]


@dataclass
class Continuation:
    """How an episode goes on after an environment's messages."""

    ids: list[int]  # new_row False: the tokens to append; True: the new row's whole prompt
    new_row: bool  # the template is not prefix-preserving here: a new training row starts
    retokenized: bool = False  # appended, though a full render tokenizes the same text differently


class ChatFormat:
    """One tokenizer's chat template, probed once: how it offers tools and renders tool replies.

    `tool_prompt` and `tool_role` are `EnvironmentConfig`'s ("auto" probes the template). `eos_ids` are the
    end-of-turn ids the engine stops at; `chat_template_kwargs` go to every render.
    """

    def __init__(
        self,
        tokenizer: Any,
        eos_ids: Sequence[int],
        tool_prompt: str = "auto",
        tool_role: str = "auto",
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.eos_ids = set(int(i) for i in eos_ids)
        self.kwargs = dict(chat_template_kwargs or {})
        self.has_template = bool(getattr(tokenizer, "chat_template", None))
        renders_tools = self.has_template and self._probe_tools()
        if tool_prompt == "template" and not renders_tools:
            raise ChatFormatError(
                "environment.tool_prompt=template, but this chat template does not render tools=; "
                "set environment.tool_prompt=system (or auto) to describe the tools in the system message"
            )
        self.template_tools = renders_tools if tool_prompt == "auto" else tool_prompt == "template"
        renders_tool_role = self.has_template and self._probe_tool_role()
        if tool_role == "tool" and not renders_tool_role:
            raise ChatFormatError(
                "environment.tool_role=tool, but this chat template does not render a tool message; "
                "set environment.tool_role=user (or auto) to send tool replies as user messages"
            )
        self.tool_role = (
            "tool" if (renders_tool_role if tool_role == "auto" else tool_role == "tool") else "user"
        )

    def _probe_tools(self) -> bool:
        """Whether the template renders `tools=`: a probe tool's name appears in the render."""
        try:
            text = self._apply([{"role": "user", "content": "hi"}], [_PROBE_SCHEMA], True)
        except Exception:  # jinja errors of all kinds: a template that cannot, does not
            return False
        return _PROBE_NAME in text

    def _probe_tool_role(self) -> bool:
        """Whether the template renders a tool message after a plain assistant reply (how episodes render)."""
        messages = [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "ok"},
            {"role": "tool", "name": _PROBE_NAME, "content": _PROBE_CONTENT},
        ]
        try:
            return _PROBE_CONTENT in self._apply(messages, None, True)
        except Exception:
            return False

    def _apply(self, messages: list[Message], tools: list[dict[str, Any]] | None, generation: bool) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=generation, **self.kwargs
        )

    # ------------------------------------------------------------------------------ messages to text
    def prompt_messages(self, messages: list[Message], tools: Sequence[dict[str, Any]]) -> list[Message]:
        """The episode's first messages, with the tools described in the system message where the template
        does not render `tools=` (a system message is added when there is none)."""
        if not tools or self.template_tools:
            return list(messages)
        description = describe_tools(tools)
        if messages and messages[0].get("role") == "system":
            return [
                {**messages[0], "content": f"{messages[0].get('content') or ''}\n\n{description}"},
                *messages[1:],
            ]
        return [{"role": "system", "content": description}, *messages]

    def render(self, messages: list[Message], tools: Sequence[dict[str, Any]], generation: bool) -> str:
        """The template's text for `messages` (tool replies as this template takes them)."""
        if not self.has_template:
            raise ChatFormatError(
                "a multi-turn episode needs a chat template, and this tokenizer has none: use an instruct "
                "model's tokenizer (or set tokenizer.chat_template), or a single-turn environment"
            )
        if self.tool_role == "user":
            messages = tool_replies_as_user(messages)
        return self._apply(list(messages), list(tools) if tools and self.template_tools else None, generation)

    def encode(self, text: str) -> list[int]:
        """Token ids of rendered text: as `tokenize_prompts` does it (a template writes its own specials)."""
        return self.tokenizer(text, add_special_tokens=not self.has_template)["input_ids"]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of `ids`: with special tokens, exactly as the template would hold it; without, as
        `decode_completions` gives a reply's text to reward functions (the tokenizer's own clean-up)."""
        if skip_special_tokens:
            return self.tokenizer.decode(list(ids), skip_special_tokens=True)
        return self.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def prompt_ids(self, messages: list[Message], tools: Sequence[dict[str, Any]]) -> list[int]:
        """The first prompt's ids: what `render_prompt` and `tokenize_prompts` give for a single turn."""
        if not self.has_template:
            from rlvr.data.prompts import render_prompt

            return self.encode(render_prompt(self.tokenizer, messages))
        return self.encode(self.render(messages, tools, generation=True))

    def assistant_message(self, ids: Sequence[int]) -> Message:
        """The reply sampled as `ids`, as a message whose render gives the same text: special tokens kept,
        the final end-of-turn token left to the template."""
        ids = list(ids)
        if ids and ids[-1] in self.eos_ids:
            ids = ids[:-1]
        return {"role": "assistant", "content": self.decode(ids)}

    def truncate(self, message: Message, max_tokens: int) -> tuple[Message, bool]:
        """`message` with its text cut to its first `max_tokens` tokens and a marker line saying how many more
        there were (0: no limit); whether it was cut. Non-text content is left as is."""
        content = message.get("content")
        if not max_tokens or not isinstance(content, str):
            return message, False
        ids = self.tokenizer(content, add_special_tokens=False)["input_ids"]
        if len(ids) <= max_tokens:
            return message, False
        text = self.decode(ids[:max_tokens], skip_special_tokens=True)
        return {**message, "content": f"{text}\n[... {len(ids) - max_tokens} more tokens cut]"}, True

    # ------------------------------------------------------------------------------ the token rules
    def template_suffix(
        self, conversation: list[Message], new_messages: list[Message], tools: Sequence[dict[str, Any]]
    ) -> list[int] | None:
        """The tokens the template adds for `new_messages` and the next generation prompt after
        `conversation` (which ends with an assistant reply): render(conversation + new_messages, generation
        prompt) minus render(conversation) cut after its last end-of-turn token. None when the longer render
        does not start with the shorter (the template rewrites `conversation` once more follows)."""
        return self._difference(conversation, new_messages, tools)[0]

    def _difference(
        self, conversation: list[Message], new_messages: list[Message], tools: Sequence[dict[str, Any]]
    ) -> tuple[list[int] | None, list[int]]:
        prefix = self.encode(self.render(conversation, tools, generation=False))
        ends = [i for i, token in enumerate(prefix) if token in self.eos_ids]
        if ends:  # Qwen writes "<|im_end|>\n": the "\n" starts the new part, the sampled turn ends at EOS
            prefix = prefix[: ends[-1] + 1]
        full = self.encode(self.render([*conversation, *new_messages], tools, generation=True))
        if full[: len(prefix)] != prefix:
            return None, full
        return full[len(prefix) :], full

    def continuation(
        self,
        context_ids: list[int],
        conversation: list[Message],
        new_messages: list[Message],
        tools: Sequence[dict[str, Any]],
    ) -> Continuation:
        """How the episode whose current row holds `context_ids` (prompt and completion so far, ending with a
        sampled reply) goes on after `new_messages`: the template's difference appended when the full render
        agrees with the tokens so far, else a new row prompted with the full render."""
        suffix, full = self._difference(conversation, new_messages, tools)
        if suffix is not None and self.decode(context_ids + suffix) == self.decode(full):
            return Continuation(suffix, new_row=False, retokenized=context_ids + suffix != full)
        return Continuation(full, new_row=True)
