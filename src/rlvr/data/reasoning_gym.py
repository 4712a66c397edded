"""reasoning-gym's procedural tasks as problem sets: `reasoning_gym:chain_sum`, a mix `reasoning_gym:a+b`.

Instances come from the library's own generators: `create_dataset(name, size=, seed=, **options)` for one
task, its `composite` dataset (weighted sampling, a seed per task) for a mix. Each row keeps the entry's
`metadata` and its task's options (`task_config`), so the `reasoning_gym` reward scores it with the task's
own `score_answer`.

Splits: `train` is `size` instances from `seed`; `validation` and `test` come from far-off seeds and drop
every question that an earlier split (train, then validation) holds, so a held-out question was never
trained on.
reasoning-gym is an optional extra (`pip install -e ".[tasks]"`), imported only when such a dataset is loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from rlvr.config.loading import load_yaml
from rlvr.data.datasets import DataError
from rlvr.rewards.reasoning_gym import import_reasoning_gym

PREFIX = "reasoning_gym"
SPLITS = ("train", "validation", "test")
# Item i of a task made with seed s is drawn from Random(s + i) (a mix gives task k the seed s + k + 1), so a
# nearby seed repeats the train items shifted by a few places: held-out splits start a billion seeds away.
# The question-text filter is what guarantees no overlap; the offsets keep it from having much to drop.
HELD_OUT_SEED_OFFSETS = {"validation": 1_000_000_000, "test": 2_000_000_000}
# Candidates tried per held-out instance before a task counts as too small for the split asked for.
TRIES_PER_INSTANCE = 20
OWN_KEYS = ("weight",)  # keys of data.reasoning_gym.tasks that rlvr reads; the rest go to the task


def is_reasoning_gym(name: str) -> bool:
    """Whether a dataset name asks for reasoning-gym tasks.

    >>> is_reasoning_gym("reasoning_gym:chain_sum"), is_reasoning_gym("gsm8k")
    (True, False)
    """
    return name == PREFIX or name.startswith(PREFIX + ":")


def task_mix(name: str, options: Any = None) -> dict[str, dict[str, Any]]:
    """Task name -> its options (`weight` included, default 1.0) for a dataset name and `data.reasoning_gym`.

    `reasoning_gym:a+b` names the tasks, and `tasks` in the options may only configure those; a bare
    `reasoning_gym` takes the tasks from the options.

    >>> task_mix("reasoning_gym:chain_sum+leg_counting", {"tasks": {"chain_sum": {"weight": 3}}})
    {'chain_sum': {'weight': 3}, 'leg_counting': {'weight': 1.0}}
    """
    settings = _settings(options)
    configured = settings["tasks"]
    if not isinstance(configured, Mapping):
        raise DataError(f"data.reasoning_gym.tasks must map task names to options, got {configured!r}")
    listed = name.partition(":")[2]
    names = [t.strip() for t in listed.split("+")] if listed else list(configured)
    if not names or not all(names):
        raise DataError(
            f"dataset {name!r} names no task: write reasoning_gym:TASK or reasoning_gym:TASK+TASK (e.g. "
            f"reasoning_gym:chain_sum+leg_counting), or list the tasks under data.reasoning_gym.tasks"
        )
    if len(set(names)) != len(names):
        raise DataError(f"dataset {name!r} names a task twice")
    stray = [t for t in configured if t not in names]
    if stray:
        raise DataError(
            f"data.reasoning_gym.tasks configures {stray}, which {name!r} does not name: add them to the "
            f"dataset ({PREFIX}:{'+'.join([*names, *stray])}) or remove their options"
        )
    mix = {}
    for task in names:
        opts = dict(configured.get(task) or {})
        for key in ("size", "seed"):
            if key in opts:
                raise DataError(
                    f"data.reasoning_gym.tasks.{task}.{key}: set data.reasoning_gym.{key} instead (one for the "
                    f"whole mix; each task's own seed follows from it)"
                )
        weight = opts.get("weight", 1.0)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight <= 0:
            raise DataError(f"data.reasoning_gym.tasks.{task}.weight must be a number > 0, got {weight!r}")
        mix[task] = {**opts, "weight": weight}
    return mix


def load_tasks(name: str, split: str = "train", options: Any = None, limit: int | None = None) -> list[dict]:
    """Rows `question`, `answer` and `ground_truth` (the task's oracle answer), `task`, `metadata` (the
    entry's, for the task's scorer) and `task_config` (the task's options) of one split.

    `options` is `data.reasoning_gym` (a `ReasoningGymConfig` or a mapping: size, eval_size, seed, tasks).
    The train split has `size` rows (the first `limit` of them when given); a held-out split has `limit`
    rows, else `eval_size`, and a longer one starts with the rows of a shorter one.
    """
    rg = import_tasks()
    settings = _settings(options)
    mix = task_mix(name, options)
    _check_tasks(rg, mix)
    if split not in SPLITS:
        raise DataError(f"reasoning-gym datasets have the splits {', '.join(SPLITS)}, not {split!r}")
    size, eval_size, seed = settings["size"], settings["eval_size"], settings["seed"]
    if split == "train":
        rows = [_row(e, mix) for e in _instances(rg, mix, size, seed, range(size))]
        return rows[:limit] if limit is not None else rows
    taken = {e["question"] for e in _instances(rg, mix, size, seed, range(size))}
    for earlier in SPLITS[1 : SPLITS.index(split)]:
        taken |= {e["question"] for e in _held_out(rg, mix, seed, earlier, eval_size, taken)}
    count = limit if limit is not None else eval_size
    return [_row(e, mix) for e in _held_out(rg, mix, seed, split, count, taken)]


def read_task_options(text: str | None) -> dict[str, Any]:
    """`data.reasoning_gym` (defaults filled in) from inline YAML or a YAML file holding that mapping or a
    whole training config, whose `data.reasoning_gym` is read.

    >>> read_task_options("{seed: 3, tasks: {chain_sum: {max_terms: 3}}}")["seed"]
    3
    """
    if text is None:
        return _settings(None)
    path = Path(text).expanduser()
    try:
        loaded = load_yaml(path.read_text() if path.is_file() else text)
    except yaml.YAMLError as exc:
        raise DataError(f"reasoning-gym options {text!r} are not valid YAML: {exc}") from None
    if isinstance(loaded, dict) and "data" in loaded:
        loaded = (loaded.get("data") or {}).get("reasoning_gym") or {}
    if not isinstance(loaded, dict):
        raise DataError(
            f"reasoning-gym options {text!r} are neither a YAML file nor a YAML mapping like "
            "'{seed: 0, tasks: {chain_sum: {max_terms: 3}}}'"
        )
    return _settings(loaded)


def import_tasks() -> Any:
    """reasoning-gym, or a DataError with the install command."""
    try:
        return import_reasoning_gym()
    except ImportError as exc:
        raise DataError(str(exc)) from None


def _settings(options: Any) -> dict[str, Any]:
    """`data.reasoning_gym` as a dict, checked (unknown keys, types) and defaults filled in by the config."""
    from rlvr.config import GRPOConfig, ReasoningGymConfig

    if options is None:
        options = ReasoningGymConfig()
    elif isinstance(options, Mapping):
        options = GRPOConfig.from_dict({"data": {"reasoning_gym": dict(options)}}).data.reasoning_gym
    elif not isinstance(options, ReasoningGymConfig):
        raise DataError(
            f"reasoning-gym options must be a mapping (size, eval_size, seed, tasks), got {options!r}"
        )
    return dataclasses.asdict(options)


def _check_tasks(rg: Any, mix: dict[str, dict[str, Any]]) -> None:
    from reasoning_gym.factory import DATASETS

    known = sorted(n for n in DATASETS if n != "composite")
    for task in mix:
        if task not in known:
            close = difflib.get_close_matches(task, known, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise DataError(
                f"reasoning-gym has no task {task!r}; {hint}it has {len(known)}: {', '.join(known)}"
            )


def _make(rg: Any, mix: dict[str, dict[str, Any]], size: int, seed: int) -> Any:
    """The library's dataset for the mix: the task itself, or its composite of the tasks."""
    try:
        if len(mix) == 1:
            [(task, opts)] = mix.items()
            return rg.create_dataset(task, size=size, seed=seed, **_task_options(opts))
        from reasoning_gym.composite import DatasetSpec

        specs = [DatasetSpec(task, opts["weight"], _task_options(opts)) for task, opts in mix.items()]
        return rg.create_dataset("composite", size=size, seed=seed, datasets=specs)
    except (
        TypeError,
        ValueError,
        AssertionError,
    ) as exc:  # unknown option, or one the task's validate refuses
        raise DataError(
            f"reasoning-gym could not make {'+'.join(mix)} with options "
            f"{ {t: _task_options(o) for t, o in mix.items()} }: {type(exc).__name__}: {exc}"
        ) from None


def _instances(rg: Any, mix: dict[str, dict[str, Any]], size: int, seed: int, indices: range) -> list[dict]:
    dataset = _make(rg, mix, size, seed)
    return [dataset[i] for i in indices]


def _held_out(
    rg: Any, mix: dict[str, dict[str, Any]], seed: int, split: str, count: int, taken: set[str]
) -> list[dict]:
    """The first `count` instances from the split's seed whose question is neither in `taken` nor repeated."""
    tries = TRIES_PER_INSTANCE * count + 100
    dataset = _make(rg, mix, tries, (seed + HELD_OUT_SEED_OFFSETS[split]) % 2**32)
    seen = set(taken)
    out: list[dict] = []
    for index in range(tries):
        entry = dataset[index]
        if entry["question"] not in seen:
            seen.add(entry["question"])
            out.append(entry)
            if len(out) == count:
                return out
    raise DataError(
        f"{'+'.join(mix)} gave only {len(out)} {split} questions not already in the train split (or earlier "
        f"held-out splits) in {tries} tries, {count} asked for: the task's options allow few distinct questions. "
        f"Ask for fewer (limit, data.reasoning_gym.eval_size, .size) or widen the options"
    )


def _task_options(opts: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in opts.items() if k not in OWN_KEYS}


def _row(entry: dict[str, Any], mix: dict[str, dict[str, Any]]) -> dict[str, Any]:
    metadata = entry.get("metadata") or {}
    task = metadata.get("source_dataset") or next(iter(mix))
    return {
        "question": entry["question"],
        "answer": entry["answer"],
        "ground_truth": entry["answer"],
        "task": task,
        "metadata": metadata,
        "task_config": _task_options(mix.get(task, {})),
    }
