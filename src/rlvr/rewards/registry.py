"""Rewards by name: the built-ins, `@register_reward`, `module:function`, `path/file.py:function`, `remote:URL`."""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

RewardFn = Callable[..., list]
"""`fn(prompts, completions, **columns) -> list[float | None]`, called by keyword; None means "not applicable"."""

_REGISTRY: dict[str, RewardFn] = {}
# Parameters through which a reward reads the gold answer; the server refuses to score such a reward without one.
GOLD_PARAMETERS = ("answer", "ground_truth", "solution")


class RewardSpecError(ValueError):
    """A reward spec that names nothing callable; the message says what is missing and where."""


def register_reward(name: str) -> Callable[[RewardFn], RewardFn]:
    """Decorator that makes a reward function available by `name` (in configs, the server, the adapters).

    >>> @register_reward("always_one")
    ... def always_one(prompts, completions, **kwargs):
    ...     return [1.0] * len(completions)
    >>> get_reward("always_one")(prompts=["q"], completions=["a"])
    [1.0]
    """
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"reward name must be a non-empty string without ':', got {name!r}")

    def decorator(fn: RewardFn) -> RewardFn:
        existing = _REGISTRY.get(name)
        # Re-importing a module registers the same function again; a different function is a clash.
        if existing is not None and _qualified(existing) != _qualified(fn):
            raise ValueError(f"reward {name!r} is already registered by {_qualified(existing)}")
        _REGISTRY[name] = fn
        return fn

    return decorator


def _qualified(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


def list_rewards() -> list[str]:
    """Names of the registered rewards, sorted.

    >>> "accuracy" in list_rewards()
    True
    """
    _load_builtins()
    return sorted(_REGISTRY)


def get_reward(spec: str) -> RewardFn:
    """The reward callable that `spec` names.

    `spec` is a registered name (`accuracy`), `package.module:function`, `path/to/file.py:function`, or
    `remote:http://host:port/get_reward` (a `RemoteReward` that calls `rlvr serve-rewards`).

    >>> get_reward("accuracy")(prompts=["2+3?"], completions=[r"\\boxed{5}"], answer=["5"])
    [1.0]
    >>> get_reward("accuracyy")
    Traceback (most recent call last):
    ...
    rlvr.rewards.registry.RewardSpecError: unknown reward 'accuracyy'; did you mean 'accuracy'? ...
    """
    if not isinstance(spec, str) or not spec.strip():
        raise RewardSpecError(f"reward spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    if spec.startswith("remote:"):
        from rlvr.rewards.remote import RemoteReward

        url = spec[len("remote:") :]
        if not url.startswith(("http://", "https://")):
            raise RewardSpecError(
                f"remote reward {spec!r} needs an http(s) URL, e.g. remote:http://127.0.0.1:6000/get_reward"
            )
        return RemoteReward(url)
    if ":" in spec:
        target, _, attribute = spec.rpartition(":")
        if not target or not attribute:
            raise RewardSpecError(
                f"reward spec {spec!r} must look like module:function or path/file.py:function"
            )
        module = _load_file(target, spec) if target.endswith(".py") else _import_module(target, spec)
        fn = getattr(module, attribute, None)
        if fn is None:
            raise RewardSpecError(f"{target} has no attribute {attribute!r} (reward spec {spec!r})")
        if not callable(fn):
            raise RewardSpecError(
                f"{target}:{attribute} is a {type(fn).__name__}, not a function (reward spec {spec!r})"
            )
        return fn
    _load_builtins()
    if spec in _REGISTRY:
        return _REGISTRY[spec]
    names = sorted(_REGISTRY)
    close = difflib.get_close_matches(spec, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise RewardSpecError(
        f"unknown reward {spec!r}; {hint}registered rewards: {', '.join(names)}. "
        "Name your own as module:function or path/to/file.py:function."
    )


def _import_module(name: str, spec: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise RewardSpecError(f"cannot import module {name!r} for reward spec {spec!r}: {exc}") from exc


def _load_file(path_text: str, spec: str) -> Any:
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise RewardSpecError(
            f"reward file {path_text!r} does not exist (resolved to {path}; reward spec {spec!r})"
        )
    # One module per file path, reused on the next lookup, so registrations in the file run once.
    module_name = f"rlvr_user_rewards_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise RewardSpecError(f"cannot load {path} as a Python module (reward spec {spec!r})")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise RewardSpecError(f"importing {path} failed for reward spec {spec!r}: {exc!r}") from exc
    return module


def _load_builtins() -> None:
    import rlvr.rewards.code  # noqa: F401  (code_tests; model code runs in rlvr.sandbox)
    import rlvr.rewards.functions  # noqa: F401  (registers the built-ins)
    import rlvr.rewards.reasoning_gym  # noqa: F401  (reasoning-gym itself is imported on first use)


def reward_name(spec: str) -> str:
    """Short display name of a spec: the registry name, the function name, or `remote`.

    >>> reward_name("accuracy"), reward_name("my_pkg.rewards:brevity"), reward_name("remote:http://h:1/get_reward")
    ('accuracy', 'brevity', 'remote')
    """
    if spec.startswith("remote:"):
        return "remote"
    return spec.rpartition(":")[2] if ":" in spec else spec


def resolve_rewards(specs: Sequence[str]) -> dict[str, RewardFn]:
    """Display name -> callable for each spec, in order; a name that two specs share falls back to the full spec.

    >>> list(resolve_rewards(["accuracy", "xml_format"]))
    ['accuracy', 'xml_format']
    """
    fns: dict[str, RewardFn] = {}
    for spec in specs:
        name = reward_name(spec) if reward_name(spec) not in fns else spec
        if name in fns:
            raise RewardSpecError(f"reward {spec!r} is listed twice")
        fns[name] = get_reward(spec)
    return fns


def needs_gold(fn: RewardFn) -> bool:
    """Whether `fn` declares a gold-answer parameter (`answer`, `ground_truth` or `solution`)."""
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return any(name in parameters for name in GOLD_PARAMETERS)


def combine_rewards(
    reward_fns: Mapping[str, RewardFn],
    prompts: Sequence[Any],
    completions: Sequence[Any],
    weights: Sequence[float] | None = None,
    **columns: Any,
) -> tuple[list[float], dict[str, list[float | None]]]:
    """Call each reward by keyword and sum them with `weights`; None counts as 0 in the sum, as in TRL's nansum.

    Returns the weighted totals and each function's own list. A function that raises or returns the wrong number
    of values raises `RewardCallError` naming it.

    >>> totals, per_fn = combine_rewards({"xml_format": get_reward("xml_format")}, ["q"], ["<answer>1</answer>"])
    >>> totals, per_fn
    ([0.4], {'xml_format': [0.4]})
    """
    if weights is not None and len(weights) != len(reward_fns):
        raise ValueError(f"{len(weights)} weights for {len(reward_fns)} reward functions")
    per_fn: dict[str, list[float | None]] = {}
    for name, fn in reward_fns.items():
        try:
            values = fn(prompts=list(prompts), completions=list(completions), **columns)
        except Exception as exc:
            raise RewardCallError(name, f"{type(exc).__name__}: {exc}") from exc
        per_fn[name] = check_reward_values(name, values, len(completions))
    return weighted_sum(list(per_fn.values()), weights), per_fn


def weighted_sum(
    values: Sequence[Sequence[float | None]], weights: Sequence[float] | None = None
) -> list[float]:
    """Per completion, the sum of each function's value times its weight (1.0 each by default), None counting 0.

    >>> weighted_sum([[1.0, None], [0.5, 0.5]], [1.0, 2.0])
    [2.0, 1.0]
    """
    weights = list(weights) if weights is not None else [1.0] * len(values)
    totals = [0.0] * (len(values[0]) if values else 0)
    for weight, column in zip(weights, values, strict=True):
        for i, value in enumerate(column):
            if value is not None:
                totals[i] += weight * value
    return totals


class RewardCallError(RuntimeError):
    """A reward function raised or returned something that is not one finite number-or-None per completion.

    `index` is the completion whose value is at fault, when one is.
    """

    def __init__(self, name: str, problem: str, index: int | None = None) -> None:
        super().__init__(f"reward function {name!r} failed: {problem}")
        self.name = name
        self.index = index


def check_reward_values(name: str, values: Any, expected: int) -> list[float | None]:
    """`values` as floats or None; `RewardCallError` for anything else, inf, NaN, bools and strings included:
    one of them in a sum turns every weight into NaN, and a numeric string or a bool is a bug in the function."""
    if not isinstance(values, (list, tuple)):
        raise RewardCallError(name, f"returned {type(values).__name__}, expected a list of {expected} floats")
    if len(values) != expected:
        raise RewardCallError(name, f"returned {len(values)} values for {expected} completions")
    checked: list[float | None] = []
    for index, value in enumerate(values):
        if value is None:
            checked.append(None)
            continue
        number = None
        if not isinstance(value, (bool, str, bytes)) and str(getattr(value, "dtype", "")) not in _BOOL_DTYPES:
            try:
                number = float(value)
            except (TypeError, ValueError, OverflowError):
                pass
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        if number is None:
            raise RewardCallError(name, f"returned {shown}, which is not a number or None", index)
        if not math.isfinite(number):
            raise RewardCallError(name, f"returned {shown}, which is not a finite number or None", index)
        checked.append(number)
    return checked


_BOOL_DTYPES = ("bool", "torch.bool")  # numpy and torch booleans, which float() takes as 0.0 and 1.0
