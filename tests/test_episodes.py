"""Episodes on a scripted engine: the token rules (prompts as given, masks, log-probs, new rows), the limits,
and the template difference against TRL's own function."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
import torch
from episode_helpers import (
    ALTERNATING,
    CHATML,
    COUNTING,
    TRIMMING,
    ScriptedEngine,
    build_tokenizer,
    logp_at,
    trl_template,
)

from rlvr.config import GenerationConfig
from rlvr.environments import Environment, EnvironmentConfig, SingleTurnEnvironment, Step, ToolEnvironment
from rlvr.environments.calculator import CalculatorEnvironment
from rlvr.environments.retry import RetryEnvironment
from rlvr.rollout.chat_tokens import ChatFormat, ChatFormatError, describe_tools
from rlvr.rollout.episodes import episode_batch, episode_stats, run_episodes

QWEN2_5 = trl_template("qwen2_5")
QWEN3 = trl_template("qwen3")
needs_trl = pytest.mark.skipif(
    QWEN2_5 is None, reason="TRL (its chat templates and helpers) is not installed"
)

QUESTION = [{"role": "user", "content": "What is 6 times 7?"}]


def call(name: str, **arguments) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


def play(tokenizer, envs, reply, rows=None, prompts=None, g=None, limits=None, max_completion=64, **kwargs):
    """Run episodes with a scripted engine; returns (episodes, engine, chat)."""
    g = g or len(envs)
    rows = rows or [{"question": "What is 6 times 7?", "answer": "42"}] * (len(envs) // g)
    prompts = prompts or [QUESTION] * len(rows)
    limits = limits or EnvironmentConfig()
    engine = ScriptedEngine(tokenizer, reply)
    chat = ChatFormat(tokenizer, [tokenizer.eos_token_id], limits.tool_prompt, limits.tool_role)
    episodes = run_episodes(
        engine,
        chat,
        envs,
        rows,
        prompts,
        g,
        GenerationConfig(max_completion_length=max_completion),
        limits,
        [tokenizer.eos_token_id],
        max_prompt_length=kwargs.pop("max_prompt_length", 512),
        seeds=kwargs.pop("seeds", list(range(len(rows)))),
        **kwargs,
    )
    return episodes, engine, chat


def calculator_reply(text: str, sample: int) -> str:
    """Call the calculator until a result is in the prompt, then answer with it."""
    if "<tool_response>" not in text and "<|im_start|>tool" not in text:
        return call("calculate", expression="6 * 7")
    return "The answer is \\boxed{42}."


def given_prompts(engine) -> list[list[int]]:
    """Every prompt the engine was given, one per sample, in order."""
    return [p for c in engine.calls for p in c["prompts"] for _ in range(c["num_samples"])]


def check_rows(episodes, engine, tokenizer) -> None:
    """The token rules every episode keeps, whatever the template and environment."""
    given = given_prompts(engine)
    for episode in episodes:
        for turn in episode.turns:
            row = episode.rows[turn.row]
            start, end = turn.span
            turn_prompt = row.prompt_ids + row.completion_ids[:start]
            assert turn_prompt in given  # each turn's prompt is exactly what the engine got
            for pos in range(start, end):  # sampled: mask 1, the log-prob drawn after that very prompt
                assert row.loss_mask[pos] == 1
                assert row.logps[pos] == pytest.approx(logp_at(len(row.prompt_ids) + pos))
        for row in episode.rows:
            sampled = {p for s, e in row.turn_spans for p in range(s, e)}
            assert [row.loss_mask[p] for p in range(len(row.completion_ids))] == [
                int(p in sampled) for p in range(len(row.completion_ids))
            ]
            assert all(row.logps[p] == 0.0 for p in range(len(row.completion_ids)) if p not in sampled)


# ----------------------------------------------------------------------------- the template difference, TRL's
def trl_suffix(tokenizer, tool_messages):
    from trl.trainer.grpo_trainer import GRPOTrainer

    trainer = SimpleNamespace(
        processing_class=tokenizer,
        chat_template=None,
        chat_template_kwargs={},
        _is_vlm=False,
        _tokenizer=tokenizer,
    )
    return GRPOTrainer._get_tool_suffix_ids(trainer, tool_messages)


@needs_trl
@pytest.mark.parametrize("template", ["chatml", "qwen2_5", "qwen3"])
@pytest.mark.parametrize("replies", [["42"], ["42", "Error: unknown tool 'x'"]])
def test_template_suffix_equals_trls(template, replies):
    tokenizer = build_tokenizer({"chatml": CHATML, "qwen2_5": QWEN2_5, "qwen3": QWEN3}[template])
    tool_messages = [{"role": "tool", "name": "calculate", "content": r} for r in replies]
    # TRL's own dummy conversation: its suffix does not depend on what came before
    dummy = [
        {"role": "user", "content": "dummy"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "calculate", "arguments": {}}}],
        },
    ]
    chat = ChatFormat(tokenizer, [tokenizer.eos_token_id])
    ours = chat.template_suffix(dummy, tool_messages, [])
    if template == "qwen3":  # not prefix-preserving here (it adds an empty <think> block): both refuse
        with pytest.raises(ValueError, match="not a prefix"):
            trl_suffix(tokenizer, tool_messages)
        assert ours is None
        return
    assert ours == trl_suffix(tokenizer, tool_messages)
    assert replies[-1] in tokenizer.decode(ours)


@needs_trl
def test_tool_description_is_qwen2_5s_own_text():
    tokenizer = build_tokenizer(QWEN2_5)
    tools = CalculatorEnvironment().tools
    rendered = tokenizer.apply_chat_template(QUESTION, tools=tools, tokenize=False)
    assert describe_tools(tools) in rendered  # a template without tools= shows the model the same words


@pytest.mark.parametrize(
    "template, template_tools, tool_role",
    [
        (CHATML, False, "tool"),  # SmolLM2's: no tools=, but it renders any role
        (
            ALTERNATING,
            False,
            "user",
        ),  # Gemma-like: a tool message raises, so tool replies go as user messages
        ("qwen2_5", True, "tool"),
    ],
)
def test_probes(template, template_tools, tool_role):
    template = trl_template(template) if template == "qwen2_5" else template
    if template is None:
        pytest.skip("TRL is not installed")
    chat = ChatFormat(build_tokenizer(template), [2])
    assert (chat.template_tools, chat.tool_role) == (template_tools, tool_role)


def test_forced_tool_settings_the_template_cannot_render_are_errors():
    with pytest.raises(ChatFormatError, match="tool_prompt=system"):
        ChatFormat(build_tokenizer(CHATML), [2], tool_prompt="template")
    with pytest.raises(ChatFormatError, match="tool_role=user"):
        ChatFormat(build_tokenizer(ALTERNATING), [2], tool_role="tool")


# ----------------------------------------------------------------------------- one turn: today's path
def test_single_turn_equals_the_engines_own_generate():
    tokenizer = build_tokenizer(CHATML)
    replies = [
        "The answer is \\boxed{42}.",
        [],
        "42 " * 40,
    ]  # an answer, nothing at all, one cut at 16 tokens
    reply = lambda text, j: replies[j]  # noqa: E731
    long_question = [{"role": "user", "content": "What is 6 times 7? " * 12}]  # over max_prompt_length
    prompts = [QUESTION, long_question]
    config = GenerationConfig(max_completion_length=16)
    seeds = [11, 12]
    expected = ScriptedEngine(tokenizer, reply, max_prompt_length=40).generate(
        [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts],
        3,
        config,
        seeds,
    )
    envs = [SingleTurnEnvironment() for _ in range(6)]
    episodes, engine, _ = play(
        tokenizer,
        envs,
        reply,
        rows=[{}, {}],
        prompts=prompts,
        g=3,
        max_completion=16,
        seeds=seeds,
        max_prompt_length=40,
    )
    batch = episode_batch(episodes, tokenizer.pad_token_id)
    e = expected
    prompt_ids, prompt_mask, completion_ids, completion_mask = (
        e.prompt_ids,
        e.prompt_mask,
        e.completion_ids,
        e.completion_mask,
    )
    truncated, cut, logps = e.truncated, e.num_prompts_cut, e.sampling_logps
    assert torch.equal(batch.prompt_ids, prompt_ids) and torch.equal(batch.prompt_mask, prompt_mask)
    assert torch.equal(batch.completion_ids, completion_ids) and torch.equal(
        batch.completion_mask, completion_mask
    )
    assert torch.equal(batch.truncated, truncated) and batch.num_prompts_cut == cut == 1
    assert torch.equal(batch.sampling_logps, logps)
    assert torch.equal(batch.loss_mask, batch.completion_mask)  # one turn: every completion token is sampled
    assert len(engine.calls) == 1 and engine.calls[0]["num_samples"] == 3
    assert engine.calls[0]["seeds"] == [11 * 3, 12 * 3]  # seeded as TokenEngine.generate seeds
    assert [e.truncation for e in episodes] == [None, None, "turn_length"] * 2
    assert episodes[0].completion_text == "The answer is \\boxed{42}."


# ----------------------------------------------------------------------------- tools
@pytest.mark.parametrize("template", ["chatml", "qwen2_5"])
def test_calculator_episode_tokens(template):
    source = CHATML if template == "chatml" else QWEN2_5
    if source is None:
        pytest.skip("TRL is not installed")
    tokenizer = build_tokenizer(source)
    envs = [CalculatorEnvironment() for _ in range(4)]
    episodes, engine, chat = play(
        tokenizer, envs, calculator_reply, rows=[{}, {}], prompts=[QUESTION] * 2, g=2
    )
    check_rows(episodes, engine, tokenizer)
    assert len(engine.calls) == 2  # one call per wave: all episodes' turns batched
    assert engine.calls[1]["num_samples"] == 1 and len(engine.calls[1]["prompts"]) == 4
    for episode in episodes:
        assert (episode.done, episode.truncation, len(episode.rows), len(episode.turns)) == (True, None, 1, 2)
        assert episode.count("tool_calls") == 1 and episode.count("tool_errors") == 0
        assert [m["role"] for m in episode.completion_messages] == ["assistant", "tool", "assistant"]
        row = episode.rows[0]
        # the whole row is what the template renders for the conversation: nothing re-tokenized, nothing lost
        final = chat.render(episode.messages, episode.tools, generation=False)
        assert tokenizer.decode(row.prompt_ids + row.completion_ids) + "\n" == final
        environment_text = tokenizer.decode([t for t, m in zip(row.completion_ids, row.loss_mask) if m == 0])
        assert "42" in environment_text and "boxed" not in environment_text
    system = episodes[0].prompt[0]
    assert (system["role"] == "system" and "calculate" in system["content"]) == (template == "chatml")


def test_tool_replies_as_user_messages_where_the_template_has_no_tool_role():
    tokenizer = build_tokenizer(ALTERNATING)
    episodes, engine, chat = play(tokenizer, [CalculatorEnvironment()], calculator_reply)
    check_rows(episodes, engine, tokenizer)
    row = episodes[0].rows[0]
    assert "<|im_start|>user\n<tool_response>\n42\n</tool_response><|im_end|>" in tokenizer.decode(
        row.completion_ids
    )
    assert (
        episodes[0].completion_messages[1]["role"] == "tool"
    )  # the conversation keeps the tool's own message


def test_tool_errors_are_replies_and_counted():
    tokenizer = build_tokenizer(CHATML)

    def boom(x: int) -> str:
        """Fail.

        Args:
            x: Anything.
        """
        raise RuntimeError("out of order")

    def reply(text, j):
        if "<|im_start|>tool" in text:
            return "I give up."
        calls = [
            "<tool_call>{bad json</tool_call>",
            call("nope"),
            call("boom", x="7"),  # a string for an integer
            call("boom", x=7),
            call("boom", x=1, y=2),
        ]
        return " ".join(calls)

    episodes, engine, _ = play(tokenizer, [ToolEnvironment([boom])], reply, max_completion=512)
    check_rows(episodes, engine, tokenizer)
    step = episodes[0].turns[0].step
    contents = [m["content"] for m in step.messages]
    assert all(c.startswith("Error: ") for c in contents)
    assert "malformed tool call" in contents[0] and "unknown tool 'nope'" in contents[1]
    assert "argument x must be an integer" in contents[2] and "RuntimeError: out of order" in contents[3]
    assert "unknown argument y" in contents[4]
    assert (step.info["tool_calls"], step.info["tool_errors"]) == (5, 5)
    assert episodes[0].done and len(episodes[0].turns) == 2  # the run went on after the errors


def test_tool_timeout_is_an_error_reply_and_the_episode_goes_on():
    tokenizer = build_tokenizer(CHATML)

    def slow(seconds: float) -> str:
        """Sleep.

        Args:
            seconds: How long.
        """
        time.sleep(seconds)
        return "woke"

    reply = lambda text, j: "done" if "<|im_start|>tool" in text else call("slow", seconds=2.0)  # noqa: E731
    started = time.monotonic()
    episodes, _, _ = play(tokenizer, [ToolEnvironment([slow], tool_timeout=0.2)], reply)
    assert time.monotonic() - started < 1.5  # the step did not wait for the tool
    step = episodes[0].turns[0].step
    assert step.messages[0]["content"] == "Error: slow did not finish within 0.2 s"
    assert step.info["tool_timeouts"] == 1 and episodes[0].done


def test_max_tool_calls_ends_the_episode_after_the_calls_within_it():
    tokenizer = build_tokenizer(CHATML)
    reply = lambda text, j: call("calculate", expression="1 + 1") + call("calculate", expression="2 + 2")  # noqa: E731
    limits = EnvironmentConfig(max_tool_calls=3, max_turns=10)
    episodes, _, _ = play(
        tokenizer, [CalculatorEnvironment(max_tool_calls=3)], reply, limits=limits, max_completion=256
    )
    episode = episodes[0]
    assert (len(episode.turns), episode.count("tool_calls"), episode.truncation) == (2, 3, "max_tool_calls")
    assert len(episode.turns[1].step.messages) == 1  # of the second reply's two calls, one was run


# ----------------------------------------------------------------------------- limits
class Echo(Environment):
    """Answers every reply with `text`, never done."""

    def __init__(self, text="Go on.", sleep=0.0):
        self.text, self.sleep = text, sleep

    def step(self, message):
        time.sleep(self.sleep)
        return Step([{"role": "user", "content": self.text}], done=False, reward=0.5)


def test_max_turns():
    tokenizer = build_tokenizer(CHATML)
    episodes, engine, _ = play(
        tokenizer, [Echo(), Echo()], lambda t, j: "ok", limits=EnvironmentConfig(max_turns=3)
    )
    check_rows(episodes, engine, tokenizer)
    assert [(len(e.turns), e.truncation, e.done) for e in episodes] == [(3, "max_turns", False)] * 2
    assert episodes[0].step_rewards == [0.5] * 3 and episodes[0].reward == 1.5  # no get_reward: steps summed
    assert len(engine.calls) == 3


@pytest.mark.parametrize(
    "replies, plus, turns, cut, reason",
    [
        (0, 3, 1, True, "max_total_tokens"),  # the first reply is cut at the budget, 3 tokens in
        (
            1,
            0,
            1,
            False,
            "max_total_tokens",
        ),  # the first reply fits, the message after it would fill the budget
        (1, 1, 2, True, "max_total_tokens"),  # ... one token more: room for 1 token of the second reply
        (9, 0, 4, False, "max_turns"),
    ],
)
def test_max_total_tokens(replies, plus, turns, cut, reason):
    tokenizer = build_tokenizer(CHATML)
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    answer = "The answer is 42"
    p = len(encode(tokenizer.apply_chat_template(QUESTION, tokenize=False, add_generation_prompt=True)))
    r = len(encode(answer)) + 1  # and EOS
    s = len(encode("\n<|im_start|>user\nGo on.<|im_end|>\n<|im_start|>assistant\n"))  # ChatML's difference
    budget = p + replies * (r + s) + plus  # the prompt, `replies` whole replies with the message after each
    limits = EnvironmentConfig(max_total_tokens=budget, max_turns=4)
    episodes, engine, _ = play(tokenizer, [Echo()], lambda t, j: answer, limits=limits)
    check_rows(episodes, engine, tokenizer)
    episode = episodes[0]
    assert (len(episode.turns), episode.rows[-1].truncated, episode.truncation) == (turns, cut, reason)
    assert len(episode.rows[-1].context_ids) <= budget
    assert episode.rows[-1].loss_mask[-1] == 1  # never cut inside an environment message


def test_max_observation_tokens():
    tokenizer = build_tokenizer(CHATML)
    limits = EnvironmentConfig(max_observation_tokens=5, max_turns=2)
    episodes, _, _ = play(tokenizer, [Echo("What is 6 times 7? " * 10)], lambda t, j: "ok", limits=limits)
    full_ids = tokenizer("What is 6 times 7? " * 10, add_special_tokens=False)["input_ids"]
    shown = episodes[0].messages[2]["content"]
    assert shown == tokenizer.decode(full_ids[:5]) + f"\n[... {len(full_ids) - 5} more tokens cut]"
    assert episodes[0].observations_truncated == 1


def test_step_timeout_ends_the_episode():
    tokenizer = build_tokenizer(CHATML)
    limits = EnvironmentConfig(step_timeout=0.2)
    episodes, _, _ = play(tokenizer, [Echo(sleep=2.0)], lambda t, j: "ok", limits=limits)
    assert episodes[0].truncation == "step_timeout" and episodes[0].turns[0].step is None


@pytest.mark.parametrize("workers", [1, 4])
def test_step_workers_run_a_waves_steps_at_once(workers):
    tokenizer = build_tokenizer(CHATML)
    limits = EnvironmentConfig(max_turns=2, step_workers=workers)
    started = time.monotonic()
    play(tokenizer, [Echo(sleep=0.3) for _ in range(4)], lambda t, j: "ok", limits=limits)
    elapsed = (
        time.monotonic() - started
    )  # 2 waves x 4 steps of 0.3 s: 2.4 s one at a time, 0.6 s four at once
    assert elapsed > 2.4 if workers == 1 else elapsed < 1.5


def test_a_step_that_raises_is_an_error_naming_the_environment():
    class Broken(Environment):
        def step(self, message):
            raise KeyError("state")

    with pytest.raises(RuntimeError, match="Broken.step raised KeyError"):
        play(build_tokenizer(CHATML), [Broken()], lambda t, j: "ok")


def test_a_reset_that_does_not_take_the_row_is_an_error_saying_so():
    class Strict(Environment):
        def reset(self, question):
            return None

        def step(self, message):
            return Step(done=True)

    with pytest.raises(RuntimeError, match=r"Strict.reset raised TypeError.*accept \*\*row"):
        play(build_tokenizer(CHATML), [Strict()], lambda t, j: "ok", rows=[{"question": "q", "answer": "1"}])


# ----------------------------------------------------------------------------- templates that rewrite the past
def test_a_non_prefix_template_starts_a_new_row():
    tokenizer = build_tokenizer(COUNTING)
    episodes, engine, chat = play(
        tokenizer, [Echo(), Echo()], lambda t, j: "ok", limits=EnvironmentConfig(max_turns=3)
    )
    check_rows(episodes, engine, tokenizer)
    episode = episodes[0]
    assert len(episode.rows) == 3  # a row per turn: each new message rewrites the header
    for k, row in enumerate(episode.rows):
        assert row.loss_mask == [1] * len(row.completion_ids)  # each row: its prompt, then one sampled reply
        # each new row's prompt is the full render of the conversation so far
        before = episode.messages[: len(episode.prompt) + 2 * k]
        assert row.prompt_ids == chat.encode(chat.render(before, [], generation=True))
    batch = episode_batch(episodes, tokenizer.pad_token_id)
    assert batch.episode_index.tolist() == [0, 0, 0, 1, 1, 1]
    assert batch.turn_index[:3].max(dim=1).values.tolist() == [0, 1, 2]
    assert episode_stats(episodes)["env/new_rows"] == 2.0


@pytest.mark.parametrize("reply, rows", [("ok", 1), ("ok\n\n", 2)])
def test_a_template_that_rewrites_every_reply_starts_a_new_row_when_it_changes_one(reply, rows):
    # the template's own difference exists (its renders agree with each other): only the full-render check
    # against the sampled tokens sees that the context the model had is not the conversation's render
    tokenizer = build_tokenizer(TRIMMING)
    episodes, engine, chat = play(
        tokenizer, [Echo()], lambda t, j: reply, limits=EnvironmentConfig(max_turns=2)
    )
    check_rows(episodes, engine, tokenizer)
    assert len(episodes[0].rows) == rows
    conversation = episodes[0].messages[:2]
    assert chat.template_suffix(conversation, [{"role": "user", "content": "Go on."}], []) is not None


@needs_trl
def test_qwen3_drops_earlier_reasoning_so_a_retry_starts_a_new_row():
    tokenizer = build_tokenizer(QWEN3)
    reply = lambda t, j: "<think>\nmultiply them\n</think>\n\n\\boxed{41}"  # noqa: E731  always wrong
    env = RetryEnvironment()
    episodes, engine, _ = play(tokenizer, [env], reply, limits=EnvironmentConfig(max_turns=2))
    check_rows(episodes, engine, tokenizer)
    episode = episodes[0]
    assert len(episode.rows) == 2
    assert "multiply them" not in tokenizer.decode(episode.rows[1].prompt_ids)  # the template dropped it
    assert episode.step_rewards == [0.0, 0.0] and episode.truncation == "max_turns"


def test_a_non_canonical_reply_is_kept_and_counted_not_split():
    tokenizer = build_tokenizer(CHATML)
    canonical = tokenizer("answer", add_special_tokens=False)["input_ids"]
    spelled = [tokenizer.convert_tokens_to_ids(c) for c in "answer"]  # letter by letter
    assert len(canonical) < len(spelled) and tokenizer.decode(spelled) == "answer"
    reply = lambda t, j: spelled + [tokenizer.eos_token_id]  # noqa: E731
    episodes, engine, _ = play(tokenizer, [Echo()], reply, limits=EnvironmentConfig(max_turns=2))
    check_rows(episodes, engine, tokenizer)
    assert len(episodes[0].rows) == 1 and episodes[0].retokenized == 1
    assert episodes[0].rows[0].completion_ids[: len(spelled)] == spelled  # as sampled


# ----------------------------------------------------------------------------- the batch
def test_retry_batch_layout():
    tokenizer = build_tokenizer(CHATML)
    reply = lambda t, j: "\\boxed{42}" if j == 1 or "not correct" in t else "\\boxed{41}"  # noqa: E731
    envs = [RetryEnvironment() for _ in range(2)]
    episodes, engine, _ = play(tokenizer, envs, reply, rows=[{"answer": "42"}], g=2)
    check_rows(episodes, engine, tokenizer)
    assert [e.step_rewards for e in episodes] == [[0.0, 1.0], [1.0]]
    assert [e.reward for e in episodes] == [1.0, 1.0]  # get_reward: the last reply's score
    batch = episode_batch(episodes, tokenizer.pad_token_id)
    rows = [episodes[0].rows[0], episodes[1].rows[0]]
    assert batch.completion_ids.shape == (2, max(len(r.completion_ids) for r in rows))
    assert batch.loss_mask.sum().item() == sum(sum(r.loss_mask) for r in rows)
    assert (batch.loss_mask <= batch.completion_mask).all()
    assert (batch.sampling_logps[batch.loss_mask == 0] == 0).all()
    assert batch.turn_index[0].unique().tolist() == [-1, 0, 1] and batch.turn_index[1].unique().tolist() == [
        -1,
        0,
    ]
    stats = episode_stats(episodes)
    assert stats["env/turns"] == 1.5 and stats["env/done"] == 1.0


def test_greedy_episodes_have_no_logps():
    tokenizer = build_tokenizer(CHATML)
    episodes, _, _ = play(tokenizer, [CalculatorEnvironment()], calculator_reply, greedy=True)
    assert episode_batch(episodes, tokenizer.pad_token_id).sampling_logps is None


# ----------------------------------------------------------------------------- a real model: rlvr's decode loop
def eos_prone_model(path, tokenizer, prompt_ids, logit=5.0):
    """The tiny random model with its EOS row set so that EOS gets about `logit` after prompts like
    `prompt_ids`: replies of a few tokens that end their turn, so episodes go on for several turns."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        mean = model.model(input_ids=torch.tensor([prompt_ids])).last_hidden_state[0].mean(0)
        model.get_output_embeddings().weight[tokenizer.eos_token_id] = mean / mean.norm() ** 2 * logit
    return model


def test_hf_decode_loop_episodes_log_probs_match_a_forward_pass(tiny_model_dir):
    from transformers import AutoTokenizer

    from rlvr.algorithm.logprobs import completion_logps
    from rlvr.rollout.engine import HFEngine

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True)["input_ids"]
    model = eos_prone_model(tiny_model_dir, tokenizer, prompt)
    engine = HFEngine(model, tokenizer, max_prompt_length=512)
    limits = EnvironmentConfig(max_turns=3)
    chat = ChatFormat(tokenizer, [tokenizer.eos_token_id])
    generation = GenerationConfig(max_completion_length=8, temperature=1.0)
    episodes = run_episodes(
        engine,
        chat,
        [Echo() for _ in range(4)],
        [{}],
        [QUESTION],
        4,
        generation,
        limits,
        [tokenizer.eos_token_id],
        512,
        [3],
    )
    assert max(len(e.turns) for e in episodes) == 3  # some episodes went on past environment messages
    batch = episode_batch(episodes, tokenizer.pad_token_id)
    input_ids = torch.cat([batch.prompt_ids, batch.completion_ids], dim=1)
    attention = torch.cat([batch.prompt_mask, batch.completion_mask], dim=1)
    with torch.no_grad():
        logps, _ = completion_logps(model, input_ids, attention, batch.completion_mask, entropy=False)
    sampled = batch.loss_mask.bool()
    # every sampled token, later turns included, is scored after exactly the context it was drawn from
    torch.testing.assert_close(logps[sampled], batch.sampling_logps[sampled], atol=1e-4, rtol=0)
    assert (batch.turn_index[sampled] > 0).any()


def test_hf_decode_loop_per_prompt_samples_do_not_depend_on_the_batch(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlvr.rollout.engine import HFEngine

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    engine = HFEngine(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), tokenizer, 64, per_prompt_seeds=True
    )
    prompts = [tokenizer(t)["input_ids"] for t in ["What is 2 + 3?", "The answer is"]]
    config = GenerationConfig(max_completion_length=6)
    both = engine.generate_ids(prompts, 2, config, [5, 6], False)
    assert both == engine.generate_ids(prompts[:1], 2, config, [5], False) + engine.generate_ids(
        prompts[1:], 2, config, [6], False
    )
