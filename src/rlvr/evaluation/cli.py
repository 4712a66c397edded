"""The `rlvr eval`, `rlvr compare`, `rlvr plot` and `rlvr inspect` commands: arguments and runners.

`rlvr.cli` adds each command's arguments with `add_<name>_arguments(parser)` and runs it with
`run_<name>(args) -> exit status`. Errors the user can fix print one line and return 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from rlvr.argtypes import add_bf16_argument, count, positive_int, probability, seconds, seed, temperature
from rlvr.config.rewards import DEFAULT_REWARD_TIMEOUT
from rlvr.evaluation.output import json_safe, package_versions, write_run

USER_ERROR = 2


def _fail(command: str, exc: Exception) -> int:
    from rlvr.flags import COMMAND_FLAGS, in_command_terms

    message = in_command_terms(str(exc), COMMAND_FLAGS.get(command, {}))  # shared code's data.split: --split
    print(f"rlvr {command}: error: {message}", file=sys.stderr)
    return USER_ERROR


def _user_errors() -> tuple[type[Exception], ...]:
    from rlvr.config import ConfigError
    from rlvr.data import DataError
    from rlvr.environments import environment_errors
    from rlvr.evaluation.evaluate import EvaluationError
    from rlvr.models import ModelError
    from rlvr.rewards import RemoteRewardError, RewardError, RewardSpecError
    from rlvr.rollout.engine import EngineError

    return (
        ConfigError,
        DataError,
        ModelError,
        RewardSpecError,
        RemoteRewardError,
        RewardError,
        EvaluationError,
        EngineError,
        FileNotFoundError,
        *environment_errors(),
    )


# ------------------------------------------------------------------------------------------------- eval
def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="hub id, local Hugging Face directory, .gguf file, or shipped name (smollm2-135m-instruct)",
    )
    parser.add_argument(
        "--dataset",
        default="gsm8k",
        help="gsm8k, svamp, minerva_math, amc23, aime24 (from --data-dir), arithmetic and python_functions "
        "(generated), humaneval (the code extra), a .jsonl file, a hub id, or "
        "reasoning-gym tasks: reasoning_gym:chain_sum, reasoning_gym:chain_sum+leg_counting (a mix: figures "
        "per task too; needs pip install -e '.[tasks]')",
    )
    parser.add_argument("--split", default="test")
    parser.add_argument("--question-field", default=None, help="column of the question (default: guessed)")
    parser.add_argument("--answer-field", default=None, help="column of the gold answer (default: guessed)")
    parser.add_argument("--limit", type=positive_int, default=None, help="the first N problems only")
    parser.add_argument(
        "--data-dir", default=None, help="folder holding <dataset>/<split>.jsonl (default: $RLVR_DATA_DIR)"
    )
    parser.add_argument(
        "--task-options",
        default=None,
        metavar="YAML",
        help="reasoning-gym options, as in data.reasoning_gym (size, eval_size, seed, tasks): inline YAML, "
        "e.g. '{tasks: {chain_sum: {max_terms: 3}}}', or a YAML file (a training config's data.reasoning_gym "
        "is read), so the held-out split leaves out the instances trained on",
    )
    parser.add_argument(
        "--template",
        default=None,
        help="prompt format: boxed, xml_reasoning, think_answer, answer_tag, reasoning_gym, plain "
        "(default: reasoning_gym for reasoning-gym tasks, else boxed)",
    )
    parser.add_argument("--system-prompt", default=None, help="replace the template's system prompt")
    parser.add_argument(
        "--few-shot",
        default=None,
        metavar="YAML",
        help="example turns before each question, as data.few_shot: inline YAML, e.g. "
        '\'[{question: "What is 2 + 3?", answer: "\\boxed{5}"}]\', or a YAML file holding that list or a training '
        "config (its data.few_shot is read), so a run is evaluated on the prompt it trained on",
    )
    parser.add_argument(
        "--reward",
        default=None,
        help="correctness reward: a registered name "
        "(accuracy, boxed_exact, gsm8k_correctness, math_verifier, reasoning_gym) or module:function; a "
        "completion is correct when its reward is >= 1 (default: reasoning_gym, the task's own score, for "
        "reasoning-gym tasks, else accuracy)",
    )
    parser.add_argument(
        "--reward-timeout",
        type=seconds,
        default=DEFAULT_REWARD_TIMEOUT,
        metavar="SECONDS",
        help="seconds the reward may take on one batch before the evaluation stops with an error naming it "
        f"(default {DEFAULT_REWARD_TIMEOUT:g}, as rewards.timeout in training)",
    )
    parser.add_argument(
        "--num-samples",
        type=positive_int,
        default=1,
        help="k samples per problem: pass@k and maj@k (needs --temperature > 0)",
    )
    parser.add_argument("--temperature", type=temperature, default=0.0, help="0: greedy decoding")
    parser.add_argument("--top-p", type=probability, default=1.0)
    parser.add_argument("--max-new-tokens", type=positive_int, default=256)
    parser.add_argument(
        "--max-prompt-length", type=positive_int, default=512, help="prompt tokens kept (cut from the left)"
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="completions generated together (default: 16 with --engine hf, all with vllm, which schedules "
        "them itself)",
    )
    parser.add_argument(
        "--engine",
        choices=["hf", "vllm"],
        default="hf",
        help="hf: rlvr's decode loop; vllm: vLLM in this process (make setup-vllm), --bf16 or --dtype set "
        "its dtype",
    )
    parser.add_argument(
        "--vllm-kv-cache-gb",
        type=positive_int,
        default=2,
        help="vLLM's KV cache on a CPU, GiB (--engine vllm)",
    )
    parser.add_argument(
        "--vllm-enforce-eager",
        action="store_true",
        help="vLLM without torch.compile: starts in seconds, generates more slowly",
    )
    parser.add_argument(
        "--environment",
        default=None,
        metavar="NAME",
        help="play each problem as an episode of this environment, greedily, as training plays it: calculator, "
        "retry, python, module:Class or path/file.py:Class (docs/environments.md); adds turns, tool calls, tool "
        "errors and truncation to the figures",
    )
    parser.add_argument(
        "--environment-args",
        default=None,
        metavar="YAML",
        help="the environment's constructor arguments, inline YAML, e.g. '{reward: accuracy}'",
    )
    parser.add_argument("--max-turns", type=positive_int, default=4, help="replies per episode at most")
    parser.add_argument(
        "--max-total-tokens",
        type=positive_int,
        default=2048,
        help="tokens per episode at most, prompt included",
    )
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="weights dtype")
    add_bf16_argument(parser)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--seed", type=seed, default=0, help="sampling seed")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="for converted GGUF and shipped models (default: $RLVR_CACHE_DIR or ~/.cache/rlvr)",
    )
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--output",
        required=True,
        help="directory for summary.json and predictions.jsonl; one that already holds them is refused, "
        "before the model loads",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the result already in --output (other files stay)"
    )


def run_eval(args: argparse.Namespace) -> int:
    try:
        return _run_eval(args)
    except _user_errors() as exc:
        return _fail("eval", exc)


def _run_eval(args: argparse.Namespace) -> int:
    import torch

    from rlvr.config import ModelConfig
    from rlvr.data import load_problems
    from rlvr.data.reasoning_gym import is_reasoning_gym, read_task_options
    from rlvr.evaluation.evaluate import EvaluationError, check_settings, evaluate_model
    from rlvr.evaluation.metrics import wilson_interval
    from rlvr.evaluation.output import check_output
    from rlvr.models import load_policy, resolve_device, resolve_model_path
    from rlvr.models.precision import resolve_bf16
    from rlvr.outputs import ResultNotWritten, write_problem
    from rlvr.rewards import RemoteReward, get_reward

    output = Path(args.output)
    tasks = is_reasoning_gym(args.dataset)
    task_options = read_task_options(args.task_options) if tasks else None
    if args.task_options and not tasks:
        raise EvaluationError("--task-options is for reasoning-gym datasets (--dataset reasoning_gym:TASK)")
    args.template = args.template or ("reasoning_gym" if tasks else "boxed")
    args.reward = args.reward or ("reasoning_gym" if tasks else "accuracy")
    if args.engine == "vllm":
        from rlvr.rollout.engine import require_vllm

        require_vllm()  # before any model or data is loaded
    args.batch_size = args.batch_size or (16 if args.engine == "hf" else (args.limit or 100_000))
    check_settings(
        args.template, args.reward, args.num_samples, args.temperature, args.batch_size, args.max_new_tokens
    )
    check_output(output, args.overwrite)  # an earlier result, a file, no permission: before any work
    unwritable = write_problem(output)  # a full or read-only disk: found now, not after the evaluation
    if unwritable is not None:
        raise EvaluationError(
            f"--output {output} cannot be written: {unwritable}. Free space there, make it writable, or choose "
            "another --output"
        )
    few_shot = read_few_shot(args.few_shot)
    environment = environment_config(args)  # a bad environment fails here too
    reward_fn = get_reward(args.reward)  # an unknown reward fails here, not after the model has loaded
    if tasks or args.reward == "reasoning_gym":
        from rlvr.optional import require

        needed_by = f"--dataset {args.dataset}" if tasks else "--reward reasoning_gym"
        require("reasoning_gym", needed_by, "choose another --dataset" if tasks else "name another --reward")
    if isinstance(reward_fn, RemoteReward):
        reward_fn.check_reachable()
    torch.manual_seed(args.seed)
    problems = load_problems(
        args.dataset,
        args.split,
        data_dir=args.data_dir,
        question_field=args.question_field,
        answer_field=args.answer_field,
        limit=args.limit,
        reasoning_gym=task_options,
        field_keys=("--question-field", "--answer-field"),
    )
    # A problem without a gold answer cannot be right or wrong: it is left out of every figure, and counted.
    skipped = sum(row["answer"] is None for row in problems)
    problems = [row for row in problems if row["answer"] is not None]
    if skipped:
        s = "" if skipped == 1 else "s"
        print(
            f"rlvr eval: skipped {skipped} problem{s} without a gold answer (null or empty)", file=sys.stderr
        )
    if not problems:
        raise EvaluationError(
            f"no problem of {args.dataset} ({args.split}) has a gold answer: set the answer column of the data"
        )
    config = ModelConfig(
        name_or_path=args.model,
        dtype=args.dtype,
        device=args.device,
        cache_dir=args.cache_dir,
        trust_remote_code=args.trust_remote_code,
    )
    model_path = resolve_model_path(args.model, args.cache_dir)
    bf16, why = resolve_bf16(args.bf16, resolve_device(args.device))
    print(why, flush=True)
    engine = None
    if args.engine == "hf":
        model, tokenizer = load_policy(config, train=False)
        device = next(model.parameters()).device
    else:  # vLLM loads the weights itself: only the tokenizer and the EOS ids are read here
        from types import SimpleNamespace

        from transformers import GenerationConfig

        from rlvr.models import load_tokenizer
        from rlvr.rollout.generation import eos_token_ids
        from rlvr.rollout.vllm_engine import VLLMEngine

        model, device = None, resolve_device(args.device)
        tokenizer = load_tokenizer(model_path, args.trust_remote_code)
        # an episode's later turns read the whole conversation so far, up to --max-total-tokens
        one_reply = args.max_prompt_length + args.max_new_tokens
        longest = max(one_reply, args.max_total_tokens if args.environment else 0)
        span = "--max-prompt-length + --max-new-tokens" if longest == one_reply else "--max-total-tokens"
        try:
            generation = GenerationConfig.from_pretrained(model_path)
        except OSError:  # no generation_config.json: the tokenizer's EOS alone
            generation = None
        engine = VLLMEngine(
            model_path,
            tokenizer,
            args.max_prompt_length,
            eos_token_ids(tokenizer, SimpleNamespace(generation_config=generation)),
            dtype="bfloat16" if bf16 else args.dtype,
            max_model_len=longest,
            length_settings=span,
            device=device.type,
            cpu_kv_cache_gb=args.vllm_kv_cache_gb,
            enforce_eager=args.vllm_enforce_eager,
            seed=args.seed,
        )
    from rlvr.data.lengths import EVAL_LIMITS, counted, length_warnings, model_context, prompt_lengths

    lengths = prompt_lengths(tokenizer, problems, args.template, args.system_prompt, few_shot)
    context = model_context(model.config if model is not None else model_path, args.trust_remote_code)
    limits = (args.max_prompt_length, args.max_new_tokens, context, EVAL_LIMITS)
    for line in length_warnings(lengths, *limits, what=counted("prompts", len(problems))):
        print(f"rlvr eval: warning: {line}", file=sys.stderr)
    result = evaluate_model(
        model,
        tokenizer,
        problems,
        template=args.template,
        reward=reward_fn,
        max_new_tokens=args.max_new_tokens,
        num_samples=args.num_samples,
        temperature=args.temperature,
        top_p=args.top_p,
        batch_size=args.batch_size,
        system_prompt=args.system_prompt,
        few_shot=few_shot,
        autocast_dtype=torch.bfloat16 if bf16 else None,
        show_progress=not args.no_progress,
        max_prompt_length=args.max_prompt_length,
        engine=engine,
        environment=environment,
        reward_timeout=args.reward_timeout,
    )
    predictions = result.pop("predictions")
    correct = sum(p["correct"] for p in predictions)
    low, high = wilson_interval(correct, len(predictions))
    summary = {
        "metrics": result,
        "accuracy_ci95": [low, high],
        "model": args.model,
        "model_path": model_path,
        "dataset": args.dataset,
        "split": args.split,
        "limit": args.limit,
        **({"task_options": task_options} if tasks else {}),
        "skipped_without_gold": skipped,
        "data_dir": args.data_dir or os.environ.get("RLVR_DATA_DIR"),
        "template": args.template,
        "system_prompt": args.system_prompt,
        **({"few_shot": few_shot} if few_shot else {}),
        "reward": args.reward,
        "reward_timeout": args.reward_timeout,
        "engine": args.engine,
        **({"environment": dataclasses.asdict(environment)} if environment is not None else {}),
        "sampling": {
            "num_samples": args.num_samples,
            "temperature": args.temperature,
            "top_p": args.top_p if args.temperature > 0 else None,
            "greedy": args.temperature == 0,
            "max_new_tokens": args.max_new_tokens,
            "max_prompt_length": args.max_prompt_length,
            "batch_size": args.batch_size,
            "seed": args.seed,
        },
        "dtype": args.dtype,
        "bf16": bf16,
        "device": str(device),
        "versions": package_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    print(format_summary(summary))  # first: the figures are on the screen even when the disk fails below
    try:
        write_run(output, summary, predictions, replace=args.overwrite)
    except ResultNotWritten as exc:
        lost = "" if exc.rescued is not None else ": the results are lost; free space and evaluate again"
        print(
            f"rlvr eval: error: summary.json and predictions.jsonl could not be written in {output} ({exc.reason}); "
            f"no partial file was left there. {exc.outcome()}{lost}",
            file=sys.stderr,
        )
        return 1
    print(f"wrote {output / 'summary.json'} and {output / 'predictions.jsonl'}")
    return 0


def read_few_shot(text: str | None) -> list[dict[str, str]]:
    """`--few-shot`: the example turns [{question, answer}] from inline YAML or a YAML file holding the list or a
    whole training config (its `data.few_shot`); [] without one.

    >>> read_few_shot('[{question: "What is 2 + 3?", answer: 5}]')
    [{'question': 'What is 2 + 3?', 'answer': '5'}]
    """
    import yaml

    from rlvr.config import ConfigError
    from rlvr.config.loading import load_yaml

    if text is None:
        return []
    path = Path(text).expanduser()
    try:
        loaded = load_yaml(path.read_text() if path.is_file() else text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--few-shot is not valid YAML: {exc}") from None
    if isinstance(loaded, dict) and "data" in loaded:
        loaded = (loaded.get("data") or {}).get("few_shot") or []
    example = """'[{question: "What is 2 + 3?", answer: "5"}]'"""
    if not isinstance(loaded, list):
        raise ConfigError(
            f"--few-shot must be a list of {{question, answer}} turns, e.g. {example}, got {loaded!r}"
        )
    for index, shot in enumerate(loaded):
        if not isinstance(shot, dict) or set(shot) != {"question", "answer"}:
            raise ConfigError(
                f"--few-shot item {index} must have exactly question and answer, e.g. {example}"
            )
    return [{"question": str(shot["question"]), "answer": str(shot["answer"])} for shot in loaded]


def environment_config(args: argparse.Namespace) -> Any:
    """The `--environment` settings as an EnvironmentConfig (None without one), checked before any model loads."""
    if args.environment is None:
        return None
    import yaml

    from rlvr.config import ConfigError, EnvironmentConfig
    from rlvr.config.loading import load_yaml
    from rlvr.environments import EnvironmentPool, make_environment_factory

    try:
        options = load_yaml(args.environment_args) if args.environment_args else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"--environment-args is not valid YAML: {exc}") from None
    if not isinstance(options, dict):
        raise ConfigError(
            f"--environment-args must be a mapping, e.g. '{{reward: accuracy}}', got {options!r}"
        )
    config = EnvironmentConfig(
        name=args.environment, args=options, max_turns=args.max_turns, max_total_tokens=args.max_total_tokens
    )
    config.validate()
    EnvironmentPool(make_environment_factory(config))  # makes one: an unknown name or bad args fail now
    return config


def format_summary(summary: dict[str, Any]) -> str:
    metrics = summary["metrics"]
    low, high = summary["accuracy_ci95"]
    lines = [
        f"{summary['model']} on {summary['dataset']}/{summary['split']} ({metrics['num_problems']} problems, "
        f"template {summary['template']}, reward {summary['reward']})"
    ]
    width = max([20, *map(len, metrics)])  # per-task keys (accuracy/<task>) run longer
    for key, value in metrics.items():
        extra = f"   95% CI [{low:.4f}, {high:.4f}]" if key == "accuracy" else ""
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"  {key:<{width}} {shown}{extra}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- compare
def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "before", help="eval output directory of the baseline (summary.json, predictions.jsonl)"
    )
    parser.add_argument("after", help="eval output directory of the candidate")
    parser.add_argument("--show", type=count, default=5, help="flipped problems shown in each direction")
    parser.add_argument(
        "--bootstrap",
        type=count,
        default=0,
        metavar="N",
        help="also a paired bootstrap with N resamples (e.g. 10000)",
    )
    parser.add_argument("--seed", type=seed, default=0, help="bootstrap seed")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the comparison as JSON")


def run_compare(args: argparse.Namespace) -> int:
    from rlvr.evaluation.compare import compare_runs, format_comparison, load_run

    try:
        comparison = compare_runs(
            load_run(args.before), load_run(args.after), bootstrap=args.bootstrap, seed=args.seed
        )
    except _user_errors() as exc:
        return _fail("compare", exc)
    print(format_comparison(comparison, show=args.show))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(json_safe(comparison), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        print(f"wrote {path}")
    return 0


# ------------------------------------------------------------------------------------------------- plot
def add_plot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="training output directory holding metrics.jsonl (and config.yaml)")
    parser.add_argument(
        "--output", default=None, help="where the PNGs and index.html go (default: RUN_DIR/plots)"
    )


def run_plot(args: argparse.Namespace) -> int:
    from rlvr.evaluation.plot import plot_run

    try:
        written = plot_run(args.run_dir, args.output)
    except _user_errors() as exc:
        return _fail("plot", exc)
    for path in written:
        print(path)
    return 0


# ---------------------------------------------------------------------------------------------- inspect
def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", help="training output directory holding completions.jsonl (and metrics.jsonl)"
    )
    parser.add_argument("--step", type=positive_int, default=None, help="only this step")
    parser.add_argument("--last", type=count, default=5, help="steps shown when --step is not given (0: all)")
    parser.add_argument("--top", type=count, default=2, help="best and worst completions shown per step")
    parser.add_argument("--examples", type=count, default=3, help="flagged completions shown per flag")
    parser.add_argument(
        "--max-chars", type=positive_int, default=300, help="completion text shown, in characters"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run_inspect(args: argparse.Namespace) -> int:
    from rlvr.evaluation.inspect import format_report, inspect_run

    try:
        report = inspect_run(
            args.run_dir, step=args.step, last=args.last, top=args.top, examples=args.examples
        )
    except _user_errors() as exc:
        return _fail("inspect", exc)
    if args.json:
        print(json.dumps(json_safe(report), indent=2, ensure_ascii=False))
    else:
        print(format_report(report, max_chars=args.max_chars))
    return 0
