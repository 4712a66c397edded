"""Tools: typed Python functions offered to the model, Hermes-style calls parsed from its replies, and the
environments that run them (`tools=[fn, ...]` and TRL's `environment_factory=Cls`).

A tool is a function with type hints and a Google-style docstring; its OpenAI function schema comes from
transformers' `get_json_schema`, as in TRL. The model calls tools by writing, anywhere in its reply,

    <tool_call>{"name": "calculate", "arguments": {"expression": "2 + 3"}}</tool_call>

(Qwen2.5/3's format, and most tool-trained templates'), several per reply if it likes. Each call's result goes
back as a `{"role": "tool", "name": ..., "content": ...}` message, in call order. Whatever goes wrong with a
call (malformed JSON, an unknown tool, arguments that do not fit the schema, an exception, a timeout) becomes
that call's reply, `Error: ...`, so the model reads it and the episode goes on; `Step.info` counts them.

Timeouts: a tool runs in a daemon thread that the step waits for `tool_timeout` seconds. Python cannot kill a
thread, so a tool that overruns is abandoned and interrupted once (an exception raised in its thread, as
`rlvr.rewards.deadline` does off the main thread): one busy in Python stops at once; one waiting in C code or
a system call (a socket, `time.sleep`) runs on until the wait ends, its result discarded (and, for an
environment's method, it may have changed the environment's state half-way). A process would be killable,
but it would run the tool on a copy of the environment's state, and a bound method's changes would be lost;
tools are the user's own trusted code, and model-written code goes to the sandbox (`python` environment)
instead. More than `MAX_ABANDONED` overrunning calls alive at once is an error, so a tool that hangs cannot
quietly eat the machine.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rlvr.environments.base import Environment, Message, Step
from rlvr.utils import raise_in_thread

# overrunning calls still running (see the module docstring); past this many, `run_calls` raises
MAX_ABANDONED = 32
_abandoned: list[threading.Thread] = []


class _Overrun(BaseException):
    """Raised in a tool's thread past its timeout: a BaseException, so a tool's `except Exception` lets it by."""


class ToolSpecError(ValueError):
    """A tool or an environment class that cannot be offered to the model; the message says what to fix."""


def tool_schema(tool: Callable[..., Any] | dict[str, Any]) -> dict[str, Any]:
    """The OpenAI function schema of `tool` (a schema given as a dict is returned as is): transformers'
    `get_json_schema`, which TRL uses, so the model sees the same tool description under both.

    >>> def add(a: int, b: int) -> int:
    ...     '''Add two integers.
    ...
    ...     Args:
    ...         a: The first.
    ...         b: The second.
    ...     '''
    ...     return a + b
    >>> tool_schema(add)["function"]["parameters"]["required"]
    ['a', 'b']
    """
    if isinstance(tool, dict):
        return tool
    from transformers.utils import get_json_schema

    try:
        return get_json_schema(tool)
    except Exception as exc:  # transformers' DocstringParsingException / TypeHintParsingException
        name = getattr(tool, "__name__", repr(tool))
        raise ToolSpecError(
            f"tool {name!r} cannot be described to the model: {exc}. A tool needs a type hint on every "
            "argument and a Google-style docstring with an `Args:` section naming each one."
        ) from exc


@dataclass
class ToolCall:
    """One `<tool_call>` block of a reply: the call, or why it cannot be run."""

    name: str | None
    arguments: dict[str, Any] | None
    error: str | None = None  # None when the block is a well-formed call (the tool may still not exist)


TOOL_CALL_FORMAT = '<tool_call>{"name": <tool name>, "arguments": {<argument>: <value>, ...}}</tool_call>'
_OPEN, _CLOSE = "<tool_call>", "</tool_call>"


def parse_tool_calls(text: str) -> tuple[str, list[ToolCall]]:
    """The reply's text outside tool calls (stripped) and its `<tool_call>` blocks, in order.

    `arguments` may be missing or null (no arguments, as TRL normalises it), a JSON object, or a string holding
    one (the OpenAI API's encoding, which some models copy); Llama 3's `parameters` is read as `arguments`. A
    block whose JSON does not parse, is not an object with a string `name`, or is never closed is a `ToolCall`
    with an `error`.

    >>> parse_tool_calls('Let me add. <tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>')
    ('Let me add.', [ToolCall(name='add', arguments={'a': 2, 'b': 3}, error=None)])
    >>> parse_tool_calls('<tool_call>{"name": "add", "arguments": {"a": 2</tool_call>')[1][0].error.split(";")[0]
    "malformed tool call: expecting ',' delimiter at character 36 of the JSON"
    """
    calls: list[ToolCall] = []
    outside: list[str] = []
    position = 0
    while (start := text.find(_OPEN, position)) >= 0:
        outside.append(text[position:start])
        end = text.find(_CLOSE, start + len(_OPEN))
        if end < 0:
            calls.append(ToolCall(None, None, f"unclosed {_OPEN}: end each call with {_CLOSE}"))
            position = len(text)
            break
        calls.append(_parse_block(text[start + len(_OPEN) : end].strip()))
        position = end + len(_CLOSE)
    outside.append(text[position:])
    return "".join(outside).strip(), calls


def _parse_block(body: str) -> ToolCall:
    hint = f"write {TOOL_CALL_FORMAT}"
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        return ToolCall(
            None, None, f"malformed tool call: {exc.msg.lower()} at character {exc.pos} of the JSON; {hint}"
        )
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return ToolCall(
            None, None, f'a tool call is a JSON object with a string "name"; write {TOOL_CALL_FORMAT}'
        )
    name = data["name"]
    arguments = data.get("arguments", data.get("parameters"))
    if arguments is None:
        arguments = {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            pass  # stays a string: rejected below
    if not isinstance(arguments, dict):
        return ToolCall(name, None, f'"arguments" must be a JSON object; write {TOOL_CALL_FORMAT}')
    return ToolCall(name, arguments)


_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def check_arguments(arguments: dict[str, Any], schema: dict[str, Any]) -> str | None:
    """Why `arguments` do not fit the function schema `schema` (required arguments present, no unknown ones,
    each value of its declared type, nested arrays and objects included), or None when they do. Values are
    not converted: a string "7" for an integer argument is an error the model reads.

    >>> schema = {"function": {"name": "add", "parameters": {"type": "object", "properties":
    ...     {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}}
    >>> check_arguments({"a": 2}, schema), check_arguments({"a": 2, "b": "3"}, schema)
    ('add: missing required argument b', 'add: argument b must be an integer, got "3"')
    """
    function = schema.get("function", schema)
    name = function.get("name", "tool")
    parameters = function.get("parameters") or {}
    properties = parameters.get("properties") or {}
    unknown = [key for key in arguments if key not in properties]
    if unknown:
        takes = ", ".join(properties) if properties else "no arguments"
        return f"{name}: unknown argument {unknown[0]}; it takes {takes}"
    missing = [key for key in parameters.get("required", []) if key not in arguments]
    if missing:
        return f"{name}: missing required argument {', '.join(missing)}"
    for key, value in arguments.items():
        problem = _check_value(value, properties[key], f"argument {key}")
        if problem:
            return f"{name}: {problem}"
    return None


def _check_value(value: Any, schema: dict[str, Any], where: str) -> str | None:
    if value is None and schema.get("nullable"):
        return None
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} must be one of {', '.join(json.dumps(v) for v in schema['enum'])}, got {json.dumps(value)}"
    kinds = schema.get("type")
    if kinds is None or kinds == "any":
        return None
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    if not any(_JSON_TYPES.get(kind, lambda v: True)(value) for kind in kinds):
        wanted = " or ".join(("an " if kind[0] in "aeiou" else "a ") + kind for kind in kinds)
        return f"{where} must be {wanted}, got {json.dumps(value)[:60]}"
    if isinstance(value, list):
        if "prefixItems" in schema:  # a tuple: fixed length, a type per position
            items = schema["prefixItems"]
            if len(value) != len(items):
                return f"{where} must have {len(items)} items, got {len(value)}"
            pairs = list(zip(value, items))
        else:
            pairs = [(item, schema["items"]) for item in value] if "items" in schema else []
        for index, (item, item_schema) in enumerate(pairs):
            problem = _check_value(item, item_schema, f"{where}[{index}]")
            if problem:
                return problem
    if isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, item in value.items():
            problem = _check_value(item, schema["additionalProperties"], f"{where}[{json.dumps(key)}]")
            if problem:
                return problem
    return None


@dataclass
class Outcome:
    """What a call did: its value, the exception it raised, or that it overran its timeout."""

    value: Any = None
    error: BaseException | None = None
    timed_out: bool = False


def run_calls(calls: Sequence[Callable[[], Any]], timeout: float | None, workers: int = 1) -> list[Outcome]:
    """Run each of `calls` (no arguments), at most `workers` at a time, each given `timeout` seconds from its
    start (None or <= 0: no limit, run here). A coroutine function's coroutine is run to completion in its
    thread. An overrun call is abandoned and interrupted once (see the module docstring).

    >>> [o.value for o in run_calls([lambda: 1, lambda: 2], timeout=1.0)]
    [1, 2]
    """
    if not timeout or timeout <= 0:
        return [_outcome(call) for call in calls]
    _check_abandoned()
    runs = [_TimedCall(call) for call in calls]
    for first in range(0, len(calls), max(1, workers)):
        chunk = []
        for run in runs[first : first + max(1, workers)]:
            thread = threading.Thread(target=run.run, daemon=True, name="rlvr-tool-call")
            thread.start()
            chunk.append((run, thread, time.monotonic()))
        for run, thread, started in chunk:
            thread.join(max(0.0, started + timeout - time.monotonic()))
            if thread.is_alive():
                run.overran(thread)
                _abandoned.append(thread)
    return [run.outcome for run in runs]


class _TimedCall:
    """One call in a thread of its own, and what that thread and the waiting step agree on under `lock`: the
    interruption is sent only while the thread is inside the `try` that takes it, and a call past its
    timeout keeps the outcome "timed out" whatever it returns later."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call
        self.lock = threading.Lock()  # a C lock: taking it runs no Python code an interruption could cut
        self.outcome = Outcome(timed_out=True)  # until the call returns in time
        self.running = False  # the thread is inside the try below
        self.finished = False  # the thread is past it: nothing may be sent any more
        self.late = False  # past the timeout

    def run(self) -> None:  # the thread's target
        try:
            self.running = True
            outcome = _outcome(self.call)
            with self.lock:
                if not self.late:
                    self.outcome = outcome
        except _Overrun:
            pass
        finally:
            while True:  # the one interruption may still arrive until it is withdrawn
                try:
                    with self.lock:
                        self.finished = True
                    raise_in_thread(threading.get_ident(), None)
                    break
                except _Overrun:
                    pass

    def overran(self, thread: threading.Thread) -> None:
        """The step's side, past the timeout: interrupt the call, if its thread is still in it."""
        with self.lock:
            self.late = True
            if self.running and not self.finished and thread.ident is not None:
                raise_in_thread(thread.ident, _Overrun)


def _outcome(call: Callable[[], Any]) -> Outcome:
    try:
        value = call()
        if inspect.iscoroutine(value):
            value = asyncio.run(value)
        return Outcome(value=value)
    except Exception as exc:
        return Outcome(error=exc)


def _check_abandoned() -> None:
    _abandoned[:] = [thread for thread in _abandoned if thread.is_alive()]
    if len(_abandoned) > MAX_ABANDONED:
        raise RuntimeError(
            f"{len(_abandoned)} tool calls or environment steps are still running after their timeout (threads "
            "cannot be stopped): a tool hangs or ignores its time limit. Make it check a deadline, or run its work "
            "in a subprocess it can kill, or raise environment.tool_timeout / environment.step_timeout."
        )


FEW_SHOT_ROLES = ("user", "assistant", "tool")


def check_few_shot(messages: Sequence[Message]) -> list[Message]:
    """`messages` as a list of chat messages, checked: each a mapping with a role among `FEW_SHOT_ROLES` and
    string `content`, the first a user message, the last an assistant one (so the row's question follows an
    answered example). Raises ToolSpecError saying what is wrong."""
    if isinstance(messages, (str, dict)) or not isinstance(messages, Sequence):
        raise ToolSpecError(
            f"few_shot must be a list of chat messages ({{role, content}}), got {type(messages).__name__}"
        )
    out = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in FEW_SHOT_ROLES:
            raise ToolSpecError(
                f"few_shot[{index}] must be a message with role {', '.join(FEW_SHOT_ROLES)}, got {message!r}"
            )
        if not isinstance(message.get("content"), str):
            raise ToolSpecError(f"few_shot[{index}] ({message['role']}) needs string content")
        out.append(dict(message))
    if out and (out[0]["role"] != "user" or out[-1]["role"] != "assistant"):
        raise ToolSpecError(
            "few_shot must start with a user message and end with an assistant reply (a whole worked example), "
            f"got {out[0]['role']} ... {out[-1]['role']}"
        )
    return out


def with_few_shot(prompt: Sequence[Message], few_shot: Sequence[Message]) -> list[Message]:
    """`prompt` with the example turns `few_shot` after its leading system messages, before the rest (the
    data's own few-shot pairs, then the question), as a template's few-shot examples sit.

    >>> shot = [{"role": "user", "content": "6 * 7?"}, {"role": "assistant", "content": "42"}]
    >>> [m["content"] for m in with_few_shot([{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}], shot)]
    ['S', '6 * 7?', '42', 'Q']
    """
    start = next((i for i, m in enumerate(prompt) if m.get("role") != "system"), len(prompt))
    return [*prompt[:start], *(dict(m) for m in few_shot), *prompt[start:]]


def public_methods(instance: Any) -> list[Callable[..., Any]]:
    """TRL's tools of an `environment_factory` instance: its class's public functions, bound, other than
    `reset` and `get_reward` (listed on the class, so properties are not evaluated)."""
    return [
        getattr(instance, name)
        for name, _ in inspect.getmembers(type(instance), predicate=inspect.isfunction)
        if name not in ("reset", "get_reward") and not name.startswith("_")
    ]


class ToolEnvironment(Environment):
    """`tools=[fn, ...]`: the model calls the tools as often as it likes; the episode ends at the first reply
    without a tool call. Step rewards: none (the reward functions score the episode).

    `max_tool_calls` bounds the calls of one episode: a reply whose calls would pass it has the calls within
    the bound run, and the episode ends there (`info["truncation"] = "max_tool_calls"`). `few_shot` is a
    worked conversation shown before each row's question (`with_few_shot`): a model never trained on tool
    calls learns the format from it in context, as verifiers' `few_shot` does.
    """

    def __init__(
        self,
        tools: Sequence[Callable[..., Any]],
        max_tool_calls: int | None = None,
        tool_timeout: float | None = 10.0,
        few_shot: Sequence[Message] = (),
    ) -> None:
        self.few_shot = check_few_shot(few_shot)
        self.functions: dict[str, Callable[..., Any]] = {}
        for fn in tools:
            name = getattr(fn, "__name__", None)
            if not callable(fn) or not name:
                raise ToolSpecError(f"a tool must be a named function, got {fn!r}")
            if name in self.functions:
                raise ToolSpecError(f"two tools are named {name!r}; tool names must be unique")
            self.functions[name] = fn
        self.tools = [tool_schema(fn) for fn in self.functions.values()]
        self.schemas = {schema["function"]["name"]: schema for schema in self.tools}
        self.max_tool_calls = max_tool_calls
        self.tool_timeout = tool_timeout
        self.num_calls = 0

    def reset(self, **row: Any) -> list[Message] | None:
        self.num_calls = 0
        if self.few_shot and isinstance(row.get("prompt"), list):
            return with_few_shot(row["prompt"], self.few_shot)
        return None

    def step(self, message: Message) -> Step:
        _, calls = parse_tool_calls(str(message.get("content") or ""))
        if not calls:
            return Step(done=True, info={"tool_calls": 0, "tool_errors": 0, "tool_timeouts": 0, "calls": []})
        room = len(calls) if self.max_tool_calls is None else max(0, self.max_tool_calls - self.num_calls)
        over_limit = len(calls) > room
        calls = calls[:room]
        self.num_calls += len(calls)
        replies, records = self.run_tool_calls(calls)
        info = {
            "tool_calls": len(calls),
            "tool_errors": sum(r["error"] is not None for r in records),
            "tool_timeouts": sum(bool(r.get("timed_out")) for r in records),
            "calls": records,
        }
        if over_limit:
            info["truncation"] = "max_tool_calls"
            return Step(replies, done=True, info=info)
        return Step(replies, done=False, info=info)

    def run_tool_calls(self, calls: list[ToolCall]) -> tuple[list[Message], list[dict[str, Any]]]:
        """The tool replies to `calls`, in order, and a record of each (name, arguments, error)."""
        runnable: list[Callable[[], Any]] = []
        errors: list[str | None] = []
        for call in calls:
            error = call.error
            if error is None and call.name not in self.functions:
                available = ", ".join(self.functions) or "none"
                error = f"unknown tool {call.name!r}; available tools: {available}"
            if error is None:
                error = check_arguments(call.arguments or {}, self.schemas[call.name])
            errors.append(error)
            if error is None:
                fn, arguments = self.functions[call.name], call.arguments or {}
                runnable.append(lambda fn=fn, arguments=arguments: fn(**arguments))
        outcomes = iter(run_calls(runnable, self.tool_timeout))
        replies, records = [], []
        for call, error in zip(calls, errors):
            timed_out = False
            if error is None:
                outcome = next(outcomes)
                if outcome.timed_out:
                    timed_out = True
                    error = f"{call.name} did not finish within {self.tool_timeout:g} s"
                elif outcome.error is not None:
                    error = f"{type(outcome.error).__name__}: {outcome.error}"
                else:
                    content = str(outcome.value)  # TRL's str(result)
            if error is not None:
                content = f"Error: {error}"
            replies.append({"role": "tool", "name": call.name or "unknown", "content": content})
            records.append(
                {"name": call.name, "arguments": call.arguments, "error": error, "timed_out": timed_out}
            )
        return replies, records


class FactoryEnvironment(ToolEnvironment):
    """TRL's `environment_factory=Cls`: one `Cls()` per environment, its public methods the tools (besides any
    standalone `tools`). `reset(**row)` returns None or a string, which is appended to the last message of the
    prompt, as TRL does (or, rlvr's contract, a list of messages to start from); an optional `get_reward()` is
    the episode's reward, read once when it ends.
    """

    def __init__(
        self,
        factory: Callable[[], Any],
        tools: Sequence[Callable[..., Any]] = (),
        max_tool_calls: int | None = None,
        tool_timeout: float | None = 10.0,
    ) -> None:
        self.instance = factory()
        if not callable(getattr(self.instance, "reset", None)):
            raise ToolSpecError(
                f"{type(self.instance).__name__} cannot be an environment: an environment_factory's instances must "
                "define reset(**row), returning None or a string appended to the prompt"
            )
        super().__init__([*tools, *public_methods(self.instance)], max_tool_calls, tool_timeout)

    def reset(self, **row: Any) -> list[Message] | None:
        super().reset(**row)
        observation = self.instance.reset(**row)
        if inspect.iscoroutine(observation):
            observation = asyncio.run(observation)
        if observation is None:
            return None
        if isinstance(observation, list) and all(isinstance(m, dict) and "role" in m for m in observation):
            return observation
        prompt = row.get("prompt")
        if isinstance(observation, str) and isinstance(prompt, list) and prompt:
            last = prompt[-1]
            return [*prompt[:-1], {**last, "content": str(last.get("content") or "") + observation}]
        raise ToolSpecError(
            f"{type(self.instance).__name__}.reset returned {type(observation).__name__}; return None, a string "
            "(appended to the prompt's last message) or a list of chat messages"
        )

    def get_reward(self) -> float | None:
        get_reward = getattr(self.instance, "get_reward", None)
        if get_reward is None:
            return None
        reward = get_reward()
        return asyncio.run(reward) if inspect.iscoroutine(reward) else reward
