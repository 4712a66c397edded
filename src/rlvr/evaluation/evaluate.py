"""Held-out evaluation: batched generation (greedy or sampled), scoring with a reward, the summary figures."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from rlvr.config import EnvironmentConfig, GenerationConfig
from rlvr.config.rewards import DEFAULT_REWARD_TIMEOUT
from rlvr.data import build_messages, render_prompt
from rlvr.evaluation.metrics import majority_vote, mean_pass_at_k
from rlvr.rollout import decode_completions
from rlvr.rollout.engine import HFEngine, RolloutEngine

# The answer form each prompt template asks for; `format_rate` counts completions that answer in that form.
TEMPLATE_ANSWER_STYLES = {
    "boxed": "boxed",
    "xml_reasoning": "answer_tag",
    "think_answer": "answer_tag",
    "answer_tag": "answer_tag",
    "reasoning_gym": "answer_tag",
    "code": "auto",  # a fenced program: the code_tests reward decides, no answer form to count
    "plain": "auto",
}
# A completion is correct when its reward reaches 1: the built-in correctness rewards pay 1.0 or more for a
# right answer and less (0, or a format bonus below 1) otherwise.
CORRECT_AT = 1.0
# Built-in rewards that pay for form or length, not for a right answer: accuracy cannot be read from them.
NOT_CORRECTNESS_REWARDS = (
    "xml_format",
    "answer_tag_loose",
    "answer_tag_strict",
    "answer_content",
    "overlong_penalty",
    "length_penalty",
)
# Dataset columns that would clash with the reward call's own arguments.
_NOT_COLUMNS = ("prompt", "prompts", "completions")


class EvaluationError(ValueError):
    """Input that evaluation, compare, plot or inspect cannot use; the message says what to change."""


@dataclass
class Generations:
    """N = problems * samples completions, each problem's samples adjacent."""

    completions: list[str]  # [N] decoded text, special tokens removed
    lengths: list[int]  # [N] completion tokens, the EOS token included
    truncated: list[bool]  # [N] no EOS within max_new_tokens
    prompts_cut: int  # prompts cut from the left to max_prompt_length
    # [N] with an environment: each episode's messages after the prompt (what rewards score, as in training)
    # and its record (turns, tool calls and errors, how it ended)
    messages: list[list[dict[str, Any]]] | None = None
    episodes: list[dict[str, Any]] | None = None


def sampling_config(
    num_samples: int, max_new_tokens: int, temperature: float, top_p: float
) -> GenerationConfig:
    """The GenerationConfig of an evaluation: greedy when `temperature` is 0 (its temperature then unused)."""
    return GenerationConfig(
        num_generations=num_samples,
        max_completion_length=max_new_tokens,
        temperature=1.0 if temperature == 0 else temperature,
        top_p=top_p,
    )


@torch.no_grad()
def generate_completions(
    model: Any,
    tokenizer: Any,
    prompt_texts: list[str],
    num_samples: int = 1,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_prompt_length: int = 512,
    autocast_dtype: torch.dtype | None = None,
    engine: RolloutEngine | None = None,
) -> Generations:
    """Generate `num_samples` completions per prompt in one batch, stopping each at EOS, with `engine`
    (default: rlvr's decode loop on `model`).

    The model is put in eval mode (dropout off) for the call and given back in the mode it came in.
    """
    greedy = temperature == 0
    config = sampling_config(num_samples, max_new_tokens, temperature, top_p)
    engine = engine or HFEngine(model, tokenizer, max_prompt_length, autocast_dtype)
    out = engine.generate(prompt_texts, num_samples, config, greedy=greedy)
    return Generations(
        completions=decode_completions(tokenizer, out.completion_ids, out.completion_mask),
        lengths=out.completion_mask.sum(dim=1).tolist(),
        truncated=out.truncated.tolist(),
        prompts_cut=out.num_prompts_cut,
    )


def play_episodes(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    messages: list[list[dict[str, str]]],
    environment: EnvironmentConfig,
    environments: Any,
    num_samples: int = 1,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_prompt_length: int = 512,
    autocast_dtype: torch.dtype | None = None,
    engine: RolloutEngine | None = None,
) -> Generations:
    """`generate_completions` for episodes: each problem played `num_samples` times in `environment`
    (instances from the pool `environments`), every turn greedy when `temperature` is 0, as training plays them."""
    from rlvr.rollout.chat_tokens import ChatFormat
    from rlvr.rollout.episodes import episode_record, run_episodes
    from rlvr.rollout.generation import eos_token_ids

    greedy = temperature == 0
    config = sampling_config(num_samples, max_new_tokens, temperature, top_p)
    engine = engine or HFEngine(model, tokenizer, max_prompt_length, autocast_dtype)
    eos = getattr(engine, "eos_ids", None) or eos_token_ids(tokenizer, model)
    chat = ChatFormat(tokenizer, eos, environment.tool_prompt, environment.tool_role)
    played = run_episodes(
        engine,
        chat,
        environments.take(len(rows) * num_samples),
        rows,
        messages,
        num_samples,
        config,
        environment,
        eos,
        max_prompt_length,
        greedy=greedy,
    )
    records = [episode_record(e) for e in played]
    return Generations(
        completions=[e.completion_text for e in played],
        lengths=[r["sampled_tokens"] for r in records],
        truncated=[e.truncation is not None and not e.done for e in played],  # ended by a limit
        prompts_cut=sum(e.prompt_cut for e in played[::num_samples]),
        messages=[e.completion_messages for e in played],
        episodes=records,
    )


def score_completions(
    reward_fn: Callable,
    messages: list[list[dict[str, str]]],
    completions: list[str],
    rows: list[dict[str, Any]],
    num_samples: int,
    timeout: float | None = None,
    setting: str = "--reward-timeout",
) -> list[float | None]:
    """The reward of each completion (None: the reward did not apply), called as in training: chat prompts,
    completions as assistant messages, the dataset's columns (with the gold `answer`) repeated per sample. A call
    past `timeout` seconds is a RewardTimeout naming `setting`, the option that sets it."""
    from rlvr.rewards.scoring import score

    keys = dict.fromkeys(key for row in rows for key in row if key not in _NOT_COLUMNS)
    columns = {key: [row.get(key) for row in rows for _ in range(num_samples)] for key in keys}
    prompts = [m for m in messages for _ in range(num_samples)]
    values = score([reward_fn], prompts, completions, columns, timeout, setting)[:, 0].tolist()
    return [None if v != v else v for v in values]  # NaN is the scorer's "not applicable"


def problem_record(
    index: int,
    row: dict[str, Any],
    completions: list[str],
    rewards: list[float | None],
    lengths: list[int],
    truncated: list[bool],
    answer_style: str,
    equal: Callable[[str, str], bool],
) -> dict[str, Any]:
    """One line of predictions.jsonl: the first sample's fields at the top (what `accuracy` counts) and, with
    more than one sample, every sample under `samples` with the majority vote.

    >>> row = {"question": "2+3?", "answer": "5"}
    >>> r = problem_record(0, row, [r"\\boxed{5}"], [1.0], [4], [False], "boxed", str.__eq__)
    >>> r["extracted"], r["formatted"], r["correct"]
    ('5', True, True)
    """
    from rlvr.rewards import extract_answer

    samples = [
        {
            "completion": text,
            "extracted": extract_answer(text, "auto"),
            "formatted": extract_answer(text, answer_style) is not None,
            "reward": reward,
            "correct": reward is not None and reward >= CORRECT_AT,
            "length": length,
            "truncated": cut,
        }
        for text, reward, length, cut in zip(completions, rewards, lengths, truncated, strict=True)
    ]
    record = {"index": index, "question": row["question"], "gold": row["answer"], **samples[0]}
    golds = (
        row["answer"] if isinstance(row["answer"], list) else [row["answer"]]
    )  # a list: any of them counts
    if "task" in row:  # reasoning-gym rows: the figures are also given per task
        record["task"] = row["task"]
    if len(samples) > 1:
        majority, votes = majority_vote([s["extracted"] for s in samples], equal)
        record.update(
            samples=samples,
            num_correct=sum(s["correct"] for s in samples),
            majority=majority,
            majority_votes=votes,
            maj_correct=majority is not None and any(equal(majority, gold) for gold in golds),
        )
    return record


def summarize(
    records: list[dict[str, Any]], num_samples: int, seconds: float, prompts_cut: int = 0
) -> dict[str, float]:
    """The figures of an evaluation from its per-problem records.

    `accuracy` counts each problem's first (greedy) sample; the rates and means count every completion.

    >>> records = [{"correct": True, "reward": 1.0, "formatted": True, "truncated": False, "length": 10},
    ...            {"correct": False, "reward": 0.0, "formatted": False, "truncated": True, "length": 30}]
    >>> s = summarize(records, 1, seconds=4.0)
    >>> s["accuracy"], s["format_rate"], s["mean_length"], s["problems_per_second"]
    (0.5, 0.5, 20.0, 0.5)
    """
    samples = [s for r in records for s in r.get("samples", [r])]
    rewards = [s["reward"] for s in samples if s["reward"] is not None]
    n = max(len(records), 1)
    figures: dict[str, float] = {
        "accuracy": sum(r["correct"] for r in records) / n,
        "format_rate": sum(s["formatted"] for s in samples) / max(len(samples), 1),
        "truncation_rate": sum(s["truncated"] for s in samples) / max(len(samples), 1),
        "mean_length": sum(s["length"] for s in samples) / max(len(samples), 1),
        "mean_reward": sum(rewards) / len(rewards) if rewards else float("nan"),
        "problems_per_second": len(records) / seconds if seconds > 0 else float("nan"),
        "num_problems": len(records),
        "num_samples": num_samples,
        "prompts_cut": prompts_cut,
    }
    if num_samples > 1:
        counts = [(len(r["samples"]), r["num_correct"]) for r in records]
        figures["pass@1"] = mean_pass_at_k(counts, 1)
        figures[f"pass@{num_samples}"] = mean_pass_at_k(counts, num_samples)
        figures[f"maj@{num_samples}"] = sum(r["maj_correct"] for r in records) / n
    figures.update(per_task_figures(records))
    return figures


def per_task_figures(records: list[dict[str, Any]]) -> dict[str, float]:
    """`accuracy/<task>`, `mean_reward/<task>` (the task's mean score) and `num_problems/<task>` when the
    records come from a mix of tasks (reasoning-gym's `task` column); nothing for one task or none.

    >>> records = [{"task": "a", "correct": True, "reward": 1.0}, {"task": "b", "correct": False, "reward": 0.5}]
    >>> per_task_figures(records)["mean_reward/b"]
    0.5
    """
    tasks = sorted({r["task"] for r in records if r.get("task") is not None})
    if len(tasks) < 2:
        return {}
    figures: dict[str, float] = {}
    for task in tasks:
        mine = [r for r in records if r.get("task") == task]
        rewards = [s["reward"] for r in mine for s in r.get("samples", [r]) if s["reward"] is not None]
        figures[f"accuracy/{task}"] = sum(r["correct"] for r in mine) / len(mine)
        figures[f"mean_reward/{task}"] = sum(rewards) / len(rewards) if rewards else float("nan")
        figures[f"num_problems/{task}"] = len(mine)
    return figures


def check_settings(
    template: str,
    reward: str | Callable,
    num_samples: int,
    temperature: float,
    batch_size: int,
    max_new_tokens: int,
) -> None:
    """Raise EvaluationError for settings that cannot give a meaningful evaluation (before a model is loaded).

    >>> check_settings("boxed", "accuracy", 4, 0.0, 16, 256)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    rlvr.evaluation.evaluate.EvaluationError: num_samples=4 with greedy decoding (temperature 0) gives ...
    """
    if template not in TEMPLATE_ANSWER_STYLES:
        raise EvaluationError(
            f"unknown template {template!r}; choose one of {', '.join(TEMPLATE_ANSWER_STYLES)}"
        )
    if num_samples < 1 or batch_size < 1 or max_new_tokens < 1:
        raise EvaluationError("num_samples, batch_size and max_new_tokens must be at least 1")
    if num_samples > 1 and temperature <= 0:
        raise EvaluationError(
            f"num_samples={num_samples} with greedy decoding (temperature 0) gives {num_samples} "
            "copies of one completion; set a sampling temperature, e.g. 0.6 or 1.0"
        )
    if temperature < 0:
        raise EvaluationError(f"temperature must be >= 0, got {temperature}")
    if reward in NOT_CORRECTNESS_REWARDS:
        raise EvaluationError(
            f"reward {reward!r} scores form or length, not correctness; evaluate with accuracy, "
            "boxed_exact, gsm8k_correctness, math_verifier, reasoning_gym or your own correctness reward"
        )
    if reward == "reasoning_gym" and TEMPLATE_ANSWER_STYLES[template] != "answer_tag":
        raise EvaluationError(
            f"reward reasoning_gym reads the answer from <answer> tags, but template {template!r} does not ask "
            "for them: use --template reasoning_gym (or answer_tag, xml_reasoning, think_answer)"
        )


def evaluate_model(
    model: Any,
    tokenizer: Any,
    problems: list[dict[str, Any]],
    template: str = "boxed",
    reward: str | Callable = "accuracy",
    max_new_tokens: int = 256,
    num_samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    batch_size: int = 16,
    system_prompt: str | None = None,
    few_shot: list[dict[str, str]] | None = None,
    autocast_dtype: torch.dtype | None = None,
    show_progress: bool = True,
    max_prompt_length: int = 512,
    engine: RolloutEngine | None = None,
    environment: EnvironmentConfig | None = None,
    reward_timeout: float | None = DEFAULT_REWARD_TIMEOUT,
    timeout_setting: str = "--reward-timeout",
) -> dict[str, Any]:
    """Generate for each problem, score with `reward`, and return the figures plus per-problem `predictions`.

        `problems` are rows of `rlvr.data.load_problems` (`question`, gold `answer`). Greedy decoding when
        `num_samples` is 1 and `temperature` 0; sampling otherwise, and then also `pass@1`, `pass@k` and `maj@k`.
        `batch_size` counts completions generated together (so `batch_size // num_samples` problems). Works on a
        model in train mode (switched to eval for generation and back) and on a peft model. `engine` generates
        instead of rlvr's loop on `model` (e.g. a `VLLMEngine`; `model` may then be None). With an `environment`
        other than single_turn each sample is an episode played as in training (tools, feedback, retries), scored on
        its messages, and the figures add its turns, tool calls, tool errors and how episodes ended (`env/*`). Each
    reward call may take `reward_timeout` seconds (a RewardTimeout names `timeout_setting`; None: no limit).

        >>> summary = evaluate_model(model, tokenizer, load_problems("gsm8k", "test", limit=50))  # doctest: +SKIP
        >>> summary["accuracy"], summary["predictions"][0]["extracted"]  # doctest: +SKIP
        (0.32, '18')
    """
    from rlvr.rewards import get_reward, math_equal

    check_settings(template, reward, num_samples, temperature, batch_size, max_new_tokens)
    if not problems:
        raise EvaluationError("no problems to evaluate")
    reward_fn = get_reward(reward) if isinstance(reward, str) else reward
    answer_style = TEMPLATE_ANSWER_STYLES[template]

    messages = [build_messages(row["question"], template, system_prompt, few_shot) for row in problems]
    pool = None
    if environment is not None and environment.name != "single_turn":
        from rlvr.environments import EnvironmentPool, make_environment_factory

        pool = EnvironmentPool(make_environment_factory(environment))
    texts = [render_prompt(tokenizer, m) for m in messages]
    # Longest prompts first: batches of similar length pad less, and running out of memory shows at once.
    order = sorted(range(len(problems)), key=lambda i: -len(texts[i]))
    per_batch = max(1, batch_size // num_samples)
    records: list[dict[str, Any] | None] = [None] * len(problems)
    prompts_cut, num_correct, num_done = 0, 0, 0
    progress = tqdm(
        total=len(problems), desc="eval", unit="problem", disable=not show_progress, dynamic_ncols=True
    )
    started = time.perf_counter()
    for start in range(0, len(order), per_batch):
        batch = order[start : start + per_batch]
        sampling = (
            num_samples,
            max_new_tokens,
            temperature,
            top_p,
            max_prompt_length,
            autocast_dtype,
            engine,
        )
        if pool is None:
            out = generate_completions(model, tokenizer, [texts[i] for i in batch], *sampling)
        else:
            rows, chats = [problems[i] for i in batch], [messages[i] for i in batch]
            out = play_episodes(model, tokenizer, rows, chats, environment, pool, *sampling)
        rewards = score_completions(
            reward_fn,
            [messages[i] for i in batch],
            out.messages or out.completions,
            [problems[i] for i in batch],
            num_samples,
            reward_timeout,
            timeout_setting,
        )
        prompts_cut += out.prompts_cut
        for j, index in enumerate(batch):
            part = slice(j * num_samples, (j + 1) * num_samples)
            record = problem_record(
                index,
                problems[index],
                out.completions[part],
                rewards[part],
                out.lengths[part],
                out.truncated[part],
                answer_style,
                math_equal,
            )
            if out.episodes is not None:
                record["episode"] = out.episodes[part][0]
                for sample, episode in zip(record.get("samples", []), out.episodes[part]):
                    sample["episode"] = episode
            records[index] = record
            num_correct += record["correct"]
        num_done += len(batch)
        progress.update(len(batch))
        progress.set_postfix(accuracy=f"{num_correct / num_done:.3f}")
    progress.close()
    seconds = time.perf_counter() - started
    predictions = [r for r in records if r is not None]
    figures = summarize(predictions, num_samples, seconds, prompts_cut)
    if pool is not None:
        from rlvr.rollout.episodes import record_stats

        figures.update(record_stats([s["episode"] for r in predictions for s in r.get("samples", [r])]))
    return {**figures, "predictions": predictions}
