"""Nothing lost, nothing silent: a run directory belongs to one run, resumes check what they load, non-finite
rewards, losses and weights stop before they reach a saved model. Each test reproduces a way a run's work
was lost silently (issue #11) on a tiny model built from a config."""

import json
import re
import shutil

import pytest
import torch
import yaml

from rlvr import GRPOConfig, GRPOTrainer
from rlvr.cli import main
from rlvr.config import ConfigError
from rlvr.rewards import RewardError
from rlvr.utils import read_jsonl

ROWS = [{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(8)]


def length_reward(prompts, completions, **kwargs):
    return [len(c[0]["content"]) / 10 for c in completions]


def raw_config(model_dir, output_dir, **training):
    return {
        "model": {"name_or_path": str(model_dir)},
        "generation": {"num_generations": 4, "max_completion_length": 8},
        "training": {
            "output_dir": str(output_dir),
            "max_steps": 3,
            "batch_size": 8,
            "learning_rate": 1e-3,
            "log_completions_steps": 1,
            "save_steps": 1,
            "save_total_limit": None,
            "seed": 3,
            **training,
        },
        "algorithm": {"beta": 0.0},
    }


def trainer_for(model_dir, output_dir, rows=ROWS, generation=None, lora=False, **training):
    raw = raw_config(model_dir, output_dir, **training)
    raw["generation"].update(generation or {})
    raw["model"]["lora"] = {"enabled": lora}
    return GRPOTrainer(GRPOConfig.from_dict(raw), reward_funcs=[length_reward], train_dataset=rows)


def steps(path):
    return [record["step"] for record in read_jsonl(path)]


def snapshot(run):
    """Every file of a run directory with its bytes."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, tmp_path_factory):
    """A 3-step run with a checkpoint after every step, kept read-only: tests copy it."""
    run = tmp_path_factory.mktemp("finished") / "run"
    trainer_for(tiny_model_dir, run).train()
    return run


def copy_run(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    return run


# ---------------------------------------------------------------------------------- one run per directory
def test_a_new_run_in_an_old_runs_directory_is_refused_and_changes_nothing(
    tiny_model_dir, finished_run, tmp_path
):
    run = copy_run(finished_run, tmp_path)
    before = snapshot(run)
    trainer = trainer_for(tiny_model_dir, run, max_steps=2, seed=7)
    with pytest.raises(
        ConfigError,
        match=r"already holds a run \(checkpoint-1, checkpoint-2, checkpoint-3, .*--resume.*--overwrite",
    ):
        trainer.train()
    assert snapshot(run) == before  # checkpoints, metrics, config.yaml and final/ as the first run left them


def test_the_command_line_refuses_before_loading_a_model(finished_run, tmp_path, capsys, monkeypatch):
    import rlvr.trainer

    run = copy_run(finished_run, tmp_path)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw_config(tmp_path / "no-such-model", run)))
    monkeypatch.setattr(rlvr.trainer, "GRPOTrainer", None)  # building a trainer would fail the test
    assert main(["train", "--config", str(config)]) == 2
    error = capsys.readouterr().err
    assert "already holds a run" in error and "Traceback" not in error
    assert main(["train", "--config", str(config), "--resume", "--overwrite"]) == 2
    assert "choose one" in capsys.readouterr().err


def test_overwrite_replaces_the_old_run_whole(tiny_model_dir, finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    (run / "notes.txt").write_text("mine")  # not the run's: kept
    trainer_for(tiny_model_dir, run, max_steps=2, seed=7, overwrite_output_dir=True).train()
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert steps(run / "metrics.jsonl") == [1, 2]
    assert set(steps(run / "completions.jsonl")) == {1, 2}
    assert yaml.safe_load((run / "config.yaml").read_text())["training"]["seed"] == 7
    assert (run / "notes.txt").read_text() == "mine"


def test_two_trainers_cannot_share_a_directory(tiny_model_dir, tmp_path):
    from rlvr.trainer.rundir import run_lock

    run = tmp_path / "run"
    trainer = trainer_for(tiny_model_dir, run)
    with run_lock(run):  # another trainer holds it
        with pytest.raises(ConfigError, match=r"in use by another training process \(pid \d+\)"):
            trainer.train()
        assert not (run / "metrics.jsonl").exists()
    trainer.train()  # released: the same trainer now runs
    assert steps(run / "metrics.jsonl") == [1, 2, 3]
    before = snapshot(run)
    with run_lock(run):  # --overwrite cannot delete a run that is still training
        with pytest.raises(ConfigError, match="in use by another training process"):
            trainer_for(tiny_model_dir, run, overwrite_output_dir=True).train()
    assert snapshot(run) == before


def test_an_output_dir_that_is_a_file_is_refused(tiny_model_dir, tmp_path):
    (tmp_path / "run").write_text("not a directory")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        trainer_for(tiny_model_dir, tmp_path / "run").train()


def test_ctrl_c_ends_with_a_message_and_leaves_whole_checkpoints(
    tiny_model_dir, tmp_path, capsys, monkeypatch
):
    from rlvr.trainer import checkpoint_files as checkpoint

    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump({**raw_config(tiny_model_dir, tmp_path / "run"), "data": {"dataset": str(data)}})
    )
    save = checkpoint.save_checkpoint

    def interrupted_second_save(path, *args, **kwargs):
        if path.name == "checkpoint-2":
            raise KeyboardInterrupt
        return save(path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_checkpoint", interrupted_second_save)
    assert main(["train", "--config", str(config)]) == 130
    error = capsys.readouterr().err
    assert "rlvr train: interrupted. Its finished checkpoints are whole: continue with --resume." in error
    assert "Traceback" not in error
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith("checkpoint")) == [
        "checkpoint-1"
    ]


# ---------------------------------------------------------------------------------------------- resume
def test_resume_says_where_it_continues_and_never_logs_a_step_twice(
    tiny_model_dir, finished_run, tmp_path, capsys
):
    run = copy_run(finished_run, tmp_path)
    shutil.rmtree(run / "checkpoint-3")  # the run died during step 3's save: metrics has step 3, a line cut
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "lo')
    trainer_for(tiny_model_dir, run, max_steps=4).train(resume=True)
    out = capsys.readouterr().out
    assert f"--resume: continuing from {run / 'checkpoint-2'} (step 2 of 4)" in out
    assert "dropped 2 lines after step 2" in out
    assert steps(run / "metrics.jsonl") == [1, 2, 3, 4]
    completion_steps = steps(run / "completions.jsonl")
    assert completion_steps == sorted(completion_steps) and completion_steps.count(3) == 8


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (
            lambda c: (c / "model.safetensors").unlink(),
            "model weights .* are missing",
        ),  # once: the base model
        (
            lambda c: (c / "optimizer.pt").write_bytes((c / "optimizer.pt").read_bytes()[:1000]),
            "optimizer.pt is unreadable",
        ),
        (
            lambda c: (c / "model.safetensors").write_bytes((c / "model.safetensors").read_bytes()[:5000]),
            "model.safetensors is unreadable",
        ),
        (
            lambda c: (c / "trainer_state.json").write_text('{"step": 3, "sam'),
            "trainer_state.json is unreadable",
        ),
        (lambda c: (c / "rng_state_0.pt").unlink(), "rng_state_0.pt is missing"),
    ],
)
def test_resume_skips_a_damaged_newest_checkpoint_for_the_newest_complete_one(
    tiny_model_dir, finished_run, tmp_path, capsys, damage, reason
):
    run = copy_run(finished_run, tmp_path)
    shutil.rmtree(run / "final")  # the run died during its last save: a finished run is not resumed
    damage(run / "checkpoint-3")
    trainer = trainer_for(tiny_model_dir, run, max_steps=3)
    trainer.train(resume=True)
    out = capsys.readouterr().out
    assert "--resume: skipping checkpoint-3" in out and re.search(reason, out)
    assert "(step 2 of 3)" in out
    assert steps(run / "metrics.jsonl") == [1, 2, 3]  # step 3 trained again


def test_resume_refuses_when_no_checkpoint_is_complete(tiny_model_dir, finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    shutil.rmtree(run / "final")
    for checkpoint in run.glob("checkpoint-*"):
        (checkpoint / "model.safetensors").unlink()
    before = snapshot(run)
    with pytest.raises(ConfigError, match="no complete checkpoint.*checkpoint-3 \\(its model weights"):
        trainer_for(tiny_model_dir, run).train(resume=True)
    assert snapshot(run) == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"generation": {"num_generations": 2}}, "generation.num_generations: 4 -> 2"),
        ({"batch_size": 4}, "training.batch_size x processes: 8 -> 4"),
        ({"rows": ROWS[:6]}, r"problems: '8 problems, sha256 \w+' -> '6 problems"),
        ({"rows": [dict(r, answer="0") for r in ROWS]}, "problems: '8 problems"),  # same count, other answers
        ({"lora": True}, "model.lora.enabled: False -> True"),  # an adapter cannot load a full checkpoint
    ],
)
def test_resume_refuses_another_runs_data_g_or_batch_size(
    tiny_model_dir, finished_run, tmp_path, change, message
):
    run = copy_run(finished_run, tmp_path)
    trainer = trainer_for(tiny_model_dir, run, max_steps=4, **change)
    with pytest.raises(ConfigError, match=message + ".*resume_allow_changes=true"):
        trainer.train(resume=True)
    assert steps(run / "metrics.jsonl") == [1, 2, 3]


def test_resume_with_changes_allowed_says_so(tiny_model_dir, finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    trainer_for(tiny_model_dir, run, max_steps=4, rows=ROWS[:6], resume_allow_changes=True).train(resume=True)
    assert "continuing with changed settings (problems:" in capsys.readouterr().out
    assert steps(run / "metrics.jsonl") == [1, 2, 3, 4]


def test_resume_past_max_steps_is_refused_and_keeps_final(tiny_model_dir, finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    before = snapshot(run)
    with pytest.raises(ConfigError, match=r"is a finished run at step 3 \(.*\), past training.max_steps=2"):
        trainer_for(tiny_model_dir, run, max_steps=2).train(resume=True)
    assert snapshot(run) == before  # final/ not overwritten with older weights
    shutil.rmtree(run / "final")  # killed before final/ was written: the newest checkpoint is past max_steps
    before = snapshot(run)
    with pytest.raises(ConfigError, match="checkpoint-3 is at step 3, past training.max_steps=2"):
        trainer_for(tiny_model_dir, run, max_steps=2).train(resume=True)
    assert snapshot(run) == before


def test_interrupted_writes_are_cleaned_up_on_the_next_start(tiny_model_dir, finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    shutil.copytree(run / "checkpoint-3", run / ".checkpoint-4.tmp-x1y2")  # killed while writing step 4
    (run / "final").rename(run / ".final.old-4242")  # killed between the two renames of a final save
    trainer_for(tiny_model_dir, run, max_steps=4).train(resume=True)
    out = capsys.readouterr().out
    assert "removed .checkpoint-4.tmp-x1y2" in out and "put back final from .final.old-4242" in out
    assert not list(run.glob(".*.tmp-*")) and not list(run.glob(".*.old-*"))
    assert (run / "checkpoint-4" / "model.safetensors").exists()


# ------------------------------------------------------------------------------------ non-finite numbers
def test_an_infinite_reward_stops_the_run_before_the_update(tiny_model_dir, tmp_path):
    def overflow(prompts, completions, **kwargs):
        return [float("inf")] + [0.0] * (len(completions) - 1)

    raw = raw_config(tiny_model_dir, tmp_path / "run")
    trainer = GRPOTrainer(GRPOConfig.from_dict(raw), reward_funcs=[overflow], train_dataset=ROWS)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    with pytest.raises(
        RewardError, match=r"'overflow' failed: returned inf, which is not a finite number.*completion 0"
    ):
        trainer.train()
    assert all(torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())
    assert not (tmp_path / "run" / "final").exists()


@pytest.fixture
def nan_loss_at(monkeypatch):
    """`nan_loss_at({2, 3})` makes the loss NaN in steps 2 and 3, as a diverging run would (each step here
    computes one loss: one micro-batch, mu = 1)."""
    import rlvr.trainer.trainer as module

    bad_calls: set[int] = set()
    calls = []
    original = module.grpo_loss

    def grpo_loss(**kwargs):
        out = original(**kwargs)
        calls.append(1)
        if len(calls) in bad_calls:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(module, "grpo_loss", grpo_loss)
    return bad_calls.update


def test_a_non_finite_loss_skips_the_update_and_is_counted(tiny_model_dir, tmp_path, nan_loss_at):
    from safetensors.torch import load_file

    trainer = trainer_for(tiny_model_dir, tmp_path / "run", max_steps=3)
    nan_loss_at({2})
    trainer.train()
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [m["nonfinite_updates"] for m in metrics] == [0, 1, 0]
    assert metrics[-1]["nonfinite_updates/total"] == 1
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    first = load_file(str(tmp_path / "run" / "checkpoint-1" / "model.safetensors"))
    second = load_file(str(tmp_path / "run" / "checkpoint-2" / "model.safetensors"))
    assert all(torch.equal(first[k], second[k]) for k in first)  # step 2 left step 1's weights
    third = load_file(str(tmp_path / "run" / "checkpoint-3" / "model.safetensors"))
    assert not all(torch.equal(first[k], third[k]) for k in first)  # step 3 trained again


def test_non_finite_losses_in_a_row_stop_the_run_with_its_checkpoint_intact(
    tiny_model_dir, tmp_path, nan_loss_at, capsys
):
    from safetensors.torch import load_file

    run = tmp_path / "run"
    config = tmp_path / "run.yaml"
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    raw = raw_config(tiny_model_dir, run, max_steps=6, max_nonfinite_updates=1)
    config.write_text(yaml.safe_dump({**raw, "data": {"dataset": str(data)}}))
    nan_loss_at({3, 4, 5, 6})
    assert main(["train", "--config", str(config)]) == 1
    error = capsys.readouterr().err
    assert "step 4: the loss (nan)" in error and "2 optimizer steps in a row" in error
    assert f"Last checkpoint: {run / 'checkpoint-3'}" in error and "Traceback" not in error
    assert not (run / "final").exists() and not (run / "checkpoint-4").exists()
    weights = load_file(str(run / "checkpoint-3" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_non_finite_weights_are_never_saved(tiny_model_dir, tmp_path):
    from rlvr.trainer.trainer import TrainingError

    trainer = trainer_for(tiny_model_dir, tmp_path / "run", max_steps=1)
    with torch.no_grad():
        trainer.model.model.norm.weight[0] = float("inf")
    for save, name in [(trainer.save_checkpoint, "checkpoint-0"), (trainer.save_final, "final")]:
        with pytest.raises(
            TrainingError, match=rf"weights are not finite \(model.norm.weight\); {name} was not"
        ):
            save()
        assert not (tmp_path / "run" / name).exists()


def test_no_reference_model_logs_no_kl(tiny_model_dir, tmp_path):
    trainer_for(tiny_model_dir, tmp_path / "run", max_steps=1).train()
    assert "kl" not in read_jsonl(tmp_path / "run" / "metrics.jsonl")[0]
