"""The `calculator` environment: one tool, `calculate(expression)`, that evaluates arithmetic safely.

The expression is parsed with `ast` and only numbers, + - * / // % **, unary minus and plus, and parentheses
are evaluated: nothing is looked up or called, so no `eval`. Work is bounded: the expression's length, its
node count, exponents (|e| <= 100) and every intermediate result (|x| <= 1e100), so no call runs long. Integers
stay exact; / gives a float. Anything else is an error message the model reads as the tool's reply.
"""

from __future__ import annotations

import ast
import json
import math
import operator
from collections.abc import Sequence
from typing import Any

from rlvr.environments.base import Message
from rlvr.environments.tools import ToolEnvironment

MAX_LENGTH = 200  # characters of an expression
MAX_NODES = 100  # ast nodes: bounds the work of one call
MAX_EXPONENT = 100
MAX_MAGNITUDE = 1e100

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


class CalculatorError(ValueError):
    """An expression the calculator will not evaluate; the message is what the model reads."""


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression.

    >>> evaluate("(3 + 4) * 2"), evaluate("-2 ** 2"), evaluate("7 / 2"), evaluate("7 // 2"), evaluate("2.5 * 4")
    (14, -4, 3.5, 3, 10.0)
    >>> evaluate("__import__('os')")
    Traceback (most recent call last):
    ...
    rlvr.environments.calculator.CalculatorError: only numbers, + - * / // % ** and parentheses are allowed, found a function call
    """
    if not isinstance(expression, str) or not expression.strip():
        raise CalculatorError("give an arithmetic expression, e.g. (3 + 4) * 2")
    if len(expression) > MAX_LENGTH:
        raise CalculatorError(f"the expression is longer than {MAX_LENGTH} characters")
    if "^" in expression:
        raise CalculatorError("use ** for powers (^ is not an arithmetic operator here)")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise CalculatorError(f"cannot parse {expression.strip()!r}: {exc.msg}") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise CalculatorError(f"the expression has more than {MAX_NODES} parts; split it into smaller steps")
    return _value(tree.body)


def _value(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _bounded(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_value(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow):
            if abs(right) > MAX_EXPONENT:
                raise CalculatorError(f"exponents are limited to {MAX_EXPONENT} in size")
            # log10 of the result bounds its size before computing it (2 ** 100 ** ... never builds)
            if left != 0 and right * math.log10(abs(left)) > math.log10(MAX_MAGNITUDE):
                raise CalculatorError(f"the result is larger than {MAX_MAGNITUDE:g}")
            if left == 0 and right < 0:
                raise CalculatorError("division by zero")
        try:
            result = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise CalculatorError("division by zero") from None
        if isinstance(result, complex):
            raise CalculatorError("a negative number to a fractional power is not a real number")
        return _bounded(result)
    raise CalculatorError(
        f"only numbers, + - * / // % ** and parentheses are allowed, found {_describe(node)}"
    )


def _bounded(value: int | float) -> int | float:
    if isinstance(value, float) and not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        raise CalculatorError(f"the result is larger than {MAX_MAGNITUDE:g}")
    return value


def _describe(node: ast.AST) -> str:
    names = {
        ast.Call: "a function call",
        ast.Name: "a name",
        ast.Attribute: "an attribute",
        ast.Tuple: "a tuple (write numbers without thousands separators)",
        ast.Compare: "a comparison",
        ast.BoolOp: "a boolean operator",
        ast.BinOp: "an unsupported operator",
    }
    if isinstance(node, ast.Constant):
        return f"the constant {node.value!r}"
    return names.get(type(node), f"a {type(node).__name__}")


def format_number(value: int | float) -> str:
    """Integers as they are, floats to 12 significant digits, integral floats without the `.0`.

    >>> format_number(14), format_number(3.5), format_number(10.0), format_number(1 / 3)
    ('14', '3.5', '10', '0.333333333333')
    """
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.12g}"


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression with + - * / // % ** and parentheses.

    Args:
        expression: The arithmetic expression, e.g. "(3 + 4) * 2".

    Returns:
        The value, or an error message.
    """
    try:
        return format_number(evaluate(expression))
    except CalculatorError as exc:
        return f"Error: {exc}"


def _worked_example(question: str, expression: str, value: str) -> list[Message]:
    call = {"name": "calculate", "arguments": {"expression": expression}}
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": f"<tool_call>\n{json.dumps(call)}\n</tool_call>"},
        {"role": "tool", "name": "calculate", "content": value},
        {"role": "assistant", "content": f"The answer is \\boxed{{{value}}}."},
    ]


# `few_shot=True`: three worked examples (a product, a difference, a sum), each a question, a call, the tool's
# reply and the answer boxed from it. Three because SmolLM2-135M-Instruct, which has no tool training, called
# the tool in 3% of episodes after one example and in 78% after these three (temperature 0.7; 0% with none;
# docs/results/tools/README.md). Operands of two digits, unlike the `arithmetic` data's, so no example is a
# test question.
FEW_SHOT: list[Message] = [
    *_worked_example(
        "A baker fills 13 trays with 24 muffins each. How many muffins are there?", "13 * 24", "312"
    ),
    *_worked_example(
        "Maria had 85 stamps and gave 37 to her brother. How many stamps does she have left?", "85 - 37", "48"
    ),
    *_worked_example(
        "A farm has 46 cows and buys 29 more. How many cows does the farm have now?", "46 + 29", "75"
    ),
]


class CalculatorEnvironment(ToolEnvironment):
    """The `calculate` tool; the episode ends at the first reply without a tool call, which the reward
    functions score (e.g. `accuracy` on the final answer). `few_shot`: worked examples shown before each
    question, True for the built-in `FEW_SHOT`, or your own chat messages (`ToolEnvironment`'s `few_shot`);
    a model never trained to call tools needs them to call any (`environment.args: {few_shot: true}`).

    >>> env = CalculatorEnvironment()
    >>> env.step({"role": "assistant", "content": '<tool_call>{"name": "calculate", "arguments": {"expression": "6 * 7"}}</tool_call>'}).messages
    [{'role': 'tool', 'name': 'calculate', 'content': '42'}]
    """

    def __init__(
        self,
        max_tool_calls: int | None = None,
        tool_timeout: float | None = 10.0,
        few_shot: bool | Sequence[Message] = False,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise TypeError(f"the calculator environment takes no argument {', '.join(kwargs)}")
        if few_shot is True:
            few_shot = FEW_SHOT
        super().__init__([calculate], max_tool_calls, tool_timeout, few_shot or ())
