"""The tool proof's own figures (scripts/tools_proof.sh), besides `rlvr compare`'s.

`report DIR`: from each evaluation under DIR that played episodes, how the tool was used: the share of episodes
with a call, calls and errors, and whether the final answer is the tool's result; and from each training run,
the first and last steps' reward, calls and environment tokens. Written to DIR/tool_use.json and printed.

`masks --model M --output FILE`: plays a few calculator episodes on the real model (greedy, rlvr's own engine)
and checks the token rules on them: the loss mask's tokens are exactly the model's replies with their
end-of-turn tokens, the other completion tokens are exactly the chat template's tool turns, and prompt plus
completion is the full render of the conversation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def tool_use(eval_dir: Path) -> dict[str, Any] | None:
    """How the episodes of one `rlvr eval --environment` run used the tool; None for a run without episodes."""
    from rlvr.rewards import extract_answer, math_equal

    samples = [s for r in read_jsonl(eval_dir / "predictions.jsonl") for s in r.get("samples", [r])]
    if not samples or "episode" not in samples[0]:
        return None
    called = [s for s in samples if s["episode"]["tool_calls"] > 0]

    def uses_result(sample: dict[str, Any]) -> bool:
        results = [
            m["content"]
            for m in sample["episode"]["messages"]
            if m["role"] == "tool" and not m["content"].startswith("Error")
        ]
        answer = extract_answer(sample["completion"], "auto")
        return bool(results) and answer is not None and math_equal(answer, results[-1])

    n = len(samples)
    calls = sum(s["episode"]["tool_calls"] for s in samples)
    return {
        "episodes": n,
        "with_a_call": len(called) / n,
        "calls_per_episode": calls / n,
        "errors_per_call": sum(s["episode"]["tool_errors"] for s in samples) / calls if calls else None,
        "answer_is_the_tool_result": sum(map(uses_result, called)) / len(called) if called else None,
        "accuracy": sum(s["correct"] for s in samples) / n,
        "accuracy_with_a_call": sum(s["correct"] for s in called) / len(called) if called else None,
        "accuracy_without_a_call": (
            sum(s["correct"] for s in samples if s not in called) / (n - len(called))
            if n > len(called)
            else None
        ),
    }


def training(run_dir: Path, window: int = 5) -> dict[str, Any]:
    """Means over the first and last `window` steps of a training run's metrics.jsonl."""
    steps = [m for m in read_jsonl(run_dir / "metrics.jsonl") if "reward" in m]
    keys = (
        "reward",
        "env/turns",
        "env/tool_calls",
        "env/tool_errors",
        "env/environment_tokens",
        "step_seconds",
    )

    def mean(rows: list[dict[str, Any]], key: str) -> float | None:
        values = [r[key] for r in rows if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    return {
        "steps": len(steps),
        "median_step_seconds": statistics.median(s["step_seconds"] for s in steps) if steps else None,
        f"first_{window}": {k: mean(steps[:window], k) for k in keys},
        f"last_{window}": {k: mean(steps[-window:], k) for k in keys},
    }


def report(directory: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"evaluations": {}, "training": {}}
    for summary in sorted(directory.glob("*/summary.json")):
        figures = tool_use(summary.parent)
        if figures is not None:
            out["evaluations"][summary.parent.name] = figures
    for metrics in sorted(directory.glob("*/metrics.jsonl")):
        out["training"][metrics.parent.name] = training(metrics.parent)
    return out


def check_masks(model_name: str, num_problems: int = 8) -> dict[str, Any]:
    """Play `num_problems` held-out arithmetic problems as calculator episodes and check their tokens."""
    import torch

    from rlvr.config import EnvironmentConfig, GenerationConfig, ModelConfig
    from rlvr.data import load_problems
    from rlvr.data.prompts import build_messages
    from rlvr.environments import EnvironmentPool, make_environment_factory
    from rlvr.models import load_policy
    from rlvr.rollout.chat_tokens import ChatFormat
    from rlvr.rollout.engine import HFEngine
    from rlvr.rollout.episodes import episode_batch, run_episodes
    from rlvr.rollout.generation import eos_token_ids

    model, tokenizer = load_policy(ModelConfig(name_or_path=model_name))
    rows = load_problems("arithmetic", "test", limit=num_problems)
    limits = EnvironmentConfig(name="calculator", args={"few_shot": True}, max_turns=3, max_total_tokens=1024)
    eos = eos_token_ids(tokenizer, model)
    chat = ChatFormat(tokenizer, eos)
    envs = EnvironmentPool(make_environment_factory(limits)).take(len(rows))
    prompts = [build_messages(row["question"]) for row in rows]
    episodes = run_episodes(
        HFEngine(model, tokenizer, 768),
        chat,
        envs,
        rows,
        prompts,
        1,
        GenerationConfig(max_completion_length=64),
        limits,
        eos,
        768,
        greedy=True,
    )
    batch = episode_batch(episodes, tokenizer.pad_token_id)
    end_of_turn = tokenizer.decode([eos[0]])
    checked = []
    for index, episode in enumerate(episodes):
        rows_of = (batch.episode_index == index).nonzero().flatten().tolist()
        trained, environment, rendered = "", "", True
        for number, r in enumerate(rows_of):
            mask, completion = batch.completion_mask[r].bool(), batch.completion_ids[r]
            loss = batch.loss_mask[r].bool()
            trained += tokenizer.decode(completion[loss])
            environment += tokenizer.decode(completion[mask & ~loss])
            whole = torch.cat([batch.prompt_ids[r][batch.prompt_mask[r].bool()], completion[mask]])
            if number == len(rows_of) - 1:  # the last row holds the whole conversation
                full = chat.render(episode.messages, episode.tools, generation=False)
                rendered = full.startswith(tokenizer.decode(whole))
        replies = "".join(turn.message["content"] + end_of_turn for turn in episode.turns)
        tool_turns = [m for m in episode.completion_messages if m["role"] != "assistant"]
        checked.append(
            {
                "question": rows[index]["question"],
                "rows": len(rows_of),
                "tool_calls": episode.count("tool_calls"),
                "trained_is_the_replies": trained == replies,
                "environment_tokens": environment,
                "environment_is_the_tool_turns": all(m["content"] in environment for m in tool_turns)
                and (bool(environment) == bool(tool_turns)),
                "prompt_and_completion_is_the_render": rendered,
                "trained": trained,
            }
        )
    keys = ("trained_is_the_replies", "environment_is_the_tool_turns", "prompt_and_completion_is_the_render")
    return {"model": model_name, "all_hold": all(c[k] for c in checked for k in keys), "episodes": checked}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    summary = commands.add_parser("report", help="tool use of DIR's evaluations and training runs")
    summary.add_argument("directory", type=Path)
    masks = commands.add_parser("masks", help="check the token masks of a few episodes on a real model")
    masks.add_argument("--model", required=True)
    masks.add_argument("--num-problems", type=int, default=8)
    masks.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "report":
        result = report(args.directory)
        (args.directory / "tool_use.json").write_text(json.dumps(result, indent=2) + "\n")
    else:
        result = check_masks(args.model, args.num_problems)
        args.output.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0 if args.command == "report" or result["all_hold"] else 1


if __name__ == "__main__":
    sys.exit(main())
