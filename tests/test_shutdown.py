"""No process of rlvr's outlives its command: `rlvr train` with a reward worker busy in a call is stopped with
SIGTERM (what schedulers and `kill` send), Ctrl-C, an error, or SIGKILL, and afterwards none of the processes it
started is left, and its output pipe closes (`rlvr train ... | cat` returns)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

SRC = Path(__file__).resolve().parents[1] / "src"

BUSY = """
import pathlib, time

def busy(prompts, completions, **kwargs):
    pathlib.Path({marker!r}).write_text("scoring")  # the test signals once a call is under way
    time.sleep(1000)
    return [0.0] * len(completions)
"""


def descendants(pid: int) -> set[int]:
    """Every process below `pid` in the process tree (from /proc: Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rpartition(")")[2].split()[1])  # the name in brackets may hold spaces
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's parent here may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def left_running(pids: set[int], seconds: float = 10.0) -> set[int]:
    deadline = time.monotonic() + seconds
    while any(running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return {p for p in pids if running(p)}


def stop_group(process: subprocess.Popen) -> None:
    """Kill whatever of the test's process group is left, so a failing test leaves nothing running either."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def wait_for(path: Path, process: subprocess.Popen, seconds: float = 240.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def start_training(tiny_model_dir: Path, tmp_path: Path, *overrides: str) -> tuple[subprocess.Popen, Path]:
    """`rlvr train` on a tiny run whose reward sleeps in a worker process; returns it and the file the reward
    writes when it is called."""
    marker = tmp_path / "scoring"
    (tmp_path / "busy.py").write_text(BUSY.format(marker=str(marker)))
    config = {
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"dataset": "arithmetic"},
        "generation": {"num_generations": 2, "max_completion_length": 4},
        "training": {"output_dir": str(tmp_path / "run"), "max_steps": 3, "batch_size": 2, "save_steps": 1},
        "algorithm": {"beta": 0.0},
        "rewards": {"functions": [f"{tmp_path / 'busy.py'}:busy"], "num_workers": 1},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "rlvr", "train", "--config", str(tmp_path / "run.yaml"), *overrides],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # its own process group, as a shell gives a pipeline
    )
    return process, marker


@pytest.mark.parametrize(
    ("signum", "to_group", "status", "message"),
    [
        # before: no message, and the busy worker and the resource tracker ran on, holding the pipe open
        (signal.SIGTERM, False, 143, "rlvr train: terminated (SIGTERM). Its finished checkpoints are whole"),
        # a scheduler that signals every process of the job (Slurm, systemd): the worker dies at once
        (signal.SIGTERM, True, 143, "rlvr train: terminated (SIGTERM). Its finished checkpoints are whole"),
        # Ctrl-C reaches the whole group; the workers ignore it and the trainer stops them
        (signal.SIGINT, True, 130, "rlvr train: interrupted. Its finished checkpoints are whole"),
    ],
)
def test_a_signal_leaves_no_process_behind(tiny_model_dir, tmp_path, signum, to_group, status, message):
    process, marker = start_training(tiny_model_dir, tmp_path)
    try:
        wait_for(marker, process)
        started = descendants(process.pid)
        assert started, "the run started no worker process"
        (os.killpg if to_group else os.kill)(process.pid, signum)
        # returns once every holder of the pipe has closed it: the trainer, its worker, the resource tracker
        output, _ = process.communicate(timeout=60)
    finally:
        stop_group(process)
    assert process.returncode == status, output
    assert message in output and "Traceback" not in output
    assert left_running(started) == set()


def test_an_error_leaves_no_process_behind(tiny_model_dir, tmp_path):
    process, marker = start_training(tiny_model_dir, tmp_path, "rewards.timeout=2")
    try:
        wait_for(marker, process)
        started = descendants(process.pid)
        output, _ = process.communicate(timeout=120)
    finally:
        stop_group(process)
    assert process.returncode == 2, output
    assert "reward function 'busy' took longer than rewards.timeout=2s" in output
    assert left_running(started) == set()


POOL_SCRIPT = """
import sys
from rlvr.rewards.pool import RewardPool

pool = RewardPool([sys.argv[1]], num_workers=1)
pool.score_values(["q"], ["a"], {})  # never returns: the worker sleeps
"""


def test_a_worker_ends_when_its_parent_is_killed(tmp_path):
    # SIGKILL (a scheduler's last word, or a second SIGTERM) gives the parent no chance to stop its workers.
    marker = tmp_path / "scoring"
    (tmp_path / "busy.py").write_text(BUSY.format(marker=str(marker)))
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(POOL_SCRIPT), f"{tmp_path / 'busy.py'}:busy"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        wait_for(marker, process)
        started = descendants(process.pid)  # the worker and multiprocessing's resource tracker
        assert len(started) == 2
        process.kill()
        process.communicate(timeout=30)  # the pipe closes once the worker and the tracker are gone
    finally:
        stop_group(process)
    assert left_running(started) == set()  # before: the worker slept on, re-parented
