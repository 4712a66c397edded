"""The trainer on episodes: a one-turn environment is today's GRPO bit for bit; tool episodes train only on
what the model sampled, and log what happened."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from test_trainer import make_config as trainer_config

from rlvr import GRPOTrainer
from rlvr.data import build_messages, render_prompt
from rlvr.rollout import Rollout, decode_completions
from rlvr.trainer.sampler import derived_seed
from rlvr.utils import read_jsonl

ROWS = [{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(8)]


def length_reward(prompts, completions, **kwargs):
    return [len(c[-1]["content"]) / 10 for c in completions]


def make_config(model_dir, output_dir, **sections):
    """test_trainer's tiny config with a reference model (beta 0.04) and 10-token completions."""
    sections = {
        "algorithm": {"beta": 0.04},
        "generation": {"num_generations": 4, "max_completion_length": 10},
        **sections,
    }
    return trainer_config(model_dir, output_dir, **sections)


def generate_rollout_before_episodes(self, draw: int = 0):
    """The trainer's sampling step as it was before episodes (the reference): one engine call on the rendered
    prompts, its Generation as the Rollout."""
    cfg = self.config
    rows = [self.problems[i] for i in self.sampler.next_indices()]
    messages = [
        build_messages(r["question"], cfg.data.template, cfg.data.system_prompt, cfg.data.few_shot)
        for r in rows
    ]
    texts = [render_prompt(self.tokenizer, m) for m in messages]
    seeds = None
    if cfg.generation.seed_per_prompt:
        first = self.sampler.first_position(draw)
        seeds = [derived_seed(cfg.training.seed, self.step, first + i) for i in range(len(texts))]
    g = cfg.generation.num_generations
    out = self.engine.generate(texts, g, cfg.generation, seeds)
    columns = {key: [row.get(key) for row in rows for _ in range(g)] for key in rows[0] if key != "prompt"}
    rollout = Rollout(
        prompt_ids=out.prompt_ids,
        prompt_mask=out.prompt_mask,
        completion_ids=out.completion_ids,
        completion_mask=out.completion_mask,
        truncated=out.truncated,
        prompts=[m for m in messages for _ in range(g)],
        completions=decode_completions(self.tokenizer, out.completion_ids, out.completion_mask),
        columns=columns,
        num_prompts_cut=out.num_prompts_cut,
        sampling_logps=out.sampling_logps,
    )
    return rollout, {"timing/generate": 0.0}


def _comparable(metrics):
    return [{k: v for k, v in m.items() if "timing" not in k and "second" not in k} for m in metrics]


@pytest.mark.parametrize(
    "sections",
    [
        {},
        {"generation": {"num_generations": 4, "max_completion_length": 10, "seed_per_prompt": True}},
        {"algorithm": {"beta": 0.0, "mu": 2, "mask_truncated_completions": True}},
    ],
    ids=["plain", "seed_per_prompt", "mu2-masked"],
)
def test_a_one_turn_environment_is_todays_training_bit_for_bit(
    tiny_model_dir, tmp_path, monkeypatch, sections
):
    runs = {}
    for name in ("episodes", "before"):
        with monkeypatch.context() as patch:
            if name == "before":
                patch.setattr(GRPOTrainer, "generate_rollout", generate_rollout_before_episodes)
            trainer = GRPOTrainer(
                make_config(tiny_model_dir, tmp_path / name, **sections),
                reward_funcs=[length_reward],
                train_dataset=ROWS,
            )
            final = trainer.train()
        runs[name] = (
            _comparable(read_jsonl(tmp_path / name / "metrics.jsonl")),
            read_jsonl(tmp_path / name / "completions.jsonl"),
            load_file(final / "model.safetensors"),
        )
    (metrics, completions, weights), (metrics0, completions0, weights0) = runs["episodes"], runs["before"]
    assert metrics == metrics0
    assert completions == completions0
    assert weights.keys() == weights0.keys()
    assert all(torch.equal(weights[k], weights0[k]) for k in weights)


# ------------------------------------------------------------------------------------------ multi-turn episodes
class Nag:
    """Never satisfied: answers every reply with a request to say it again (user feedback, no tools)."""

    def reset(self, **row):
        return None

    def step(self, message):
        from rlvr.environments import Step

        return Step([{"role": "user", "content": "Are you sure? Say it again."}], done=False, reward=0.25)


def multiply(a: int, b: int) -> int:
    """Multiply two whole numbers.

    Args:
        a: The first factor.
        b: The second factor.
    """
    return a * b


def _episode_trainer(tiny_model_dir, tmp_path, **kwargs):
    """A trainer whose tiny model ends its turns after a few tokens, so episodes reach several turns."""
    from test_episodes import eos_prone_model
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = tokenizer.apply_chat_template(
        build_messages(ROWS[0]["question"], "boxed"), add_generation_prompt=True
    )["input_ids"]
    model = eos_prone_model(tiny_model_dir, tokenizer, prompt)
    env = {"name": f"{__file__}:Nag", "max_turns": 3, "max_total_tokens": 400}
    config = make_config(tiny_model_dir, tmp_path, environment=env, **kwargs.pop("sections", {}))
    return GRPOTrainer(
        config, model=model, tokenizer=tokenizer, reward_funcs=[length_reward], train_dataset=ROWS, **kwargs
    )


def test_environment_tokens_get_no_gradient_and_sampled_ones_do(tiny_model_dir, tmp_path, monkeypatch):
    trainer = _episode_trainer(tiny_model_dir, tmp_path / "run")
    rollout, timings = trainer.generate_rollout()
    environment_tokens = (rollout.completion_mask == 1) & (rollout.loss_mask == 0)
    assert environment_tokens.any() and rollout.loss_mask.any()  # feedback was read, replies were sampled
    assert (rollout.sampling_logps[environment_tokens] == 0).all()
    probes = []
    policy = trainer.trained_policy

    def probed(*args, **kwargs):  # the trained log-probs plus a zero leaf whose gradient is theirs
        logps, entropy = policy(*args, **kwargs)
        probe = torch.zeros_like(logps, requires_grad=True)
        probes.append(probe)
        return logps + probe, entropy

    monkeypatch.setattr(trainer, "trained_policy", probed)
    rewards = trainer.score_rollout(rollout, timings)
    advantages, _ = trainer.compute_advantages(rewards)
    trainer.policy_updates(rollout, advantages, timings)
    grad = torch.cat([p.grad for p in probes])
    assert (grad[environment_tokens] == 0).all()  # the loss, KL and entropy terms never see them
    assert (grad[rollout.loss_mask.bool()] != 0).any()


def test_episodes_train_and_log_turns_tool_use_and_the_gap_per_turn(tiny_model_dir, tmp_path):
    trainer = _episode_trainer(tiny_model_dir, tmp_path / "run", sections={"training": {"max_steps": 2}})
    assert trainer.reward_names == ["length_reward", "environment"]  # the environment's reward, weighted
    trainer.train()
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert metrics[0]["env/turns"] > 1 and metrics[0]["env/environment_tokens"] > 0
    assert "sampling/logp_diff/turn_1" in metrics[0] and metrics[0]["rewards/environment"] > 0
    record = read_jsonl(tmp_path / "run" / "completions.jsonl")[0]
    assert record["episode"]["turns"] >= 1 and record["episode"]["messages"][0]["role"] == "assistant"
    from rlvr.evaluation.inspect import format_report, inspect_run

    report = format_report(inspect_run(tmp_path / "run"))  # whole conversations, what trained marked
    assert "[trained] assistant:" in report and "[env]     user: Are you sure? Say it again." in report


def test_tools_from_python_make_tool_episodes(tiny_model_dir, tmp_path):
    config = make_config(tiny_model_dir, tmp_path / "run", training={"max_steps": 1})
    trainer = GRPOTrainer(config, reward_funcs=[length_reward], train_dataset=ROWS, tools=[multiply])
    assert trainer.episodic and trainer.reward_names == ["length_reward", "environment"]
    rollout, _ = trainer.generate_rollout()
    system = rollout.trajectories[0]
    assert system["turns"] >= 1
    # SmolLM2-style ChatML has no tools=: the tool is described in the system message the model read
    first_prompt = trainer.tokenizer.decode(rollout.prompt_ids[0][rollout.prompt_mask[0].bool()])
    assert "multiply" in first_prompt and "<tool_call>" in first_prompt
