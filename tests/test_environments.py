"""Environments at the message level: tool-call parsing (against TRL's parser), argument checks, schemas (against
transformers'), the environment_factory wrapper, the loader, and the built-ins."""

from __future__ import annotations

import json
import os
import re
import textwrap
import threading
import time

import pytest

from rlvr.environments import (
    EnvironmentConfig,
    EnvironmentPool,
    EnvironmentSpecError,
    FactoryEnvironment,
    SingleTurnEnvironment,
    ToolEnvironment,
    ToolSpecError,
    check_arguments,
    get_environment_class,
    make_environment_factory,
    parse_tool_calls,
    tool_schema,
)
from rlvr.environments import tools as tools_module
from rlvr.environments.calculator import CalculatorEnvironment, calculate
from rlvr.environments.python import PythonEnvironment, RunResult
from rlvr.environments.retry import RetryEnvironment


def multiply(a: int, b: float = 2.0, unit: str | None = None) -> float:
    """Multiply two numbers.

    Args:
        a: The first factor.
        b: The second factor.
        unit: A unit to ignore.
    """
    return a * b


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


# ----------------------------------------------------------------------------- parsing
CALL = '<tool_call>\n{"name": "multiply", "arguments": {"a": 3, "b": 4}}\n</tool_call>'
PARSE_CASES = [
    # (reply, [(name, arguments, has error)], text outside the calls)
    ("No tools needed: 12.", [], "No tools needed: 12."),
    (CALL, [("multiply", {"a": 3, "b": 4}, False)], ""),
    ("Let me compute.\n" + CALL, [("multiply", {"a": 3, "b": 4}, False)], "Let me compute."),
    (CALL + CALL, [("multiply", {"a": 3, "b": 4}, False)] * 2, ""),
    (
        '<tool_call>{"name": "now"}</tool_call>',
        [("now", {}, False)],
        "",
    ),  # no arguments: {} as TRL normalises
    ('<tool_call>{"name": "now", "arguments": null}</tool_call>', [("now", {}, False)], ""),
    (
        '<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}</tool_call>',
        [("f", {"a": 1}, False)],
        "",
    ),  # OpenAI's string
    (
        '<tool_call>{"name": "f", "parameters": {"a": 1}}</tool_call>',
        [("f", {"a": 1}, False)],
        "",
    ),  # Llama 3's key
    ('<tool_call>{"name": "f", "arguments": {"a": 1</tool_call>', [(None, None, True)], ""),  # malformed JSON
    ('<tool_call>["f", 1]</tool_call>', [(None, None, True)], ""),  # not an object
    ('<tool_call>{"arguments": {}}</tool_call>', [(None, None, True)], ""),  # no name
    ('<tool_call>{"name": "f", "arguments": [1]}</tool_call>', [("f", None, True)], ""),
    ('So <tool_call>{"name": "f", "arguments": {}}', [(None, None, True)], "So"),  # never closed
]


@pytest.mark.parametrize("reply, expected, outside", PARSE_CASES)
def test_parse_tool_calls(reply, expected, outside):
    text, calls = parse_tool_calls(reply)
    assert [(c.name, c.arguments, c.error is not None) for c in calls] == expected
    assert text == outside


# Where TRL's parser (Qwen's response template) reads the same reply differently, by design: what TRL returns.
TRL_DIFFERS = {
    # it keeps OpenAI's string encoding, and the call then fails on fn(**'{"a": 1}'); we decode it
    '<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}</tool_call>': [("f", '{"a": 1}')],
    # it ignores Llama 3's key and calls with no arguments; we read it
    '<tool_call>{"name": "f", "parameters": {"a": 1}}</tool_call>': [("f", {})],
    # it passes the list on (the call then fails); we reject it with a message before calling
    '<tool_call>{"name": "f", "arguments": [1]}</tool_call>': [("f", [1])],
}


@pytest.mark.parametrize("reply, expected, outside", PARSE_CASES)
def test_parse_tool_calls_agrees_with_trls_parser(reply, expected, outside):
    chat_template_utils = pytest.importorskip("trl.chat_template_utils")
    from episode_helpers import build_tokenizer, trl_template

    tokenizer = chat_template_utils.add_response_schema(build_tokenizer(trl_template("qwen2_5")))
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "q"}], add_generation_prompt=True)[
        "input_ids"
    ]
    ids = tokenizer(reply + "<|im_end|>", add_special_tokens=False)["input_ids"]
    parsed = chat_template_utils.parse_response(tokenizer, ids, prefix=prompt)
    theirs = [(c["function"]["name"], c["function"]["arguments"]) for c in parsed.get("tool_calls", [])]
    ours = [(c.name, c.arguments) for c in parse_tool_calls(reply)[1] if c.error is None]
    assert theirs == TRL_DIFFERS.get(reply, ours)
    if theirs:  # where TRL finds no call it returns the whole reply as content; we keep only the text outside
        assert parsed["content"].strip() == outside


@pytest.mark.parametrize(
    "arguments, problem",
    [
        ({"a": 3}, None),
        ({"a": 3, "b": 1.5, "unit": None}, None),  # nullable
        ({"a": 3, "b": 2}, None),  # an integer is a number
        ({}, "missing required argument a"),
        ({"a": "3"}, 'argument a must be an integer, got "3"'),  # no conversion: the model learns the types
        ({"a": 3.0}, "argument a must be an integer, got 3.0"),
        ({"a": True}, "argument a must be an integer, got true"),  # a bool is not an integer
        ({"a": 3, "c": 1}, "unknown argument c; it takes a, b, unit"),
    ],
)
def test_check_arguments(arguments, problem):
    result = check_arguments(arguments, tool_schema(multiply))
    assert result == (None if problem is None else f"multiply: {problem}")


def test_check_arguments_nested():
    def f(xs: list[int], pair: tuple[int, str], table: dict[str, float]) -> None:
        """F.

        Args:
            xs: Integers.
            pair: A pair.
            table: A table.
        """

    schema = tool_schema(f)
    ok = {"xs": [1, 2], "pair": [1, "a"], "table": {"k": 1.5}}
    assert check_arguments(ok, schema) is None
    assert "xs[1] must be an integer" in check_arguments({**ok, "xs": [1, "2"]}, schema)
    assert "pair must have 2 items" in check_arguments({**ok, "pair": [1]}, schema)
    assert 'table["k"] must be a number' in check_arguments({**ok, "table": {"k": "x"}}, schema)


# ----------------------------------------------------------------------------- schemas and the wrappers
def test_tool_schema_is_transformers():
    from transformers.utils import get_json_schema

    assert tool_schema(multiply) == get_json_schema(multiply)
    assert tool_schema(tool_schema(multiply)) == get_json_schema(multiply)  # a schema passes through


def test_a_tool_without_docstring_or_hints_is_refused():
    def bare(x):
        return x

    with pytest.raises(ToolSpecError, match="type hint on every argument"):
        ToolEnvironment([bare])


class Counter:
    """A TRL-style environment: public methods are tools, reset(**row), get_reward()."""

    def __init__(self):
        self.total = 0

    def reset(self, **kwargs):
        self.total = kwargs.get("start", 0)
        return " Start counting."

    def add(self, n: int) -> int:
        """Add to the counter.

        Args:
            n: How much.
        """
        self.total += n
        return self.total

    def get_reward(self) -> float:
        return float(self.total == 10)

    def _private(self) -> None:
        pass

    @property
    def doubled(self) -> int:
        raise AssertionError("properties are not tools and are never evaluated")


def test_environment_factory_follows_trls_convention():
    env = FactoryEnvironment(Counter, tools=[multiply])
    assert [t["function"]["name"] for t in env.tools] == ["multiply", "add"]  # standalone tools first, as TRL
    prompt = [{"role": "system", "content": "s"}, {"role": "user", "content": "Count to 10."}]
    messages = env.reset(prompt=prompt, start=4)
    assert messages == [prompt[0], {"role": "user", "content": "Count to 10. Start counting."}]
    assert prompt[1]["content"] == "Count to 10."  # the row is left untouched
    step = env.step(assistant('<tool_call>{"name": "add", "arguments": {"n": 6}}</tool_call>'))
    assert step.messages == [{"role": "tool", "name": "add", "content": "10"}] and not step.done
    assert env.get_reward() == 1.0


def test_environment_factory_needs_reset():
    class NoReset:
        def act(self, x: int) -> int:
            """Act.

            Args:
                x: X.
            """
            return x

    with pytest.raises(ToolSpecError, match="must define reset"):
        FactoryEnvironment(NoReset)


def test_run_calls_abandons_overruns_and_refuses_when_too_many_run_on(monkeypatch):
    def swallows():  # waits past its timeout, catches even the interruption, and returns late
        try:
            time.sleep(0.5)
        except BaseException:
            pass
        return 5

    outcomes = tools_module.run_calls([swallows, lambda: 1 / 0, lambda: 3], timeout=0.1, workers=3)
    assert [o.timed_out for o in outcomes] == [True, False, False]
    assert isinstance(outcomes[1].error, ZeroDivisionError) and outcomes[2].value == 3
    monkeypatch.setattr(tools_module, "MAX_ABANDONED", 0)
    with pytest.raises(RuntimeError, match="still running after their timeout"):
        tools_module.run_calls([lambda: 1], timeout=1.0)
    time.sleep(0.6)  # the overrun call has ended since: what was returned stays as it was
    assert outcomes[0].timed_out and outcomes[0].value is None  # before: replaced by the late result


def test_an_overrun_tool_busy_in_python_is_stopped_not_left_running():
    stopped = []

    def spins():  # busy in Python for 10 s (a loop that forgot its exit), deaf to errors
        started = time.monotonic()
        try:
            while time.monotonic() - started < 10:
                try:
                    sum(range(1000))
                except Exception:
                    pass
        finally:
            stopped.append(time.monotonic() - started)

    (outcome,) = tools_module.run_calls([spins], timeout=0.2)
    assert outcome.timed_out
    waited = time.monotonic()
    while not stopped and time.monotonic() - waited < 10:
        time.sleep(0.05)
    assert stopped and stopped[0] < 3  # before: it ran its 10 s, abandoned
    assert tools_module.run_calls([lambda: 7], timeout=1.0)[0].value == 7  # nothing left to hit the next call
    time.sleep(0.2)
    assert not [t for t in threading.enumerate() if t.name == "rlvr-tool-call"]


# ----------------------------------------------------------------------------- the loader
def test_loader_by_name_module_and_file(tmp_path):
    assert get_environment_class("calculator") is CalculatorEnvironment
    assert get_environment_class("rlvr.environments.retry:RetryEnvironment") is RetryEnvironment
    path = tmp_path / "my_env.py"
    path.write_text(
        textwrap.dedent(
            '''
            class Game:
                def reset(self, **row):
                    self.moves = 0

                def move(self, direction: str) -> str:
                    """Move.

                    Args:
                        direction: Where.
                    """
                    self.moves += 1
                    return f"moved {direction}"
            '''
        )
    )
    factory = make_environment_factory(EnvironmentConfig(name=f"{path}:Game"))
    env = factory()
    assert isinstance(env, FactoryEnvironment) and env.tools[0]["function"]["name"] == "move"
    assert factory() is not env  # one instance per environment


@pytest.mark.parametrize(
    "name, message",
    [
        ("calculater", "did you mean 'calculator'"),
        ("no_such_module_xyz:Env", "cannot import module 'no_such_module_xyz'"),
        ("rlvr.environments.retry:Nope", "has no attribute 'Nope'"),
        ("rlvr.environments.retry:DEFAULT_FEEDBACK", "not a class"),
        ("missing/file.py:Env", "does not exist"),
    ],
)
def test_loader_errors(name, message):
    with pytest.raises(EnvironmentSpecError, match=message):
        get_environment_class(name)


def test_a_file_that_fails_to_import_is_named(tmp_path):
    path = tmp_path / "broken_env.py"
    path.write_text("import no_such_module_xyz\n")
    with pytest.raises(EnvironmentSpecError, match=r"importing .*broken_env.py failed .*no_such_module_xyz"):
        get_environment_class(f"{path}:Env")


def test_wrong_args_name_the_environment_and_its_parameters():
    factory = make_environment_factory(EnvironmentConfig(name="retry", args={"rewrd": "accuracy"}))
    with pytest.raises(
        EnvironmentSpecError,
        match=r"environment 'retry' cannot be made .*rewrd.*RetryEnvironment\(reward: 'str' = 'accuracy'",
    ):
        factory()


def test_python_api_wrappers():
    config = EnvironmentConfig(max_tool_calls=2)
    env = make_environment_factory(config, tools=[multiply])()
    assert isinstance(env, ToolEnvironment) and env.max_tool_calls == 2
    assert isinstance(make_environment_factory(config, environment_factory=Counter)(), FactoryEnvironment)
    assert isinstance(make_environment_factory(EnvironmentConfig())(), SingleTurnEnvironment)
    with pytest.raises(EnvironmentSpecError, match="give one of them"):
        make_environment_factory(EnvironmentConfig(name="calculator"), tools=[multiply])


def test_pool_reuses_instances():
    pool = EnvironmentPool(make_environment_factory(EnvironmentConfig(name="calculator")))
    first = pool.take(2)
    assert pool.take(3)[:2] == first and len(pool.instances) == 3


def test_config_validation():
    EnvironmentConfig().validate()
    with pytest.raises(ValueError, match="environment.max_turns must be at least 1"):
        EnvironmentConfig(max_turns=0).validate()
    with pytest.raises(ValueError, match="environment.tool_timeout must be >= 0"):
        EnvironmentConfig(tool_timeout=-1).validate()


# ----------------------------------------------------------------------------- built-ins
@pytest.mark.parametrize(
    "expression, result",
    [
        ("6 * 7", "42"),
        ("(3 + 4) * 2", "14"),
        ("-2 ** 2", "-4"),  # Python's precedence: -(2 ** 2)
        ("7 / 2", "3.5"),
        ("8 / 2", "4"),  # an integral float loses its .0
        ("7 // 2", "3"),
        ("-7 % 3", "2"),
        ("2.5 * 4.1", "10.25"),
        ("1 / 3", "0.333333333333"),
        ("2 ** 0.5", "1.41421356237"),
        ("10 ** 99", "1" + "0" * 99),  # exact integers
        ("1 / 0", "Error: division by zero"),
        ("0 ** -1", "Error: division by zero"),
        ("2 ** 1000", "Error: exponents are limited to 100 in size"),
        ("99 ** 99", "Error: the result is larger than 1e+100"),
        ("9 ** 9 ** 9", "Error: exponents are limited to 100 in size"),  # never built
        ("(-8) ** (1 / 3)", "Error: a negative number to a fractional power is not a real number"),
        ("2 ^ 3", "Error: use ** for powers (^ is not an arithmetic operator here)"),
        (
            "1,000 + 1",
            "Error: only numbers, + - * / // % ** and parentheses are allowed, found a tuple (write numbers without thousands separators)",
        ),
        (
            "__import__('os').system('ls')",
            "Error: only numbers, + - * / // % ** and parentheses are allowed, found a function call",
        ),
        ("x + 1", "Error: only numbers, + - * / // % ** and parentheses are allowed, found a name"),
        (
            "True + 1",
            "Error: only numbers, + - * / // % ** and parentheses are allowed, found the constant True",
        ),
        ("2 +", "Error: cannot parse '2 +': invalid syntax"),
        ("", "Error: give an arithmetic expression, e.g. (3 + 4) * 2"),
        ("1+" * 150 + "1", "Error: the expression is longer than 200 characters"),
    ],
)
def test_calculator(expression, result):
    assert calculate(expression) == result


def test_calculator_environment_episode_shape():
    env = CalculatorEnvironment(max_tool_calls=4)
    assert env.reset(prompt=[]) is None
    reply = '<tool_call>{"name": "calculate", "arguments": {"expression": "12 * 3"}}</tool_call>'
    step = env.step(assistant(reply))
    assert step.messages == [{"role": "tool", "name": "calculate", "content": "36"}] and not step.done
    assert env.step(assistant("So \\boxed{36}.")).done


def test_retry_scores_each_reply_with_the_named_reward():
    env = RetryEnvironment(reward="answer_tag_accuracy", feedback="Nope.")
    env.reset(prompt=[{"role": "user", "content": "q"}], answer="12")
    wrong = env.step(assistant("<answer>11</answer>"))
    assert (wrong.done, wrong.reward, wrong.messages) == (False, 0.0, [{"role": "user", "content": "Nope."}])
    right = env.step(assistant("<answer>12</answer>"))
    assert (right.done, right.reward, env.get_reward()) == (True, 1.0, 1.0)


def test_retry_without_a_gold_answer_stops():
    env = RetryEnvironment()
    env.reset(prompt=[])
    assert env.step(assistant("\\boxed{1}")).done


def test_python_environment_runs_model_code_in_the_sandbox(monkeypatch):
    # the default runner is rlvr's sandbox; a sandbox that cannot start fails closed, never runs the code here
    env = make_environment_factory(EnvironmentConfig(name="python", args={"sandbox": "subprocess"}))()
    call = '<tool_call>{"name": "run_python", "arguments": {"code": "import os; print(6 * 7, os.getpid() != %d)"}}</tool_call>'
    reply = env.step({"role": "assistant", "content": call % os.getpid()}).messages[0]["content"]
    assert reply.startswith("42 True")
    from rlvr.sandbox import backends

    def unavailable(name="auto", python=None):
        raise backends.SandboxUnavailable(f"sandbox {name!r} cannot start here")

    monkeypatch.setattr(backends, "get_sandbox", unavailable)
    with pytest.raises(backends.SandboxUnavailable, match="cannot start"):
        make_environment_factory(EnvironmentConfig(name="python", args={"sandbox": "bubblewrap"}))()


def test_python_environment_hands_code_to_its_runner():
    seen = []

    class Runner:
        def run(self, code, timeout):
            seen.append((code, timeout))
            return RunResult(stdout="", stderr="NameError: x", status="error")

    env = PythonEnvironment(runner=Runner(), run_timeout=3.0)
    code = "print(x)"
    step = env.step(
        assistant(f"<tool_call>{json.dumps({'name': 'run_python', 'arguments': {'code': code}})}</tool_call>")
    )
    assert seen == [(code, 3.0)]
    assert step.messages[0]["content"] == "\nstderr:\nNameError: x\nstatus: error"


@pytest.mark.parametrize(
    "module",
    [
        "rlvr.environments.base",
        "rlvr.environments.tools",
        "rlvr.environments.registry",
        "rlvr.environments.calculator",
        "rlvr.environments.retry",
        "rlvr.environments.python",
        "rlvr.rollout.chat_tokens",
        "rlvr.rollout.episodes",
    ],
)
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_docs_examples_run():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "environments.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 3
    namespace: dict = {}
    for block in blocks:
        if "GRPOTrainer(" in block:  # the training launch: it must parse, it is not run here
            compile(block, "environments.md", "exec")
            continue
        exec(block, namespace)  # the tool example asserts its own result
    env = namespace["Guess"]()
    env.reset(prompt=[], answer="7")
    assert [env.step({"role": "assistant", "content": c}).messages for c in ["5", "9"]] == [
        [{"role": "user", "content": "No: higher."}],
        [{"role": "user", "content": "No: lower."}],
    ]
    assert env.step({"role": "assistant", "content": "It is 7"}).done
