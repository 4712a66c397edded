"""The registry: names, module:function, file.py:function, remote:URL, and errors that say what is wrong."""

from __future__ import annotations

import doctest
import textwrap

import pytest

import rlvr.rewards.registry as registry
from rlvr.rewards import (
    RemoteReward,
    RewardCallError,
    RewardSpecError,
    accuracy,
    combine_rewards,
    get_reward,
    list_rewards,
    register_reward,
)
from rlvr.rewards.registry import needs_gold, resolve_rewards, reward_name

BUILTINS = [
    "accuracy",
    "answer_content",
    "answer_tag_loose",
    "answer_tag_strict",
    "boxed_exact",
    "gsm8k_correctness",
    "length_penalty",
    "math_verifier",
    "overlong_penalty",
    "xml_format",
]


@pytest.fixture
def clean_registry(monkeypatch):
    """Registrations made by a test disappear after it."""
    list_rewards()  # load the built-ins first
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_builtins_are_registered_under_their_names():
    assert set(BUILTINS) <= set(list_rewards())
    for name in BUILTINS:
        assert get_reward(name).__name__ == name


def test_module_function_spec():
    assert get_reward("rlvr.rewards.functions:accuracy") is accuracy


def test_file_function_spec(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(
        "def brevity(prompts, completions, **kwargs):\n    return [-len(c) / 10 for c in completions]\n"
    )
    fn = get_reward(f"{path}:brevity")
    assert fn(prompts=["q"], completions=["abcde"]) == [-0.5]
    assert get_reward(f"{path}:brevity") is fn  # the file is imported once


def test_decorator_registers_and_refuses_a_clash(clean_registry):
    @register_reward("shout")
    def shout(prompts, completions, **kwargs):
        return [float(c.isupper()) for c in completions]

    assert "shout" in list_rewards()
    assert get_reward("shout")(prompts=["q", "q"], completions=["HI", "hi"]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="'shout' is already registered"):
        register_reward("shout")(lambda prompts, completions, **kwargs: [])


def test_registration_inside_a_reward_file(clean_registry, tmp_path):
    path = tmp_path / "registering.py"
    path.write_text(
        textwrap.dedent(
            """
            from rlvr.rewards import register_reward

            @register_reward("file_registered")
            def file_registered(prompts, completions, **kwargs):
                return [2.0] * len(completions)
            """
        )
    )
    get_reward(f"{path}:file_registered")
    assert get_reward("file_registered")(prompts=["q"], completions=["a"]) == [2.0]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "accuracyy",
            r"unknown reward 'accuracyy'; did you mean 'accuracy'\? registered rewards: accuracy, ",
        ),
        ("no_such_thing_at_all", r"unknown reward 'no_such_thing_at_all'; registered rewards: "),
        ("rlvr_no_such_module:fn", r"cannot import module 'rlvr_no_such_module'"),
        ("rlvr.rewards.functions:no_such_fn", r"rlvr.rewards.functions has no attribute 'no_such_fn'"),
        ("math:pi", r"math:pi is a float, not a function"),
        ("missing/dir/rewards.py:fn", r"reward file 'missing/dir/rewards.py' does not exist"),
        ("remote:localhost:6000", r"needs an http\(s\) URL"),
        (":fn", r"must look like module:function"),
        ("", r"non-empty string"),
    ],
)
def test_errors_say_what_is_missing(spec, message):
    with pytest.raises(RewardSpecError, match=message):
        get_reward(spec)


def test_broken_reward_file_names_the_file(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('oops')\n")
    with pytest.raises(RewardSpecError, match=r"importing .*broken.py failed .*oops"):
        get_reward(f"{path}:fn")


def test_remote_spec_gives_a_remote_reward():
    fn = get_reward("remote:http://127.0.0.1:6000/get_reward")
    assert isinstance(fn, RemoteReward)
    assert fn.url == "http://127.0.0.1:6000/get_reward"


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("accuracy", "accuracy"),
        ("pkg.mod:brevity", "brevity"),
        ("path/to/file.py:brevity", "brevity"),
        ("remote:http://h:1/get_reward", "remote"),
    ],
)
def test_reward_name(spec, name):
    assert reward_name(spec) == name


def test_resolve_rewards_keeps_names_unique():
    fns = resolve_rewards(["accuracy", "rlvr.rewards.functions:accuracy"])
    assert list(fns) == ["accuracy", "rlvr.rewards.functions:accuracy"]
    with pytest.raises(RewardSpecError, match="listed twice"):
        resolve_rewards(["accuracy", "accuracy"])


def test_needs_gold():
    assert needs_gold(get_reward("accuracy")) is True
    assert needs_gold(get_reward("xml_format")) is False
    assert needs_gold(lambda prompts, completions, **kwargs: []) is False


def test_combine_rewards_weights_and_none():
    fns = {"accuracy": get_reward("accuracy"), "xml_format": get_reward("xml_format")}
    completions = ["<answer>7</answer>", "<reasoning>r</reasoning><answer>7</answer>"]
    totals, per_fn = combine_rewards(fns, ["q", "q"], completions, [1.0, 0.5], answer=["7", None])
    # Row 0: 1.0 * 1.0 + 0.5 * 0.4 = 1.2. Row 1: accuracy None (no gold) counts 0, 0.5 * 0.8 = 0.4.
    assert totals == pytest.approx([1.2, 0.4])
    assert per_fn == {"accuracy": [1.0, None], "xml_format": [0.4, 0.8]}


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ([1.0], r"'bad' failed: returned 1 values for 2 completions"),
        ("1.0", r"'bad' failed: returned str"),
        ([1.0, "x"], r"'bad' failed: returned 'x', which is not a number"),
        ([1.0, "0.5"], r"returned '0.5', which is not a number or None"),  # a numeric string too
        ([True, 1.0], r"returned True, which is not a number or None"),
        ([1.0, float("inf")], r"returned inf, which is not a finite number or None"),
        ([float("nan"), 1.0], r"returned nan, which is not a finite number or None"),
        ([1.0, 10**400], r"returned 1000000000.*\.\.\., which is not a number or None"),  # float() overflows
    ],
)
def test_combine_rewards_names_a_bad_function(returned, message):
    with pytest.raises(RewardCallError, match=message) as raised:
        combine_rewards({"bad": lambda **kwargs: returned}, ["q", "q"], ["a", "b"])
    if isinstance(returned, list) and len(returned) == 2:  # a bad value: which completion it belongs to
        assert raised.value.index == next(
            i for i, v in enumerate(returned) if v != 1.0 or type(v) is not float
        )


def test_combine_rewards_names_a_raising_function():
    def explode(prompts, completions, **kwargs):
        raise ZeroDivisionError("no")

    with pytest.raises(RewardCallError, match="'explode' failed: ZeroDivisionError: no"):
        combine_rewards({"explode": explode}, ["q"], ["a"])


@pytest.mark.parametrize(
    "module",
    ["extraction", "equivalence", "symbolic", "functions", "registry", "remote", "adapters", "pool"],
)
def test_docstring_examples(module, clean_registry):
    imported = __import__(f"rlvr.rewards.{module}", fromlist=[module])
    result = doctest.testmod(imported, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
