"""Worked examples before the question: a tool environment's `few_shot` (the calculator's built-in one), how
episodes render and train with them, `rlvr eval --few-shot`, and the tool proof's two configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from episode_helpers import ALTERNATING, CHATML, ScriptedEngine, build_tokenizer
from test_episodes import call, check_rows

from rlvr.config import ConfigError, EnvironmentConfig, GenerationConfig, GRPOConfig
from rlvr.environments import ToolSpecError, make_environment_factory, parse_tool_calls
from rlvr.environments.calculator import FEW_SHOT, CalculatorEnvironment, calculate
from rlvr.environments.tools import check_few_shot, with_few_shot
from rlvr.evaluation.cli import read_few_shot
from rlvr.rewards import extract_answer
from rlvr.rollout.chat_tokens import ChatFormat
from rlvr.rollout.episodes import run_episodes

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = {"role": "system", "content": "S"}
QUESTION = {"role": "user", "content": "Q"}
QUESTION6 = {"role": "user", "content": "What is 6 times 7?"}
SHOT = [{"role": "user", "content": "2 + 3?"}, {"role": "assistant", "content": "5"}]


def contents(messages):
    return [m["content"] for m in messages]


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ([SYSTEM, QUESTION], ["S", "2 + 3?", "5", "Q"]),
        ([QUESTION], ["2 + 3?", "5", "Q"]),  # no system message: the examples come first
        ([SYSTEM, SYSTEM, QUESTION], ["S", "S", "2 + 3?", "5", "Q"]),
        # the data's own few-shot pairs stay next to the question, after the tool examples
        (
            [SYSTEM, {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}, QUESTION],
            ["S", "2 + 3?", "5", "q1", "a1", "Q"],
        ),
    ],
)
def test_with_few_shot_places_the_examples_after_the_system_messages(prompt, expected):
    before = [dict(m) for m in prompt]
    assert contents(with_few_shot(prompt, SHOT)) == expected
    assert prompt == before  # the row's prompt is not changed in place


@pytest.mark.parametrize(
    "few_shot, message",
    [
        ("2 + 3 = 5", "must be a list of chat messages"),
        ({"role": "user", "content": "x"}, "must be a list of chat messages"),
        ([{"role": "system", "content": "x"}, *SHOT], "few_shot[0] must be a message with role"),
        ([{"role": "user", "content": 5}, SHOT[1]], "few_shot[0] (user) needs string content"),
        ([SHOT[1], *SHOT], "must start with a user message and end with an assistant reply"),
        (
            [*SHOT, {"role": "tool", "content": "5"}],
            "must start with a user message and end with an assistant",
        ),
    ],
)
def test_bad_few_shot_is_refused(few_shot, message):
    with pytest.raises(
        ToolSpecError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
    ):
        check_few_shot(few_shot)


def test_calculator_few_shot_option():
    prompt = [SYSTEM, QUESTION]
    assert CalculatorEnvironment().reset(prompt=prompt) is None  # default: the row's prompt as is
    assert CalculatorEnvironment(few_shot=False).reset(prompt=prompt) is None
    assert CalculatorEnvironment(few_shot=True).reset(prompt=prompt) == [SYSTEM, *FEW_SHOT, QUESTION]
    assert CalculatorEnvironment(few_shot=SHOT).reset(prompt=prompt) == [SYSTEM, *SHOT, QUESTION]
    # from a config, as environment.args, the way `rlvr train` and `rlvr eval --environment-args` make it
    env = make_environment_factory(EnvironmentConfig(name="calculator", args={"few_shot": True}))()
    assert env.reset(question="Q", prompt=prompt) == [SYSTEM, *FEW_SHOT, QUESTION]
    with pytest.raises(ToolSpecError, match="list of chat messages"):
        make_environment_factory(EnvironmentConfig(name="calculator", args={"few_shot": "yes"}))()


def test_the_built_in_examples_are_true():
    """Each example's call, run by the tool, gives the tool reply shown, and the answer boxes that reply."""
    assert len(FEW_SHOT) % 4 == 0
    for question, reply, result, answer in zip(*[iter(FEW_SHOT)] * 4):
        assert [m["role"] for m in (question, reply, result, answer)] == [
            "user",
            "assistant",
            "tool",
            "assistant",
        ]
        text, calls = parse_tool_calls(reply["content"])
        assert text == "" and len(calls) == 1 and calls[0].name == "calculate"
        assert calculate(**calls[0].arguments) == result["content"]
        assert extract_answer(answer["content"], "boxed") == result["content"]


def test_no_example_is_an_arithmetic_question():
    from rlvr.data.synthetic import arithmetic_problems

    questions = {
        row["question"] for split in ("train", "validation", "test") for row in arithmetic_problems(split)
    }
    assert not questions & {m["content"] for m in FEW_SHOT if m["role"] == "user"}


def calculator_reply(text: str, sample: int) -> str:
    """Call the calculator until a tool result follows the row's question, then answer with it."""
    after_question = text.rsplit("What is 6 times 7?", 1)[1]
    if "<tool_response>" not in after_question and "<|im_start|>tool" not in after_question:
        return call("calculate", expression="6 * 7")
    return "The answer is \\boxed{42}."


@pytest.mark.parametrize(
    "template, tool_turn", [(CHATML, "<|im_start|>tool\n312"), (ALTERNATING, "<tool_response>\n312")]
)
def test_episodes_with_examples_keep_the_token_rules(template, tool_turn):
    """The examples are prompt (never trained), rendered as the episode's own tool replies are: role tool, or a
    user message of <tool_response> blocks where the template has no tool role."""
    tokenizer = build_tokenizer(template)
    envs = [CalculatorEnvironment(few_shot=True) for _ in range(2)]
    # the tiny tokenizer spends many tokens on the examples: limits that keep the whole prompt (a prompt cut
    # from the left differs from every full render, so each turn would start a new row)
    limits = EnvironmentConfig(max_total_tokens=8192)
    engine = ScriptedEngine(tokenizer, calculator_reply, max_prompt_length=4096)
    chat = ChatFormat(tokenizer, [tokenizer.eos_token_id])
    rows = [{"question": "What is 6 times 7?", "answer": "42"}]
    episodes = run_episodes(
        engine,
        chat,
        envs,
        rows,
        [[QUESTION6]],
        2,
        GenerationConfig(max_completion_length=64),
        limits,
        [tokenizer.eos_token_id],
        max_prompt_length=4096,
        seeds=[0],
    )
    check_rows(episodes, engine, tokenizer)
    first_prompt = tokenizer.decode(engine.calls[0]["prompts"][0])
    assert tool_turn in first_prompt
    assert first_prompt.index(FEW_SHOT[0]["content"]) < first_prompt.index("What is 6 times 7?")
    for episode in episodes:
        assert episode.prompt[1:-1] == FEW_SHOT  # the conversation keeps role tool; its rendering differs
        assert not episode.prompt_cut and episode.count("tool_calls") == 1 and episode.done
        assert len(episode.rows) == 1
        row = episode.rows[0]
        trained = tokenizer.decode([t for t, m in zip(row.completion_ids, row.loss_mask) if m])
        assert (
            trained
            == call("calculate", expression="6 * 7") + "<|im_end|>The answer is \\boxed{42}.<|im_end|>"
        )
        assert FEW_SHOT[1]["content"] not in tokenizer.decode(row.completion_ids)  # examples: prompt only


# ----------------------------------------------------------------------------- rlvr eval --few-shot
PAIRS = [{"question": "What is 2 + 3?", "answer": "2 + 3 = 5. \\boxed{5}"}]


def test_read_few_shot(tmp_path):
    listed = tmp_path / "shots.yaml"
    listed.write_text(json.dumps(PAIRS))
    config = tmp_path / "train.yaml"
    config.write_text(json.dumps({"data": {"few_shot": PAIRS}, "training": {"max_steps": 1}}))
    assert read_few_shot(None) == []
    assert read_few_shot(json.dumps(PAIRS)) == PAIRS
    assert read_few_shot(str(listed)) == PAIRS
    assert read_few_shot(str(config)) == PAIRS  # a training config: its data.few_shot
    assert read_few_shot('[{question: "1 + 1?", answer: 2}]') == [{"question": "1 + 1?", "answer": "2"}]
    for bad in ("{question: q}", "[{question: q}]", "[{question: q, answer: a, extra: b}]", "[1"):
        with pytest.raises(ConfigError, match="--few-shot"):
            read_few_shot(bad)


def test_eval_puts_the_examples_in_the_prompt(tiny_model_dir, tmp_path):
    """The examples reach the prompt: with a prompt limit between the prompt's length without them and with
    them, every prompt is cut only when they are given."""
    from test_evaluate import REWARD_FILE, eval_args
    from transformers import AutoTokenizer

    from rlvr.data.prompts import build_messages, render_prompt
    from rlvr.evaluation import cli as ev

    torch.set_num_threads(1)
    problems = tmp_path / "problems.jsonl"
    problems.write_text(json.dumps({"question": "What is 7 + 5?", "answer": "12", "expect": 0}) + "\n")
    (tmp_path / "reward.py").write_text(REWARD_FILE)  # eval_args scores with it
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)

    def length(few_shot):
        text = render_prompt(tokenizer, build_messages("What is 7 + 5?", "boxed", None, few_shot))
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    limit = (length(None) + length(PAIRS)) // 2
    assert length(None) <= limit < length(PAIRS)
    common = ("--max-prompt-length", str(limit), "--max-new-tokens", "4", "--no-progress")
    plain = eval_args(tiny_model_dir, problems, tmp_path / "plain", *common)
    shots = eval_args(tiny_model_dir, problems, tmp_path / "shots", *common, "--few-shot", json.dumps(PAIRS))
    assert ev.run_eval(plain) == 0 and ev.run_eval(shots) == 0
    plain_summary = json.loads((tmp_path / "plain" / "summary.json").read_text())
    shots_summary = json.loads((tmp_path / "shots" / "summary.json").read_text())
    assert plain_summary["metrics"]["prompts_cut"] == 0 and "few_shot" not in plain_summary
    assert shots_summary["metrics"]["prompts_cut"] == 1 and shots_summary["few_shot"] == PAIRS


# ----------------------------------------------------------------------------- the proof's configs
def test_the_no_tool_twin_differs_by_the_tool_alone():
    """Same model, data, seed, sampling and budget; the twin's examples are the tool run's, computed inline."""
    tool = GRPOConfig.from_yaml(str(ROOT / "configs/calculator_proof.yaml"), []).to_dict()
    twin = GRPOConfig.from_yaml(str(ROOT / "configs/calculator_proof_no_tool.yaml"), []).to_dict()
    assert tool["environment"]["name"] == "calculator" and tool["environment"]["args"] == {"few_shot": True}
    assert twin["environment"]["name"] == "single_turn"
    for config in (tool, twin):
        del config["environment"], config["data"]["few_shot"], config["training"]["output_dir"]
    assert tool == twin
    shots = GRPOConfig.from_yaml(str(ROOT / "configs/calculator_proof_no_tool.yaml"), []).data.few_shot
    examples = list(zip(*[iter(FEW_SHOT)] * 4))
    assert [s["question"] for s in shots] == [q["content"] for q, *_ in examples]
    for shot, (_, reply, result, _) in zip(shots, examples):
        expression = parse_tool_calls(reply["content"])[1][0].arguments["expression"]
        assert shot["answer"].startswith(f"{expression} = {result['content']}.")
        assert extract_answer(shot["answer"], "boxed") == result["content"]


# ----------------------------------------------------------------------------- the proof's report
def test_tool_use_figures(tmp_path):
    """scripts/tools_proof_report.py's figures from predictions.jsonl: the share of episodes with a call, errors
    per call, and whether the answer is the tool's last good result."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "tools_proof_report", ROOT / "scripts" / "tools_proof_report.py"
    )
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)

    def sample(completion, correct, tool_replies, errors=0):
        messages = [{"role": "tool", "name": "calculate", "content": c} for c in tool_replies]
        episode = {"tool_calls": len(tool_replies), "tool_errors": errors, "messages": messages}
        return {"completion": completion, "correct": correct, "episode": episode}

    samples = [
        sample("The answer is \\boxed{42}.", True, ["42"]),  # called, answered with the result
        sample("The answer is \\boxed{41}.", False, ["42"]),  # called, answered something else
        sample(
            "The answer is \\boxed{7}.", False, ["7", "Error: division by zero"], errors=1
        ),  # the good one
        sample("It is 5.", True, []),  # no call
    ]
    (tmp_path / "predictions.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    figures = report.tool_use(tmp_path)
    assert figures["episodes"] == 4 and figures["with_a_call"] == 3 / 4
    assert figures["calls_per_episode"] == 4 / 4 and figures["errors_per_call"] == 1 / 4
    assert figures["answer_is_the_tool_result"] == 2 / 3
    assert figures["accuracy_with_a_call"] == 1 / 3 and figures["accuracy_without_a_call"] == 1.0
    (tmp_path / "predictions.jsonl").write_text(json.dumps({"completion": "5", "correct": True}) + "\n")
    assert report.tool_use(tmp_path) is None  # a run without episodes has no tool figures
