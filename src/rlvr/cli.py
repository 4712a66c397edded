"""The `rlvr` command: train, generate, prepare-model, eval, compare, plot, inspect, serve-rewards."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rlvr import __version__
from rlvr.argtypes import add_bf16_argument, positive_int, seed, temperature


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        required=True,
        help="YAML file (see configs/); kept in output_dir as config.yaml, it is never overwritten (the run's "
        "resolved config then goes to config.resolved.yaml)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help="config overrides, e.g. training.max_steps=10 generation.num_generations=8",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest complete checkpoint in output_dir (a finished run: nothing to do)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the previous run in output_dir first (training.overwrite_output_dir=true)",
    )


def run_train(args: argparse.Namespace) -> int:
    from rlvr.config import GRPOConfig
    from rlvr.distributed import exit_rank
    from rlvr.trainer import GRPOTrainer
    from rlvr.trainer.rundir import RunComplete, check_output_dir, check_resume

    overrides = [*args.overrides, "training.overwrite_output_dir=true"] if args.overwrite else args.overrides
    config = GRPOConfig.from_yaml(args.config, overrides)
    # before the model loads: a directory holding another run is refused in a second, not a minute
    t = config.training
    check_output_dir(t.output_dir, args.resume, t.overwrite_output_dir)
    if args.resume:
        try:
            check_resume(Path(t.output_dir), t.max_steps)
        except RunComplete as done:  # a finished run: nothing to do, and nothing is touched
            print(done)
            return 0
    check_before_model(config)
    trainer = GRPOTrainer(config)
    final = trainer.train(resume=args.resume)
    if trainer.dist.is_main:
        print(f"final model: {final}")
    exit_rank(0)
    return 0


def check_before_model(config: Any) -> None:
    """What a training run can check without a model, beyond the config's own validation and the output
    directory's (`rundir.check_output_dir`): the model path is not a LoRA adapter, evaluation has its data,
    settings that nothing reads are named, and every remote reward server answers. (The rewards and the training data are resolved by the trainer, also before the model.)"""
    from rlvr.config import ConfigError
    from rlvr.models import check_trainable
    from rlvr.rewards import RemoteReward

    check_trainable(config.model)
    t = config.training
    if t.eval_steps > 0 and t.eval_dataset is None:
        raise ConfigError(
            f"training.eval_steps={t.eval_steps} but training.eval_dataset is not set, so nothing would be "
            "evaluated: set training.eval_dataset (e.g. gsm8k, with eval_split test), or eval_steps=0"
        )
    from rlvr.config.unused import unused_settings

    unused = unused_settings(config)
    if unused and os.environ.get("RANK", "0") == "0":  # one process says it for all
        print(
            f"rlvr train: warning: set, but nothing in this run reads them: {'; '.join(unused)}",
            file=sys.stderr,
        )
    r = config.rewards
    for spec in r.functions:
        if spec.startswith("remote:"):
            RemoteReward(spec[len("remote:") :], r.remote_timeout, r.remote_retries).check_reachable()


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="hub id, local directory, .gguf file, or shipped name")
    parser.add_argument("--prompt", required=True, help="the question")
    parser.add_argument(
        "--template",
        default="boxed",
        help="prompt format: boxed, xml_reasoning, think_answer, answer_tag, reasoning_gym, plain",
    )
    parser.add_argument("--system-prompt", default=None, help="replace the template's system prompt")
    parser.add_argument("--max-new-tokens", type=positive_int, default=256)
    parser.add_argument("--temperature", type=temperature, default=0.0, help="0 for greedy decoding")
    parser.add_argument("--num-samples", type=positive_int, default=1)
    add_bf16_argument(parser)
    parser.add_argument("--seed", type=seed, default=0)


def run_generate(args: argparse.Namespace) -> int:
    import torch

    from rlvr.config import ConfigError, GenerationConfig, ModelConfig
    from rlvr.data import TEMPLATES, build_messages, render_prompt
    from rlvr.models import load_policy
    from rlvr.models.precision import resolve_bf16
    from rlvr.rollout import decode_completions, sample

    if args.template not in TEMPLATES:
        raise ConfigError(f"unknown --template {args.template!r}; choose one of {', '.join(TEMPLATES)}")
    if args.num_samples > 1 and args.temperature == 0:
        raise ConfigError(
            f"--num-samples {args.num_samples} with greedy decoding (--temperature 0) prints one completion "
            f"{args.num_samples} times; set a sampling temperature, e.g. --temperature 1.0"
        )
    torch.manual_seed(args.seed)
    model, tokenizer = load_policy(ModelConfig(name_or_path=args.model), train=False)
    bf16, why = resolve_bf16(args.bf16, next(model.parameters()).device)
    print(why, file=sys.stderr)  # stdout is the completions
    text = render_prompt(tokenizer, build_messages(args.prompt, args.template, args.system_prompt))
    greedy = args.temperature == 0
    config = GenerationConfig(
        num_generations=args.num_samples,
        max_completion_length=args.max_new_tokens,
        temperature=1.0 if greedy else args.temperature,
    )
    out = sample(
        model,
        tokenizer,
        [text],
        config,
        args.num_samples,
        max_prompt_length=4096,
        autocast_dtype=torch.bfloat16 if bf16 else None,
        greedy=greedy,
    )
    for i, completion in enumerate(decode_completions(tokenizer, out.completion_ids, out.completion_mask)):
        if args.num_samples > 1:
            print(f"--- sample {i + 1}")
        print(completion)
    return 0


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    from rlvr.models import SHIPPED

    parser.add_argument("name", help=f"shipped model ({', '.join(SHIPPED)}) or a .gguf file")
    parser.add_argument("--cache-dir", default=None, help="default: $RLVR_CACHE_DIR or ~/.cache/rlvr")
    parser.add_argument("--force", action="store_true", help="fetch and convert again")


def run_prepare(args: argparse.Namespace) -> int:
    from rlvr.models import prepare_model
    from rlvr.models.prepare import converted_gguf_dir

    if args.name.endswith(".gguf"):
        print(converted_gguf_dir(args.name, args.cache_dir))
    else:
        print(prepare_model(args.name, args.cache_dir, force=args.force))
    return 0


def _evaluation(name: str) -> tuple[Callable, Callable]:
    from rlvr.evaluation import cli as ev

    return getattr(ev, f"add_{name}_arguments"), getattr(ev, f"run_{name}")


def _server() -> tuple[Callable, Callable]:
    from rlvr.server import cli as srv

    return srv.add_arguments, srv.run


def _rollout_server() -> tuple[Callable, Callable]:
    from rlvr.rollout import server

    return server.add_arguments, server.run


COMMANDS: dict[str, tuple[str, Callable[[], tuple[Callable, Callable]]]] = {
    "train": ("run GRPO training from a YAML config", lambda: (add_train_arguments, run_train)),
    "generate": ("try a model on one question", lambda: (add_generate_arguments, run_generate)),
    "prepare-model": (
        "fetch and convert a shipped model, print its directory",
        lambda: (add_prepare_arguments, run_prepare),
    ),
    "eval": ("measure a model on held-out problems", lambda: _evaluation("eval")),
    "compare": ("compare two eval runs with a paired test", lambda: _evaluation("compare")),
    "plot": ("plot a training run's metrics to PNGs and index.html", lambda: _evaluation("plot")),
    "inspect": (
        "show best/worst completions of a run and flag reward hacking",
        lambda: _evaluation("inspect"),
    ),
    "serve-rewards": ("serve reward functions over HTTP", _server),
    "serve-rollouts": ("serve a vLLM rollout engine that training processes sample from", _rollout_server),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlvr", description="GRPO fine-tuning with verifiable rewards.")
    parser.add_argument("--version", action="version", version=f"rlvr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, factory) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if command in (name, None):  # import a command's dependencies only when it is used or listed
            add, run = factory()
            add(sub_parser)
            sub_parser.set_defaults(run=run)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, what schedulers and `kill` send, raised as Ctrl-C is: every `finally` runs (reward workers are
    stopped, a checkpoint half written is removed) and the command ends with a message, not a traceback."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises `Terminated` in the main thread; a second one ends the process at once."""

    def terminate(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the clean-up itself may be what hangs
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread (main() called from a thread): signals stay as they are
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(command) if command else build_parser("")
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 1
    from rlvr.config import ConfigError
    from rlvr.data import DataError
    from rlvr.environments import environment_errors
    from rlvr.flags import COMMAND_FLAGS, in_command_terms
    from rlvr.models import ModelError
    from rlvr.rewards import RemoteRewardError, RewardError, RewardSpecError
    from rlvr.rollout.engine import EngineError
    from rlvr.trainer.trainer import TrainingError

    command_words = COMMAND_FLAGS.get(args.command, {})
    user_errors = (
        ConfigError,
        DataError,
        ModelError,
        RewardError,
        RewardSpecError,
        RemoteRewardError,
        EngineError,
        *environment_errors(),
    )
    try:
        with sigterm_as_interrupt():
            return args.run(args)
    except user_errors as exc:  # shared code names config keys: said in the words of the command that ran
        print(f"rlvr {args.command}: error: {in_command_terms(str(exc), command_words)}", file=sys.stderr)
        return 2
    except TrainingError as exc:  # not the user's input: the run itself failed, its saved work intact
        print(f"rlvr {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:
        # Ctrl-C or SIGTERM: no traceback; a checkpoint is either whole or absent (written aside, then renamed)
        hint = (
            " Its finished checkpoints are whole: continue with --resume." if args.command == "train" else ""
        )
        what = "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"
        print(f"rlvr {args.command}: {what}.{hint}", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT)
    except BrokenPipeError:  # `rlvr ... | head` closed the pipe: not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
