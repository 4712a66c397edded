"""A full or read-only disk loses no result: `rlvr train` and `rlvr eval` try their output directory before the
expensive work, and a save that fails later (a checkpoint, `final/`, the eval files) leaves nothing half-written,
keeps what was saved before, and writes the result whole to a rescue directory, saying where.

A full disk is simulated by making the writes into the run's directory raise as a full disk does: OSError
ENOSPC from Python, a RuntimeError from torch.save, a SafetensorError from safetensors."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from transformers import PreTrainedTokenizerBase

import rlvr.models
import rlvr.outputs
from rlvr.cli import main
from rlvr.trainer.checkpoint_files import checkpoint_problem, list_checkpoints
from rlvr.utils import read_jsonl

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """The rescue directories, inside the test's own: the temporary directory, then home."""
    tmp, home = tmp_path / "elsewhere", tmp_path / "home"
    tmp.mkdir()
    home.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setenv("HOME", str(home))
    return tmp


def fill(
    monkeypatch, root: Path, name: str = "", error: BaseException = ENOSPC, how: str = "tokenizer"
) -> None:
    """Make writes under `root` into what is being written as `name` (its temporary directory too) fail: the
    tokenizer's files (OSError, as Python's own writes fail), or torch.save's (torch raises its own error)."""

    def hit(path) -> bool:
        path = Path(path)
        return path.is_relative_to(root) and any(
            name in part for part in path.relative_to(root).parts or [""]
        )

    if how == "tokenizer":
        save = PreTrainedTokenizerBase.save_pretrained

        def full_disk(self, directory, *args, **kwargs):
            if hit(directory):
                raise error
            return save(self, directory, *args, **kwargs)

        monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", full_disk)
    else:
        save = torch.save

        def full_disk(obj, f, *args, **kwargs):
            if hit(f):
                raise error
            return save(obj, f, *args, **kwargs)

        monkeypatch.setattr(torch, "save", full_disk)


def train_config(tmp_path: Path, tiny_model_dir: Path, **training) -> Path:
    config = {
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"dataset": "arithmetic"},
        "generation": {"num_generations": 2, "max_completion_length": 4},
        "training": {
            "output_dir": str(tmp_path / "run"),
            "max_steps": 2,
            "batch_size": 2,
            "save_steps": 1,
            "log_completions_steps": 1,
            **training,
        },
        "algorithm": {"beta": 0.0},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def hidden(directory: Path) -> list[str]:
    """Temporary files and directories of a write that failed."""
    return sorted(p.name for p in directory.rglob(".*") if ".tmp" in p.name)


def rescued(elsewhere: Path, name: str) -> Path:
    (found,) = elsewhere.glob(f"rlvr-rescued/*/{name}")
    return found


# ------------------------------------------------------------------------------- a save that fails
@pytest.mark.parametrize(
    ("error", "how", "reason"),
    [
        (ENOSPC, "tokenizer", "No space left on device"),
        (OSError(errno.EROFS, os.strerror(errno.EROFS)), "tokenizer", "Read-only file system"),
        # what torch.save raised on a real full disk (a 2 MB tmpfs)
        (
            RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 369024 vs 368916"),
            "torch",
            "RuntimeError",
        ),
    ],
)
def test_a_checkpoint_that_cannot_be_written_is_rescued_whole(
    tiny_model_dir, tmp_path, elsewhere, monkeypatch, capsys, error, how, reason
):
    run = tmp_path / "run"
    config = train_config(tmp_path, tiny_model_dir)
    fill(monkeypatch, run, "checkpoint-2", error, how)  # the disk fills after the first checkpoint
    assert main(["train", "--config", str(config)]) == 1  # before: a raw traceback
    message = capsys.readouterr().err
    checkpoint = rescued(elsewhere, "checkpoint-2")
    assert (
        f"rlvr train: error: step 2: checkpoint-2 could not be written in {run} ({reason}" in message
        and f"the checkpoints before it are whole (last: {run / 'checkpoint-1'}). The run's state at step 2 was "
        f"written to {checkpoint} instead"
        in message
        and "Traceback" not in message
    )
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-1"] and not hidden(run)
    assert checkpoint_problem(run / "checkpoint-1") is None and checkpoint_problem(checkpoint) is None
    # space again: the rescued checkpoint goes back, and the run continues from it
    monkeypatch.undo()
    checkpoint.rename(run / "checkpoint-2")
    assert (
        main(["train", "--config", str(train_config(tmp_path, tiny_model_dir, max_steps=3)), "--resume"]) == 0
    )
    assert f"--resume: continuing from {run / 'checkpoint-2'} (step 2 of 3)" in capsys.readouterr().out


def test_the_final_model_of_a_run_without_checkpoints_is_rescued(
    tiny_model_dir, tmp_path, elsewhere, monkeypatch, capsys
):
    run = tmp_path / "run"
    config = train_config(tmp_path, tiny_model_dir, save_steps=0)  # the model exists only in memory
    fill(monkeypatch, run, "final")
    assert main(["train", "--config", str(config)]) == 1  # before: a traceback, and all training lost
    final = rescued(elsewhere, "final")
    message = capsys.readouterr().err
    assert f"step 2: final could not be written in {run} (No space left on device" in message
    assert f"The trained model was written to {final} instead: move it to {run / 'final'}" in message
    assert not (run / "final").exists() and not hidden(run)
    model, _ = rlvr.models.load_policy(rlvr.config.ModelConfig(name_or_path=str(final)))  # whole, and loads
    assert any(p.abs().sum() > 0 for p in model.parameters())


def test_a_result_that_can_be_written_nowhere_says_it_is_lost(
    tiny_model_dir, tmp_path, elsewhere, monkeypatch, capsys
):
    fill(monkeypatch, tmp_path)  # the run's directory and both rescue directories
    assert main(["train", "--config", str(train_config(tmp_path, tiny_model_dir, save_steps=0))]) == 1
    message = capsys.readouterr().err
    assert (
        f"It could not be written elsewhere either ({elsewhere}: No space left on device; {tmp_path / 'home'}: "
        "No space left on device): the trained model is lost. Free space and train again" in message
    )
    assert not hidden(tmp_path) and not list(tmp_path.rglob("rlvr-rescued/*"))


def test_a_log_that_cannot_be_appended_costs_its_lines_not_the_run(
    tiny_model_dir, tmp_path, monkeypatch, capsys
):
    import rlvr.trainer.logging as logging

    append = logging.append_jsonl

    def full_at_step_2(path, record):
        if record.get("step") == 2:
            with open(path, "a") as f:
                f.write('{"step": 2, "los')  # a write cut short, as a full disk leaves it
            raise ENOSPC
        append(path, record)

    monkeypatch.setattr(logging, "append_jsonl", full_at_step_2)
    assert main(["train", "--config", str(train_config(tmp_path, tiny_model_dir, max_steps=3))]) == 0
    run = tmp_path / "run"
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 3]  # every line whole
    assert {r["step"] for r in read_jsonl(run / "completions.jsonl")} == {1, 3}
    warnings = capsys.readouterr().err
    assert warnings.count("warning: could not append to") == 2  # once per file
    assert (run / "final" / "model.safetensors").exists()


# ------------------------------------------------------------------------- checked before the work
@pytest.fixture
def no_model(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the output directory was checked")

    monkeypatch.setattr("rlvr.trainer.trainer.load_policy", refuse)
    monkeypatch.setattr(rlvr.models, "load_policy", refuse)


def read_only_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "read-only"
    directory.mkdir()
    directory.chmod(0o555)
    if os.access(directory, os.W_OK):  # root: permissions do not bind
        directory.chmod(0o755)
        pytest.skip("running as root: chmod does not make a directory read-only")
    return directory


def full_disk(monkeypatch):
    monkeypatch.setattr(rlvr.outputs, "probe", lambda directory: (_ for _ in ()).throw(ENOSPC))


@pytest.mark.parametrize("where", ["full", "read-only", "sysfs"])
def test_train_refuses_an_output_dir_it_cannot_write_before_the_model_loads(
    tiny_model_dir, tmp_path, monkeypatch, capsys, no_model, where
):
    if where == "full":
        full_disk(monkeypatch)
        output, reason = tmp_path / "run", "No space left on device"
    elif where == "read-only":
        output, reason = read_only_dir(tmp_path) / "run", "Permission denied"
    else:  # not writable even by root
        output, reason = Path("/sys/rlvr-run"), None
        try:
            with tempfile.TemporaryFile(dir="/sys"):
                pytest.skip("/sys is writable here")
        except OSError:
            pass
    config = train_config(tmp_path, tiny_model_dir, output_dir=str(output))
    assert main(["train", "--config", str(config)]) == 2  # before: the model loaded, then a traceback
    message = capsys.readouterr().err
    assert f"rlvr train: error: training.output_dir {output} cannot be written: " in message
    assert reason is None or f"{reason} (it would be made in {output.parent})" in message


@pytest.mark.parametrize("where", ["full", "read-only"])
def test_eval_refuses_an_output_it_cannot_write_before_the_model_loads(
    tmp_path, monkeypatch, capsys, no_model, where
):
    if where == "full":
        full_disk(monkeypatch)
        output = tmp_path / "out"
    else:
        output = read_only_dir(tmp_path) / "out"
    argv = ["eval", "--model", "m", "--dataset", "arithmetic", "--output", str(output)]
    assert main(argv) == 2  # before: every problem generated and scored, then a traceback
    assert f"rlvr eval: error: --output {output} cannot be written: " in capsys.readouterr().err


def test_eval_results_that_cannot_be_written_are_rescued(
    tiny_model_dir, tmp_path, elsewhere, monkeypatch, capsys
):
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"question": "1 + 1?", "answer": "2"}) + "\n")
    output = tmp_path / "out"
    write_text = Path.write_text

    def full_disk(self, *args, **kwargs):  # the disk fills during the evaluation
        if self.is_relative_to(output):
            write_text(self, "")  # created, then nothing fits: what Python leaves on a full disk
            raise ENOSPC
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    argv = ["eval", "--model", str(tiny_model_dir), "--dataset", str(data), "--output", str(output)]
    assert main([*argv, "--max-new-tokens", "2", "--no-progress"]) == 1  # before: a traceback, results lost
    out = capsys.readouterr()
    results = rescued(elsewhere, "out")
    assert "accuracy" in out.out  # the figures were printed all the same
    assert (
        f"rlvr eval: error: summary.json and predictions.jsonl could not be written in {output} (No space left "
        f"on device; "
        in out.err
        and f"no partial file was left there. It was written to {results} instead" in out.err
    )
    assert sorted(p.name for p in output.iterdir()) == []  # before: an empty .summary.json.tmp
    assert json.loads((results / "summary.json").read_text())["metrics"]["num_problems"] == 1
    assert len(read_jsonl(results / "predictions.jsonl")) == 1


def test_prepare_model_refuses_a_cache_it_cannot_write_before_converting(tmp_path, monkeypatch, capsys):
    import rlvr.models.prepare as prepare

    def refuse(*args, **kwargs):
        raise AssertionError("converted before the cache was checked")

    monkeypatch.setattr(prepare, "convert_gguf", refuse)  # before: a minute of conversion, then a traceback
    full_disk(monkeypatch)
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    argv = ["prepare-model", str(tmp_path / "model.gguf"), "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 2
    message = capsys.readouterr().err
    assert f"rlvr prepare-model: error: the model cache {tmp_path / 'cache' / 'gguf'}" in message
    assert "cannot be written: No space left on device" in message


def test_a_result_rewritten_on_a_filling_disk_keeps_its_old_files_together(tmp_path, elsewhere, monkeypatch):
    """`rlvr eval --overwrite` on a disk that fills between its two files: the old predictions.jsonl and
    summary.json stay a pair (before: the new predictions beside the old summary, which scripts read as whole)."""
    from rlvr.outputs import ResultNotWritten, write_files_or_rescue

    output = tmp_path / "base"
    output.mkdir()
    (output / "predictions.jsonl").write_text("old predictions\n")
    (output / "summary.json").write_text("old summary\n")
    write_text = Path.write_text

    def full_at_summary(self, *args, **kwargs):
        if self.name == ".summary.json.tmp":
            raise ENOSPC
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_at_summary)
    with pytest.raises(ResultNotWritten):
        write_files_or_rescue(output, {"predictions.jsonl": "new\n", "summary.json": "new\n"}, "eval")
    assert (output / "predictions.jsonl").read_text() == "old predictions\n"
    assert (output / "summary.json").read_text() == "old summary\n"
    assert sorted(p.name for p in output.iterdir()) == ["predictions.jsonl", "summary.json"]


@pytest.mark.parametrize("rescued", [None, "/elsewhere/final-merged"])
def test_a_merged_copy_that_cannot_be_written_says_the_adapter_is_whole(tmp_path, rescued):
    """final/ (the adapter) is written before final-merged/: when only the merged copy fails the message must
    not call the trained model lost nor advise --resume, which now finds a finished run and does nothing."""
    from types import SimpleNamespace

    from rlvr.outputs import ResultNotWritten
    from rlvr.trainer.saving import CheckpointingMixin

    run = SimpleNamespace(output_dir=tmp_path, step=3)
    rescue = Path(rescued) if rescued else None
    exc = ResultNotWritten(tmp_path / "final-merged", "No space left on device", rescue, [])
    message = CheckpointingMixin.not_written(run, exc)
    assert f"The adapter in {tmp_path / 'final'} is whole; only the merged copy is missing" in message
    assert "lost" not in message and "--resume" not in message
