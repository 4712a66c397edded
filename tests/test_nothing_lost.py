"""Nothing lost, second pass (issue #24): checkpoint rotation keeps the newest and the best, the best is found
from any working directory, a config kept in its run's directory is never overwritten, `--resume` on a
finished run changes nothing, and `rlvr eval` never replaces a result unless told to. Tiny runs: the tiny
model, G = 2, batch 2, 4 completion tokens, beta 0."""

import json
import os
from pathlib import Path

import pytest
import yaml

from rlvr import GRPOConfig, GRPOTrainer
from rlvr.cli import main
from rlvr.config import ConfigError
from rlvr.trainer import checkpoint_files as ckpt
from rlvr.utils import read_jsonl

ROWS = [{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(4)]
# Held-out accuracy is 0 at every evaluation, so the first evaluated checkpoint stays the best
NEVER_RIGHT = "def never(prompts, completions, **kwargs):\n    return [0.0] * len(completions)\n"


def length_reward(prompts, completions, **kwargs):
    return [len(c[0]["content"]) / 10 for c in completions]


def raw_config(model_dir, output_dir, **training):
    return {
        "model": {"name_or_path": str(model_dir)},
        "generation": {"num_generations": 2, "max_completion_length": 4},
        "training": {
            "output_dir": str(output_dir),
            "max_steps": 2,
            "batch_size": 2,
            "learning_rate": 1e-3,
            "log_completions_steps": 1,
            "save_steps": 1,
            "save_total_limit": None,
            "seed": 3,
            **training,
        },
        "algorithm": {"beta": 0.0},
    }


def trainer_for(model_dir, output_dir, eval_reward=None, **training):
    """A trainer on ROWS; with `eval_reward` (a `file.py:function`) it evaluates on two rows every step."""
    if eval_reward:
        training = {"eval_steps": 1, "eval_reward": eval_reward, "eval_limit": 2, **training}
    config = GRPOConfig.from_dict(raw_config(model_dir, output_dir, **training))
    return GRPOTrainer(
        config,
        reward_funcs=[length_reward],
        train_dataset=ROWS,
        eval_dataset=ROWS[:2] if eval_reward else None,
    )


@pytest.fixture
def never_right(tmp_path):
    (tmp_path / "never.py").write_text(NEVER_RIGHT)
    return f"{tmp_path / 'never.py'}:never"


def names(run):
    return sorted((p.name for p in run.glob("checkpoint-*")), key=lambda n: int(n.split("-")[1]))


def steps(path):
    return [record["step"] for record in read_jsonl(path)]


def snapshot(run):
    """Every file of a run directory with its bytes."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def write_config(path, raw):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def rows_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    return path


@pytest.fixture
def no_trainer(monkeypatch):
    """Fail the test if the command line builds a trainer (and so loads a model)."""
    import rlvr.trainer

    monkeypatch.setattr(rlvr.trainer, "GRPOTrainer", None)


# ------------------------------------------------------------------- 1. rotation: the newest and the best
ROTATIONS = [  # (checkpoints written, save_total_limit, best, kept)
    (2, 1, 1, [1, 2]),  # the issue: limit 1 with evaluation deleted each new checkpoint, the newest
    (4, 1, 1, [1, 4]),
    (4, 1, None, [4]),
    (4, 1, 4, [4]),  # the best is the newest: one checkpoint
    (4, 2, 1, [1, 4]),
    (4, 2, 3, [3, 4]),
    (5, 3, 2, [2, 4, 5]),
    (3, 5, 1, [1, 2, 3]),  # under the limit: nothing deleted
    (3, None, 1, [1, 2, 3]),  # null: keep every checkpoint
]


def checkpoint_dirs(root, count):
    for step in range(1, count + 1):
        (root / f"checkpoint-{step}").mkdir(parents=True)
    return root


@pytest.mark.parametrize(("count", "limit", "best", "kept"), ROTATIONS)
def test_rotation_keeps_the_newest_and_the_best(tmp_path, count, limit, best, kept):
    run = checkpoint_dirs(tmp_path / "run", count)
    ckpt.rotate_checkpoints(run, limit, best=f"checkpoint-{best}" if best else None)
    assert names(run) == [f"checkpoint-{step}" for step in kept]


@pytest.mark.parametrize(("count", "limit", "best", "kept"), ROTATIONS)
def test_rotation_matches_transformers(tmp_path, count, limit, best, kept):
    trainer_utils = pytest.importorskip("transformers.trainer_utils")
    if not hasattr(trainer_utils, "rotate_checkpoints"):
        pytest.skip("this transformers rotates inside Trainer, without rotate_checkpoints")
    ours, theirs = checkpoint_dirs(tmp_path / "ours", count), checkpoint_dirs(tmp_path / "theirs", count)
    ckpt.rotate_checkpoints(ours, limit, best=f"checkpoint-{best}" if best else None)
    trainer_utils.rotate_checkpoints(
        str(theirs), limit, best_model_checkpoint=str(theirs / f"checkpoint-{best}") if best else None
    )
    assert names(ours) == names(theirs)


def test_limit_one_with_evaluation_keeps_the_newest_and_resume_goes_on_from_it(
    tiny_model_dir, tmp_path, never_right, capsys
):
    run = tmp_path / "run"
    trainer_for(tiny_model_dir, run, never_right, max_steps=4, save_total_limit=1).train()
    assert names(run) == ["checkpoint-1", "checkpoint-4"]  # before: checkpoint-1 alone
    trainer_for(tiny_model_dir, run, never_right, max_steps=5, save_total_limit=1).train(resume=True)
    assert f"continuing from {run / 'checkpoint-4'} (step 4 of 5)" in capsys.readouterr().out
    assert steps(run / "metrics.jsonl") == [1, 2, 3, 4, 5]  # before: steps 2-4 dropped, trained again
    assert names(run) == ["checkpoint-1", "checkpoint-5"]


@pytest.mark.parametrize(("save_steps", "written"), [(1, [1, 2]), (2, [1, 2]), (0, [1])])
def test_a_step_that_is_both_best_and_a_save_step_is_written_once(
    tiny_model_dir, tmp_path, never_right, monkeypatch, save_steps, written
):
    """Step 1 is the best (held-out accuracy stays 0); with save_steps 1 it is also a save step. Each
    checkpoint is written once, with the step's training figures and its evaluation."""
    saved = []
    original = ckpt.save_checkpoint

    def counting(path, *args, **kwargs):
        saved.append(int(Path(path).name.split("-")[1]))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save_checkpoint", counting)
    run = tmp_path / "run"
    trainer_for(tiny_model_dir, run, never_right, max_steps=2, save_steps=save_steps).train()
    assert saved == written  # before: [1, 1, 2] with save_steps 1, step 1 written twice
    metrics = json.loads((run / "checkpoint-1" / "trainer_state.json").read_text())["metrics"]
    assert "eval/accuracy" in metrics and "reward" in metrics


# ------------------------------------------------------------- 2. the best checkpoint, from anywhere
@pytest.mark.parametrize(
    ("recorded", "name"),
    [
        ("checkpoint-1", "checkpoint-1"),  # today's form: relative to output_dir
        ("exp/checkpoint-1", "checkpoint-1"),  # older runs: output_dir as given, from their working directory
        ("/somewhere/exp/checkpoint-12", "checkpoint-12"),  # ... or absolute
        ("exp/checkpoint-1/", "checkpoint-1"),
        (None, None),
        ("", None),
        ("exp/final", None),  # not a checkpoint: nothing protected
    ],
)
def test_the_best_checkpoint_is_read_as_a_name_in_output_dir(recorded, name):
    assert ckpt.best_checkpoint_name(recorded) == name


@pytest.mark.parametrize("form", ["as written", "old relative", "old absolute"])
def test_the_best_checkpoint_survives_a_resume_from_another_working_directory(
    tiny_model_dir, tmp_path, never_right, monkeypatch, form
):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    monkeypatch.chdir(first)
    trainer_for(tiny_model_dir, "exp", never_right, max_steps=2, save_total_limit=2).train()
    state_file = first / "exp" / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    assert state["best_checkpoint"] == "checkpoint-1"  # before: "exp/checkpoint-1", relative to `first`
    old = {"old relative": "exp/checkpoint-1", "old absolute": str(first / "exp" / "checkpoint-1")}
    if form in old:  # a state file written by an earlier rlvr is still read
        state_file.write_text(json.dumps({**state, "best_checkpoint": old[form]}))
    monkeypatch.chdir(second)  # the same run, named by its absolute path
    trainer_for(tiny_model_dir, first / "exp", never_right, max_steps=4, save_total_limit=2).train(
        resume=True
    )
    assert names(first / "exp") == ["checkpoint-1", "checkpoint-4"]  # before: checkpoint-3, checkpoint-4
    assert not (second / "exp").exists()


# --------------------------------------------------------------- 3. a config kept in its run's directory
def test_a_config_kept_in_the_output_dir_is_never_overwritten(tiny_model_dir, tmp_path, rows_file, capsys):
    exp = tmp_path / "exp"
    exp.mkdir()
    config = exp / "config.yaml"
    raw = {**raw_config(tiny_model_dir, exp, save_steps=0), "data": {"dataset": str(rows_file)}}
    text = "# my experiment: tiny model, G = 2\n" + yaml.safe_dump(raw)
    config.write_text(text)
    assert main(["train", "--config", str(config), "training.learning_rate=9e-6"]) == 0
    assert config.read_text() == text  # before: replaced by the resolved config, comment gone, 9e-6 baked in
    out = capsys.readouterr().out
    assert f"{config} is a config of your own (rlvr did not write it): it is left as it is" in out
    resolved = yaml.safe_load((exp / "config.resolved.yaml").read_text())
    assert resolved["training"]["learning_rate"] == 9e-6

    # rlvr plot and inspect read the resolved one
    from rlvr.evaluation.plot import read_run_config

    assert read_run_config(exp)["training"]["learning_rate"] == 9e-6

    # --overwrite deletes the run and the config it wrote, not the user's
    assert main(["train", "--config", str(config), "--overwrite", "training.max_steps=1"]) == 0
    assert config.read_text() == text and steps(exp / "metrics.jsonl") == [1]
    assert yaml.safe_load((exp / "config.resolved.yaml").read_text())["training"]["max_steps"] == 1


def test_a_runs_own_config_yaml_is_still_its_record(tiny_model_dir, tmp_path, rows_file):
    """`--config RUN/config.yaml --resume` with a new max_steps: the file is the run's record (rlvr wrote it),
    so it takes the new value, and no second file appears."""
    run = tmp_path / "run"
    config = write_config(
        tmp_path / "run.yaml", {**raw_config(tiny_model_dir, run), "data": {"dataset": str(rows_file)}}
    )
    assert main(["train", "--config", str(config)]) == 0
    assert main(["train", "--config", str(run / "config.yaml"), "--resume", "training.max_steps=3"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["training"]["max_steps"] == 3
    assert not (run / "config.resolved.yaml").exists()
    assert steps(run / "metrics.jsonl") == [1, 2, 3]


def test_which_config_files_rlvr_wrote(tmp_path):
    from rlvr.trainer.rundir import written_by_rlvr

    written = GRPOConfig().to_yaml()
    cases = {  # file text -> written by rlvr
        written: True,
        "# a comment\n" + written: False,
        written.replace("training:", "# the run\ntraining:"): False,
        yaml.safe_dump({"training": {"max_steps": 3}}, sort_keys=False): False,  # a part of a config
        yaml.safe_dump(GRPOConfig().to_dict()): False,  # sorted keys: not the way rlvr lays one out
        "model: {name_or_path: x}\n": False,
        "not: [yaml": False,
        "": False,
    }
    for index, (text, expected) in enumerate(cases.items()):
        path = tmp_path / f"c{index}.yaml"
        path.write_text(text)
        assert written_by_rlvr(path) is expected, text[:60]
    (tmp_path / "link.yaml").symlink_to(tmp_path / "c0.yaml")  # writing through it would change the target
    assert not written_by_rlvr(tmp_path / "link.yaml")


# ------------------------------------------------------------------------ 4. --resume on a finished run
@pytest.mark.parametrize("save_steps", [0, 1])  # 0: configs/demo.yaml, no checkpoint at all
@pytest.mark.parametrize("legacy", [False, True])  # a final/ written before it recorded its step
def test_resume_on_a_finished_run_changes_nothing(
    tiny_model_dir, tmp_path, rows_file, capsys, monkeypatch, save_steps, legacy
):
    run = tmp_path / "run"
    raw = {**raw_config(tiny_model_dir, run, save_steps=save_steps), "data": {"dataset": str(rows_file)}}
    config = write_config(tmp_path / "run.yaml", raw)
    assert main(["train", "--config", str(config)]) == 0
    assert json.loads((run / "final" / "trainer_state.json").read_text()) == {"step": 2}
    if legacy:
        (run / "final" / "trainer_state.json").unlink()
    before = snapshot(run)
    capsys.readouterr()
    import rlvr.trainer

    monkeypatch.setattr(rlvr.trainer, "GRPOTrainer", None)  # the command line decides before any model
    assert main(["train", "--config", str(config), "--resume"]) == 0
    out = capsys.readouterr().out
    assert f"--resume: {run} is a finished run: {run / 'final'} holds the model after step 2 of " in out
    assert "Nothing to do; nothing was changed" in out
    assert ("train on from checkpoint-2" in out) == bool(save_steps)
    assert snapshot(run) == before  # before (save_steps 0): step 0 again, metrics and completions dropped
    monkeypatch.undo()
    trainer_for(tiny_model_dir, run, save_steps=save_steps).train(resume=True)  # the same from Python
    assert snapshot(run) == before


def test_resume_past_a_finished_run_without_checkpoints_is_refused(
    tiny_model_dir, tmp_path, rows_file, capsys, no_trainer
):
    run = tmp_path / "run"
    config = write_config(
        tmp_path / "run.yaml",
        {**raw_config(tiny_model_dir, run, save_steps=0), "data": {"dataset": str(rows_file)}},
    )
    trainer_for(tiny_model_dir, run, save_steps=0).train()
    before = snapshot(run)
    for max_steps, phrase in [
        (
            4,
            "without a checkpoint to continue from (training.save_steps: 0 saves none), so it cannot go on to training.max_steps=4",
        ),
        (1, "is a finished run at step 2"),  # past max_steps: final/ is not replaced by other weights
    ]:
        assert main(["train", "--config", str(config), "--resume", f"training.max_steps={max_steps}"]) == 2
        err = capsys.readouterr().err
        assert phrase in err and f"model.name_or_path={run / 'final'}" in err and "Traceback" not in err
    assert snapshot(run) == before


def test_resume_of_a_finished_run_trains_on_from_its_checkpoint_when_max_steps_is_raised(
    tiny_model_dir, tmp_path, capsys
):
    run = tmp_path / "run"
    trainer_for(tiny_model_dir, run).train()
    trainer_for(tiny_model_dir, run, max_steps=3).train(resume=True)
    assert f"continuing from {run / 'checkpoint-2'} (step 2 of 3)" in capsys.readouterr().out
    assert json.loads((run / "final" / "trainer_state.json").read_text()) == {"step": 3}
    with pytest.raises(ConfigError, match="is a finished run at step 3 .*, past training.max_steps=2"):
        trainer_for(tiny_model_dir, run, max_steps=2).train(resume=True)


# ----------------------------------------------------------------- 5. rlvr eval keeps an earlier result
@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if an evaluation loads a model."""
    import rlvr.models

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before --output was checked")

    monkeypatch.setattr(rlvr.models, "load_policy", refuse)


def eval_argv(model_dir, rows_file, output, *extra):
    return [
        "eval", "--model", str(model_dir), "--dataset", str(rows_file), "--output", str(output),
        "--max-new-tokens", "2", "--no-progress", *extra,
    ]  # fmt: skip


def test_eval_refuses_an_output_holding_a_result_before_the_model_loads(
    tiny_model_dir, tmp_path, rows_file, capsys, monkeypatch
):
    out = tmp_path / "baseline"
    assert main(eval_argv(tiny_model_dir, rows_file, out)) == 0
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    with monkeypatch.context() as patch:
        import rlvr.models

        patch.setattr(rlvr.models, "load_policy", lambda *a, **k: pytest.fail("the model loaded"))
        assert main(eval_argv(tiny_model_dir, rows_file, out, "--limit", "1")) == 2
    err = capsys.readouterr().err
    assert (
        f"--output {out} already holds an evaluation (summary.json, predictions.jsonl); nothing was changed"
        in err
    )
    assert "--overwrite" in err and "Traceback" not in err
    assert snapshot(out) == before  # before: replaced by the one-problem result, exit 0, "wrote ..."
    (out / "summary.json").unlink()  # predictions.jsonl alone is a result too
    assert main(eval_argv(tiny_model_dir, rows_file, out, "--limit", "1")) == 2
    assert "already holds an evaluation (predictions.jsonl)" in capsys.readouterr().err

    assert main(eval_argv(tiny_model_dir, rows_file, out, "--limit", "1", "--overwrite")) == 0
    assert json.loads((out / "summary.json").read_text())["metrics"]["num_problems"] == 1
    assert len(read_jsonl(out / "predictions.jsonl")) == 1
    assert (out / "notes.txt").read_text() == "mine"  # other files stay


def test_a_result_written_by_another_eval_meanwhile_is_kept_and_this_one_rescued(
    tiny_model_dir, tmp_path, rows_file, capsys, monkeypatch
):
    """Two `rlvr eval --output X` started together both pass the check at the start; the one that finishes
    second keeps the first one's result and writes its own to the rescue directory (before: replaced it)."""
    import rlvr.evaluation.evaluate as evaluate_module
    import rlvr.outputs

    out, rescue = tmp_path / "eval", tmp_path / "rescue"
    monkeypatch.setattr(rlvr.outputs, "rescue_directories", lambda: [rescue])
    original = evaluate_module.evaluate_model

    def another_eval_finishes_first(*args, **kwargs):
        out.mkdir(exist_ok=True)
        (out / "summary.json").write_text('{"the other": "result"}')
        return original(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "evaluate_model", another_eval_finishes_first)
    assert main(eval_argv(tiny_model_dir, rows_file, out, "--limit", "2")) == 1
    err = capsys.readouterr().err
    assert (out / "summary.json").read_text() == '{"the other": "result"}'
    assert not (out / "predictions.jsonl").exists()
    assert "summary.json appeared there while this ran" in err and "It was written to" in err
    (rescued,) = rescue.glob("rlvr-rescued/eval-*/eval")
    assert json.loads((rescued / "summary.json").read_text())["metrics"]["num_problems"] == 2
    assert len(read_jsonl(rescued / "predictions.jsonl")) == 2

    # told to replace (--overwrite), the one that finishes last replaces it
    assert main(eval_argv(tiny_model_dir, rows_file, out, "--limit", "1", "--overwrite")) == 0
    assert json.loads((out / "summary.json").read_text())["metrics"]["num_problems"] == 1


def test_a_filesystem_that_refuses_flock_still_takes_the_result(tmp_path, monkeypatch):
    """NFS emulates flock with fcntl locks, which need a file open for writing: EBADF on a directory. The
    result is written there all the same (before the fallback: every result went to the rescue directory)."""
    import errno

    fcntl = pytest.importorskip("fcntl")
    from rlvr.outputs import write_files_or_rescue

    def refuses(fd, operation):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(fcntl, "flock", refuses)
    for replace in (False, True):
        write_files_or_rescue(tmp_path / "eval", {"summary.json": f"{replace}\n"}, "eval", replace=replace)
        assert (tmp_path / "eval" / "summary.json").read_text() == f"{replace}\n"


@pytest.mark.parametrize(
    ("output", "phrase"),
    [
        ("{tmp}/a_file/eval", "cannot be made: {tmp}/a_file is a file, not a directory"),
        ("{tmp}/a_file", "is a file; give a directory"),
        ("/sys/rlvr-eval/out", "cannot be written (it would be made in /sys)"),  # no file can be made there
    ],
)
def test_eval_refuses_an_output_it_cannot_write_before_the_model_loads(
    tiny_model_dir, tmp_path, rows_file, capsys, no_model, output, phrase
):
    if output.startswith("/sys") and not os.path.isdir("/sys"):
        pytest.skip("no /sys on this system")
    (tmp_path / "a_file").write_text("x")
    output = output.replace("{tmp}", str(tmp_path))
    assert main(eval_argv(tiny_model_dir, rows_file, output)) == 2
    err = capsys.readouterr().err
    assert phrase.replace("{tmp}", str(tmp_path)) in err and "Traceback" not in err
    assert not Path(output).exists() or Path(output) == tmp_path / "a_file"


def test_an_empty_output_directory_is_used_and_a_failed_eval_makes_none(tiny_model_dir, tmp_path, rows_file):
    (tmp_path / "empty").mkdir()  # made by a script beforehand (mkdir -p): no result in it
    assert main(eval_argv(tiny_model_dir, rows_file, tmp_path / "empty")) == 0
    assert main(eval_argv(tiny_model_dir, tmp_path / "none.jsonl", tmp_path / "new" / "eval")) == 2
    assert not (tmp_path / "new").exists()


def test_scripts_that_evaluate_again_into_one_directory_say_so():
    """Every `rlvr eval` of the scripts either skips a finished result, starts from removed directories, or
    replaces on purpose (--overwrite)."""
    root = Path(__file__).resolve().parents[1]
    for script in ["svamp_transfer.sh", "rollout_measurements.sh"]:
        lines = [line for line in (root / "scripts" / script).read_text().splitlines() if "--output" in line]
        for line in lines:
            assert "--overwrite" in line or "summary.json" in line, f"{script}: {line}"
    tools = (root / "scripts" / "tools_proof.sh").read_text()
    assert '[ -f "$out/$name/summary.json" ] && return 0' in tools
    assert 'rm -rf "$out/before" "$out/after"' in (root / "scripts" / "demo.sh").read_text()
