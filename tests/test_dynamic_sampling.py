"""DAPO's dynamic sampling: which groups a step keeps, how rollouts join, and the trainer drawing more prompts.

The trainer tests read the prompts in order (`data.shuffle: false`) and score them with rewards that depend on
the answer only, so every count is known in advance: ROWS[k] has the answer 2k.
"""

import json
import math
import shutil

import pytest
import torch
import yaml
from test_distributed import launch
from test_trainer import ROWS, make_config

from rlvr import GRPOConfig, GRPOTrainer
from rlvr.algorithm import select_groups, zero_range_groups
from rlvr.config import ConfigError
from rlvr.rollout import Rollout, concat_rollouts
from rlvr.trainer.sampler import PromptSampler, derived_seed
from rlvr.utils import read_jsonl

NAN = math.nan


# ------------------------------------------------------------------------------------------ which groups
@pytest.mark.parametrize(
    "informative, quota, groups, kept, filled, dropped",
    [
        ([0, 1, 0, 1, 1], 2, [1, 3], 2, 0, 3),  # enough: the first two informative; the fifth is surplus
        ([1, 0, 1], 2, [0, 2], 2, 0, 1),  # exactly the quota
        ([1, 1], 2, [0, 1], 2, 0, 0),  # the first draw is all informative
        ([0, 1, 0], 2, [0, 1], 1, 1, 1),  # short: the first zero-variance group fills the gap
        ([0, 0, 0, 0], 2, [0, 1], 0, 2, 2),  # nothing informative within the cap: all filler
        ([0, 0, 0, 1], 1, [3], 1, 0, 3),  # the informative group wins over earlier filler
    ],
)
def test_select_groups(informative, quota, groups, kept, filled, dropped):
    selection = select_groups(torch.tensor(informative, dtype=torch.bool), quota)
    assert selection.groups == groups
    assert (selection.kept, selection.filled, selection.dropped) == (kept, filled, dropped)


def test_select_groups_needs_a_full_draw():
    with pytest.raises(ValueError, match="fewer than the quota"):
        select_groups(torch.tensor([True]), quota=2)


def test_unscorable_completions_do_not_make_a_group_informative():
    rewards = torch.tensor(
        [
            [1.0, NAN, 1.0, 1.0],  # the scorable ones all equal: no signal
            [NAN, NAN, NAN, 0.0],  # one scorable completion: nothing to compare
            [NAN, 0.0, 1.0, NAN],  # two that differ: informative
            [NAN, NAN, NAN, NAN],  # unscorable
        ]
    ).flatten()
    informative = ~zero_range_groups(rewards, num_generations=4)
    assert informative.tolist() == [False, False, True, False]
    selection = select_groups(informative, quota=2)
    assert (selection.groups, selection.kept, selection.filled) == ([0, 2], 1, 1)


# -------------------------------------------------------------------------------------- joining rollouts
def rollout(prompt_ids, prompt_mask, completion_ids, completion_mask, columns, cut, logps=True) -> Rollout:
    completion_ids = torch.tensor(completion_ids)
    return Rollout(
        prompt_ids=torch.tensor(prompt_ids),
        prompt_mask=torch.tensor(prompt_mask),
        completion_ids=completion_ids,
        completion_mask=torch.tensor(completion_mask),
        truncated=torch.tensor([row[-1] != 0 for row in completion_mask]),
        prompts=[f"p{row[-1]}" for row in prompt_ids],
        completions=[f"c{row[0]}" for row in completion_ids.tolist()],
        columns=columns,
        num_prompts_cut=cut,
        sampling_logps=-completion_ids.float() if logps else None,
    )


def test_rollouts_of_different_widths_join_and_groups_are_taken_in_order():
    # G = 2. Part a: one group, prompt of 2 tokens, completions of 1 token. Part b: two groups, prompts of
    # 1 token, completions up to 3 tokens, and a dataset column part a lacks.
    a = rollout([[7, 8], [7, 8]], [[1, 1], [1, 1]], [[2], [3]], [[1], [1]], {"answer": ["1", "1"]}, cut=1)
    b = rollout(
        [[9], [9], [6], [6]],
        [[1], [1], [1], [1]],
        [[4, 5, 2], [4, 0, 0], [5, 2, 0], [5, 5, 5]],
        [[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 1, 1]],
        {"answer": ["2", "2", "3", "3"], "level": [1, 1, 2, 2]},
        cut=2,
    )
    joined = concat_rollouts([a, b], pad_id=0)
    assert joined.prompt_ids.tolist() == [[7, 8], [7, 8], [0, 9], [0, 9], [0, 6], [0, 6]]  # left
    assert joined.prompt_mask.tolist() == [[1, 1], [1, 1], [0, 1], [0, 1], [0, 1], [0, 1]]
    assert joined.completion_ids.tolist()[:2] == [[2, 0, 0], [3, 0, 0]]  # right
    assert joined.completion_mask.tolist()[:2] == [[1, 0, 0], [1, 0, 0]]
    assert joined.sampling_logps[:2].tolist() == [[-2, 0, 0], [-3, 0, 0]]  # padded with 0
    assert joined.columns == {"answer": ["1", "1", "2", "2", "3", "3"], "level": [None, None, 1, 1, 2, 2]}
    assert joined.num_prompts_cut == 3
    assert joined.completions == ["c2", "c3", "c4", "c4", "c5", "c5"]

    taken = joined.take_groups([2, 0], num_generations=2)  # rows 4, 5, then 0, 1
    assert taken.prompt_ids.tolist() == [[0, 6], [0, 6], [7, 8], [7, 8]]
    assert taken.completion_ids.tolist() == [[5, 2, 0], [5, 5, 5], [2, 0, 0], [3, 0, 0]]
    assert taken.completion_mask.tolist() == [[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 0, 0]]
    assert taken.truncated.tolist() == [False, True, True, True]  # the mask reaches the part's width
    assert taken.prompts == ["p6", "p6", "p8", "p8"]
    assert taken.columns == {"answer": ["3", "3", "1", "1"], "level": [2, 2, None, None]}
    assert taken.sampling_logps[:, 0].tolist() == [-5, -5, -2, -3]
    assert len(taken) == 4 and taken.num_prompts_cut == 3

    without = rollout([[7]], [[1]], [[2]], [[1]], {}, cut=0, logps=False)
    assert concat_rollouts([a, without], pad_id=0).sampling_logps is None


def test_each_draw_of_a_step_has_its_own_prompt_places():
    # 2 ranks x 2 prompts: the step's first draw holds places 0-3, the second 4-7; rank 1 starts at 2, then 6
    sampler = PromptSampler(16, prompts_per_step=2, rank=1, world_size=2)
    assert [sampler.first_position(draw) for draw in range(3)] == [2, 6, 10]


def test_max_resample_rounds_below_zero_is_refused():
    with pytest.raises(ConfigError, match="algorithm.max_resample_rounds must be at least 0, got -1"):
        GRPOConfig.from_dict({"algorithm": {"dynamic_sampling": True, "max_resample_rounds": -1}})


# ----------------------------------------------------------------------------------------- the trainer
def odd_rows_differ(prompts, completions, answer, **kwargs):
    """ROWS[k] (answer 2k): for odd k, 1 for the first completion of the group of 4, else 0; for even k 0."""
    return [float(i % 4 == 0) if int(a) % 4 else 0.0 for i, a in enumerate(answer)]


def row_3_differs(prompts, completions, answer, **kwargs):
    """Only ROWS[3] (answer 6) has a group whose rewards differ."""
    return [float(i % 4 == 0) if a == "6" else 0.0 for i, a in enumerate(answer)]


def dynamic_config(tmp_path, tiny_model_dir, max_resample_rounds=3, **training):
    return make_config(
        tiny_model_dir,
        tmp_path / "run",
        data={"shuffle": False},
        algorithm={"dynamic_sampling": True, "max_resample_rounds": max_resample_rounds},
        training={"max_steps": 2, **training},
    )


def answers_by_step(run):
    records = read_jsonl(run / "completions.jsonl")
    return {step: [r["answer"] for r in records if r["step"] == step][::4] for step in (1, 2)}


def test_zero_variance_prompts_are_dropped_and_more_are_drawn(tiny_model_dir, tmp_path):
    # batch 8, G 4: 2 prompts a step. Step 1 draws rows 0, 1 (row 0 all 0: dropped), then rows 2, 3 (row 2
    # dropped): rows 1 and 3 fill the batch and no third draw is made. Step 2 likewise keeps rows 5 and 7.
    # With a seed per prompt, each prompt drawn in a step has its own: places 0, 1, then 2, 3 (seed 3).
    config = dynamic_config(tmp_path, tiny_model_dir)
    config.generation.seed_per_prompt = True
    trainer = GRPOTrainer(config, reward_funcs=[odd_rows_differ], train_dataset=ROWS)
    seeds = []
    generate = trainer.engine.generate

    def recording(texts, num_samples, config, prompt_seeds=None, greedy=False):
        seeds.append(prompt_seeds)
        return generate(texts, num_samples, config, prompt_seeds, greedy)

    trainer.engine.generate = recording
    trainer.train()
    assert answers_by_step(tmp_path / "run") == {1: ["2", "6"], 2: ["10", "14"]}
    assert seeds == [
        [derived_seed(3, step, place), derived_seed(3, step, place + 1)]
        for step in (0, 1)
        for place in (0, 2)
    ]
    assert trainer.sampler.state_dict() == {"epoch": 0, "position": 8}  # 4 draws of 2 prompts
    for m in read_jsonl(tmp_path / "run" / "metrics.jsonl"):
        assert m["dynamic_sampling/rounds"] == 2
        assert m["dynamic_sampling/kept_groups"] == 2
        assert m["dynamic_sampling/dropped_groups"] == 2
        assert m["dynamic_sampling/extra_prompts"] == 2
        assert m["dynamic_sampling/filled_groups"] == 0
        # each kept group scores [1, 0, 0, 0]: mean 1/4; over all 16 drawn completions 2/16
        assert m["reward"] == pytest.approx(0.25)
        assert m["dynamic_sampling/reward_all"] == pytest.approx(0.125)
        assert m["frac_reward_zero_std"] == 0.0
    # group std of [1, 0, 0, 0] is 1/2 (unbiased): advantages (1 - 1/4) / 0.5 = 1.5 and -0.5
    records = read_jsonl(tmp_path / "run" / "completions.jsonl")
    assert [r["advantage"] for r in records[:4]] == pytest.approx([1.5, -0.5, -0.5, -0.5], abs=1e-3)


def test_the_cap_is_kept_and_a_batch_without_any_informative_group_trains_on_filler(tiny_model_dir, tmp_path):
    # max_resample_rounds 1: two draws a step at most. Step 1 draws rows 0, 1 then 2, 3: only row 3 differs,
    # row 0 (the first zero-variance group) fills the other place. Step 2 draws rows 4, 5 then 6, 7: none
    # differs, rows 4 and 5 are trained on with advantage 0 everywhere, so the loss and gradient are 0.
    trainer = GRPOTrainer(
        dynamic_config(tmp_path, tiny_model_dir, max_resample_rounds=1),
        reward_funcs=[row_3_differs],
        train_dataset=ROWS,
    )
    trainer.train()
    assert answers_by_step(tmp_path / "run") == {1: ["0", "6"], 2: ["8", "10"]}
    step1, step2 = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    for m in (step1, step2):
        assert m["dynamic_sampling/rounds"] == 2
        assert m["dynamic_sampling/extra_prompts"] == 2
        assert m["dynamic_sampling/dropped_groups"] == 2
    assert (step1["dynamic_sampling/kept_groups"], step1["dynamic_sampling/filled_groups"]) == (1, 1)
    assert (step2["dynamic_sampling/kept_groups"], step2["dynamic_sampling/filled_groups"]) == (0, 2)
    assert step1["frac_reward_zero_std"] == 0.5 and step2["frac_reward_zero_std"] == 1.0
    assert step2["loss"] == 0.0 and step2["grad_norm"] == 0.0
    records = read_jsonl(tmp_path / "run" / "completions.jsonl")
    assert [r["advantage"] for r in records if r["answer"] != "6"] == [0.0] * 12


def test_without_resample_rounds_the_batch_is_the_first_draw(tiny_model_dir, tmp_path):
    trainer = GRPOTrainer(
        dynamic_config(tmp_path, tiny_model_dir, max_resample_rounds=0, max_steps=1),
        reward_funcs=[odd_rows_differ],
        train_dataset=ROWS,
    )
    trainer.train()
    assert answers_by_step(tmp_path / "run")[1] == ["0", "2"]
    (m,) = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert (m["dynamic_sampling/rounds"], m["dynamic_sampling/extra_prompts"]) == (1, 0)
    assert (m["dynamic_sampling/kept_groups"], m["dynamic_sampling/filled_groups"]) == (1, 1)


def test_a_group_whose_completions_are_all_masked_out_is_not_informative(tiny_model_dir, tmp_path):
    # mask_truncated_completions with 2-token completions: the tiny model writes no EOS that soon, so every
    # completion is truncated and out of the loss. Row 1's rewards differ, but its group teaches nothing: no
    # group is kept, every draw up to the cap is made, the batch is filler.
    config = dynamic_config(tmp_path, tiny_model_dir, max_resample_rounds=1, max_steps=1)
    config.algorithm.mask_truncated_completions = True
    config.generation.max_completion_length = 2
    trainer = GRPOTrainer(config, reward_funcs=[odd_rows_differ], train_dataset=ROWS)
    trainer.train()
    (m,) = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert m["truncated_frac"] == 1.0  # the premise: every completion ran to the limit
    assert (m["dynamic_sampling/rounds"], m["dynamic_sampling/kept_groups"]) == (2, 0)
    assert m["dynamic_sampling/filled_groups"] == 2


def test_resume_with_dynamic_sampling_repeats_the_uninterrupted_run(tiny_model_dir, tmp_path):
    # shuffled prompts, a seed per prompt and draw, 3 steps; the run resumed from checkpoint-2 draws the same
    # prompts and completions for step 3 as the one that never stopped
    def run(output_dir):
        config = make_config(
            tiny_model_dir,
            output_dir,
            generation={"seed_per_prompt": True},
            algorithm={"dynamic_sampling": True, "max_resample_rounds": 2},
            training={"max_steps": 3, "save_steps": 2, "save_total_limit": None},
        )
        return GRPOTrainer(config, reward_funcs=[odd_rows_differ], train_dataset=ROWS)

    full = run(tmp_path / "full")
    full.train()
    (tmp_path / "resumed").mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-2", tmp_path / "resumed" / "checkpoint-2")
    resumed = run(tmp_path / "resumed")
    resumed.train(resume=True)

    assert resumed.sampler.state_dict() == full.sampler.state_dict()
    uninterrupted = [r for r in read_jsonl(tmp_path / "full" / "completions.jsonl") if r["step"] > 2]
    again = read_jsonl(tmp_path / "resumed" / "completions.jsonl")
    assert [(r["step"], r["answer"], r["completion"]) for r in again] == [
        (r["step"], r["answer"], r["completion"]) for r in uninterrupted
    ]
    metrics = read_jsonl(tmp_path / "full" / "metrics.jsonl")
    assert sum(m["dynamic_sampling/extra_prompts"] for m in metrics[:2]) > 0, (
        "the checkpoint saw no extra draw"
    )
    for a, b in zip(metrics[2:], read_jsonl(tmp_path / "resumed" / "metrics.jsonl")):
        for key in ("loss", "dynamic_sampling/rounds", "dynamic_sampling/kept_groups", "reward"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), key


REWARD = """
def odd_rows_differ(prompts, completions, answer, **kwargs):
    return [float(i % 4 == 0) if int(a) % 4 else 0.0 for i, a in enumerate(answer)]
"""


def test_two_ranks_draw_as_often_as_the_short_one(tiny_model_dir, tmp_path):
    # 2 ranks of 1 prompt each: every draw gives rank 0 an even row (all 0) and rank 1 an odd one. Rank 1 has
    # its group at once; rank 0 never does, so both draw 3 times (max_resample_rounds 2): rows 0-5 in step 1.
    # Step 2 then starts at rows 6, 7, which shows both ranks' samplers moved 3 draws.
    (tmp_path / "rewards.py").write_text(REWARD)
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    config = {
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"dataset": str(tmp_path / "data.jsonl"), "shuffle": False},
        "generation": {"num_generations": 4, "max_completion_length": 8},
        "rewards": {"functions": [f"{tmp_path / 'rewards.py'}:odd_rows_differ"]},
        "algorithm": {"beta": 0.0, "dynamic_sampling": True, "max_resample_rounds": 2},
        "training": {"max_steps": 2, "log_completions_steps": 1, "seed": 3},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run = launch(tmp_path / "config.yaml", tmp_path / "run", 2, "distributed.strategy=ddp")
    assert answers_by_step(run) == {1: ["0", "2"], 2: ["12", "14"]}  # rank 0's filler, then rank 1's group
    for m in read_jsonl(run / "metrics.jsonl"):
        assert m["dynamic_sampling/rounds"] == 3
        assert m["dynamic_sampling/extra_prompts"] == 4  # 2 more draws on each rank
        assert (m["dynamic_sampling/kept_groups"], m["dynamic_sampling/filled_groups"]) == (1, 1)
        assert m["dynamic_sampling/dropped_groups"] == 4  # rank 0's two zero groups, rank 1's surplus
