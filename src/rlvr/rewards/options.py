"""A reward function's options: `rewards.options` in a config, `--reward-options` of `rlvr serve-rewards`.

An option is a named parameter of the function other than `prompts` and `completions`, given one value for every
call: `{code_tests: {sandbox: bubblewrap, partial_credit: false}}`, `{answer_tag_strict: {tag: label}}`. It is
checked where the reward is loaded, before any model: an unknown name suggests the nearest, a value of the wrong
type names the option, and a function may check its values itself (`fn.check_options(**options)` raising
ValueError, as `code_tests` does). `BoundReward` then calls the function with them; it pickles as its spec and
options, so a reward worker process resolves the function itself.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rlvr.rewards.registry import RewardSpecError, get_reward, reward_name

CALL_PARAMETERS = ("prompts", "completions")
"""What every call passes: never an option."""


class _FunctionSignature:
    """A bound reward's signature is its function's, so `needs_gold` sees the gold parameters (the class's own,
    looked up on the class, is left to `inspect`)."""

    def __get__(self, bound: BoundReward | None, owner: type | None = None) -> inspect.Signature | None:
        return None if bound is None else inspect.signature(bound.fn)


class BoundReward:
    """`spec`'s function called with `options` on top of each call's columns (an option wins over a column of the
    same name). The function is resolved on first use, in whichever process calls it.

    >>> strict = BoundReward("answer_tag_strict", {"tag": "label"})
    >>> strict(prompts=["q", "q"], completions=["<label>4</label>", "<answer>4</answer>"])
    [10.0, 0.0]
    """

    __signature__ = _FunctionSignature()

    def __init__(self, spec: str, options: Mapping[str, Any], fn: Callable | None = None) -> None:
        self.spec = spec
        self.options = dict(options)
        self.reward_name = reward_name(spec)  # the name in metrics and errors (`scoring.function_name`)
        self._fn = fn

    @property
    def fn(self) -> Callable:
        if self._fn is None:
            self._fn = get_reward(self.spec)
        return self._fn

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: Any) -> list:
        return self.fn(prompts=prompts, completions=completions, **{**columns, **self.options})

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "options": self.options, "reward_name": self.reward_name, "_fn": None}

    def __repr__(self) -> str:
        return f"BoundReward({self.spec!r}, {self.options!r})"


def check_options(fn: Callable, name: str, options: Any, where: str) -> dict[str, Any]:
    """`options` for the reward `fn` (called `name`), checked, ints turned into floats where a float is wanted;
    `RewardSpecError` naming `where.name.option` otherwise.

    >>> check_options(get_reward("code_tests"), "code_tests", {"timeout": 5}, "rewards.options")
    {'timeout': 5.0}
    >>> check_options(get_reward("code_tests"), "code_tests", {"timout": 5}, "rewards.options")
    Traceback (most recent call last):
    ...
    rlvr.rewards.registry.RewardSpecError: rewards.options.code_tests has no option 'timout'; did you mean 'timeout'? ...
    """
    from rlvr.config.checks import ConfigError
    from rlvr.config.loading import check_value

    key = f"{where}.{name}"
    if not isinstance(options, Mapping):
        raise RewardSpecError(f"{key} must be a mapping of option: value, got {options!r}")
    parameters = {
        p.name: p
        for p in inspect.signature(fn).parameters.values()
        if p.name not in CALL_PARAMETERS and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # annotations that do not resolve (a user's module): names are still checked
        hints = {}
    checked = {}
    for option, value in options.items():
        if option not in parameters:
            close = difflib.get_close_matches(str(option), list(parameters), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            known = f"its options: {', '.join(parameters)}" if parameters else "it takes no options"
            raise RewardSpecError(f"{key} has no option {option!r}; {hint}{known}")
        try:
            checked[option] = (
                check_value(hints[option], value, f"{key}.{option}") if option in hints else value
            )
        except ConfigError as exc:
            raise RewardSpecError(str(exc)) from None
    check = getattr(fn, "check_options", None)
    if callable(check):
        try:
            check(**checked)
        except ValueError as exc:
            raise RewardSpecError(f"{key}: {exc}") from None
    return checked


def bind_options(
    specs: Sequence[str],
    refs: Sequence[Any],
    fns: Sequence[Callable],
    options: Mapping[str, Any] | None,
    where: str,
) -> tuple[list[Any], list[Callable]]:
    """(refs, fns) with each reward that `options` names (by its spec or its short name) bound to its options,
    as a `BoundReward` in both lists; `RewardSpecError` for a name that is none of `specs`.

    >>> refs, fns = bind_options(["accuracy"], ["accuracy"], [get_reward("accuracy")], {}, "rewards.options")
    >>> refs
    ['accuracy']
    """
    options = dict(options or {})
    check_option_names(specs, options, where)
    refs, fns = list(refs), list(fns)
    for i, spec in enumerate(specs):
        name = spec if spec in options else reward_name(spec)
        if name not in options:
            continue
        checked = check_options(fns[i], name, options[name], where)
        refs[i] = fns[i] = BoundReward(spec, checked, fns[i])
    return refs, fns


def check_option_names(specs: Sequence[str], options: Mapping[str, Any], where: str) -> None:
    """Each key of `options` names one of `specs` (its spec or short name), not a remote reward, whose options are
    set on its server; `RewardSpecError` with the nearest name otherwise."""
    names = {reward_name(spec): spec for spec in specs} | {spec: spec for spec in specs}
    for name in options:
        if name not in names:
            close = difflib.get_close_matches(str(name), list(names), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise RewardSpecError(
                f"{where} has options for {name!r}, which is not one of the rewards ({', '.join(specs)}){hint}"
            )
        if names[name].startswith("remote:"):
            raise RewardSpecError(
                f"{where} has options for the remote reward {names[name]!r}: set them on its server "
                "(rlvr serve-rewards --reward-options)"
            )
