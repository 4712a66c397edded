"""A reward call is always bounded, in train and eval, in the training process and in a worker; a reward that
ends the process itself is an error naming it; a reward that raised is not called again per completion."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from rlvr.cli import build_parser, main
from rlvr.config import GRPOConfig
from rlvr.rewards.pool import RewardPool
from rlvr.rewards.scoring import RewardError, RewardTimeout, call_rewards

SRC = Path(__file__).resolve().parents[1] / "src"


def sleeps(prompts, completions, **kwargs):
    time.sleep(1000)  # waiting in a system call
    return [0.0] * len(completions)


def spins(prompts, completions, **kwargs):
    while True:  # busy in Python, and deaf to errors: what a retry loop around a flaky call looks like
        try:
            sum(range(1000))
        except Exception:
            pass


def swallows(prompts, completions, **kwargs):
    started = time.monotonic()
    while time.monotonic() - started < 2.0:
        try:
            time.sleep(0.05)
        except BaseException:  # a bare except: the interruption too
            pass
    return [1.0] * len(completions)


def healthy(prompts, completions, **kwargs):
    return [1.0] * len(completions)


@pytest.mark.parametrize(
    ("reward", "how"),
    [
        (sleeps, "interrupted after 0.5s"),
        (spins, "interrupted after 0.5s"),
        (swallows, "returned after its limit of 0.5s"),  # kept running past the interruptions: fails anyway
    ],
)
def test_a_call_in_this_process_is_stopped_at_its_limit(reward, how):
    name = reward.__name__
    started = time.monotonic()
    with pytest.raises(
        RewardTimeout,
        match=rf"^reward function '{name}' took longer than rewards.timeout=0.5s on completions 0..1 \({how}\): "
        "raise rewards.timeout if it is only slow$",
    ):
        call_rewards([reward], [name], ["q", "q"], ["a", "b"], {}, timeout=0.5)
    assert time.monotonic() - started < 10  # the limit and a second of slack, on a machine that may be busy
    assert signal.getsignal(signal.SIGURG) == signal.SIG_DFL  # put back
    assert call_rewards([healthy], ["healthy"], ["q"], ["a"], {}, timeout=0.5) == [[1.0]]


def test_a_call_off_the_main_thread_fails_when_it_returns_late():
    # no signal reaches another thread: the call cannot be cut short, but its late answer is refused
    def late(prompts, completions, **kwargs):
        time.sleep(2.5)  # the interruption sent at 0.3 s is taken when the sleep ends, 2.2 s later
        return [1.0]

    errors = []

    def run():
        try:
            call_rewards([late], ["late"], ["q"], ["a"], {}, timeout=0.3)
        except RewardTimeout as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert errors and "returned after its limit of 0.3s" in errors[0]


def run_script(text):
    """Run a Python script with this checkout's rlvr: a process the hard time limit may end."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(text)], capture_output=True, text=True, env=env, timeout=120
    )


SPINS_IN_A_THREAD = """
import threading
import time
from rlvr.rewards import deadline
from rlvr.rewards.scoring import RewardTimeout, call_rewards

deadline.GRACE = 2.0  # before: the process ended here 2-4 s past the limit, with every thread's stack


def spins(prompts, completions, **kwargs):
    while True:
        try:
            sum(range(1000))
        except Exception:
            pass


def healthy(prompts, completions, **kwargs):
    return [1.0] * len(completions)


def score():  # as the producer of rollout.max_staleness does, off the main thread
    try:
        call_rewards([spins], ["spins"], ["q", "q"], ["a", "b"], {}, timeout=0.5)
    except RewardTimeout as exc:
        print(exc, flush=True)
    for _ in range(20):  # no interruption is left to hit the calls after it
        assert call_rewards([healthy], ["healthy"], ["q"], ["a"], {}, timeout=0.5) == [[1.0]]


thread = threading.Thread(target=score)
started = time.monotonic()
thread.start()
thread.join()
time.sleep(6.0)  # past 2 x GRACE: no timer is left to end the process
print(f"done in {time.monotonic() - started:.1f}s", flush=True)
"""


def test_a_call_busy_in_python_off_the_main_thread_is_interrupted_at_its_limit():
    done = run_script(SPINS_IN_A_THREAD)
    assert done.returncode == 0, done.stderr
    first, last = done.stdout.splitlines()
    assert first == (
        "reward function 'spins' took longer than rewards.timeout=0.5s on completions 0..1 (interrupted after "
        "0.5s): raise rewards.timeout if it is only slow"
    )
    assert float(last.split()[2].rstrip("s")) < 6.0 + 5  # the limit, the sleep, and slack for a busy machine


def test_an_interruption_that_arrives_as_the_call_ends_leaves_the_watcher_free():
    """The watcher sends a thread's interruption while that thread waits for the watcher's lock in remove():
    it is taken as the lock is, and the lock must not stay held (before: an RLock held by a dead thread, the
    watcher stuck, every later call under a limit blocked, the process ended by faulthandler)."""
    from rlvr.rewards import deadline
    from rlvr.utils import raise_in_thread

    began, results = threading.Event(), []

    def reward():
        began.set()
        time.sleep(0.3)  # returns well inside its limit
        return 1.0

    def worker():
        try:
            results.append(deadline.call_with_limit(reward, 30.0))
        except deadline.TimeLimitExceeded as exc:
            results.append(str(exc))

    thread = threading.Thread(target=worker)
    thread.start()
    began.wait()
    with deadline._watcher.changed:  # what the watcher holds as it sends
        time.sleep(0.6)  # the reward has returned: the worker waits for this lock in remove()
        (entry,) = [call for call in deadline._watcher.calls if call.thread == thread.ident]
        entry.expired, entry.next_signal = True, float("inf")
        entry.sent, entry.sent_at = raise_in_thread(thread.ident, deadline._Expired), time.monotonic()
    thread.join(10)
    assert not thread.is_alive() and results == ["returned after its limit of 30s"]  # expired, as forced
    lock = deadline._watcher.changed._lock
    assert lock.acquire(timeout=1)
    lock.release()
    assert deadline.call_with_limit(lambda: 2, 5.0) == 2


STUCK_IN_C = """
import time
from rlvr.rewards import deadline
from rlvr.rewards.scoring import call_rewards

deadline.GRACE = 1.0


def healthy(prompts, completions, **kwargs):
    return [1.0] * len(completions)


def stuck_in_c(prompts, completions, **kwargs):
    return [float(sum(range(10**14)))]  # one C call that holds the GIL: no signal handler runs until it ends


for _ in range(3):  # calls that end in time leave no timer behind to end the process later
    call_rewards([healthy], ["healthy"], ["q"], ["a"], {}, timeout=0.2)
time.sleep(1.5)
print("still here", flush=True)
call_rewards([stuck_in_c], ["stuck_in_c"], ["q"], ["a"], {}, timeout=1.0)
print("not reached", flush=True)
"""


def test_a_call_that_cannot_be_interrupted_ends_the_process_after_the_grace():
    started = time.monotonic()
    done = run_script(STUCK_IN_C)
    assert done.returncode == 1 and done.stdout == "still here\n", done.stderr
    # faulthandler's header, then every thread's stack: GRACE to 2 x GRACE past the limit of 1 s
    assert re.match(r"Timeout \(0:00:0[23][.\d]*\)!\n", done.stderr), done.stderr
    assert "line 14 in stuck_in_c" in done.stderr
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("num_workers", [0, 1])
def test_the_default_limit_applies_in_and_out_of_process(num_workers):
    config = GRPOConfig.from_dict({"rewards": {"num_workers": num_workers}})
    assert config.rewards.timeout == 600.0  # before: None, no limit, and none possible with num_workers 0
    eval_default = build_parser("eval").parse_args(["eval", "--model", "m", "--output", "o"]).reward_timeout
    assert eval_default == 600.0


# ------------------------------------------------------------------------------------ the commands
HANG = """
import time

def hang(prompts, completions, **kwargs):
    time.sleep(1000)
    return [0.0] * len(completions)
"""


def tiny_train_config(tmp_path, tiny_model_dir, reward, **rewards):
    config = {
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"dataset": "arithmetic"},
        "generation": {"num_generations": 2, "max_completion_length": 4},
        "training": {"output_dir": str(tmp_path / "run"), "max_steps": 2, "batch_size": 2, "save_steps": 1},
        "algorithm": {"beta": 0.0},
        "rewards": {"functions": [reward], **rewards},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_train_stops_a_hanging_reward_in_the_training_process(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "hang.py").write_text(HANG)
    config = tiny_train_config(tmp_path, tiny_model_dir, f"{tmp_path / 'hang.py'}:hang", timeout=1)
    started = time.monotonic()
    assert main(["train", "--config", str(config)]) == 2  # before: refused, "needs rewards.num_workers >= 1"
    error = capsys.readouterr().err
    assert (
        "rlvr train: error: reward function 'hang' took longer than rewards.timeout=1s on completions 0..1"
        in error
    )
    assert time.monotonic() - started < 60


def test_eval_stops_a_hanging_reward(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "hang.py").write_text(HANG)
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"question": "1 + 1?", "answer": "2"}) + "\n")
    argv = ["eval", "--model", str(tiny_model_dir), "--dataset", str(data), "--output", str(tmp_path / "out")]
    argv += ["--reward", f"{tmp_path / 'hang.py'}:hang", "--max-new-tokens", "2", "--no-progress"]
    assert (
        main([*argv, "--reward-timeout", "1"]) == 2
    )  # before: no such option, and the command hung for ever
    error = capsys.readouterr().err
    assert "reward function 'hang' took longer than --reward-timeout=1s on completions 0..0" in error
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------- a reward that ends the process
EXITS = """
import sys

def exits(prompts, completions, **kwargs):
    sys.exit({code})
"""


@pytest.mark.parametrize("num_workers", [0, 1])  # in the training process, and in a worker
@pytest.mark.parametrize("code", [0, 3])  # 0: the run would end "successfully", with no model written
def test_a_reward_that_calls_sys_exit_is_an_error_naming_it(tmp_path, num_workers, code):
    (tmp_path / "exits.py").write_text(EXITS.format(code=code))
    pool = RewardPool([f"{tmp_path / 'exits.py'}:exits"], num_workers=num_workers)
    try:
        with pytest.raises(
            RewardError,
            match=rf"^reward function 'exits' called sys.exit\({code}\) \(at exits.py:5\): a reward returns its "
            r"values, and never ends the process, on one of completions 0..1$",
        ):
            pool.score_values(["q", "q"], ["a", "b"], {})
    finally:
        pool.close()


def test_train_with_a_reward_calling_sys_exit_0_does_not_end_as_a_success(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "exits.py").write_text(EXITS.format(code=0))
    config = tiny_train_config(tmp_path, tiny_model_dir, f"{tmp_path / 'exits.py'}:exits")
    assert main(["train", "--config", str(config)]) == 2  # before: SystemExit(0), exit status 0, no final/
    assert "reward function 'exits' called sys.exit(0)" in capsys.readouterr().err


# ------------------------------------------------------------------ a failing reward is called once
PAID = """
def judge(prompts, completions, **kwargs):
    with open({log!r}, "a") as log:  # what a paid or side-effecting reward does: each call counts
        log.write(f"{{len(completions)}}\\n")
    if any("bad" in c for c in completions):
        raise RuntimeError("the judge choked")
    return [1.0] * len(completions)
"""


@pytest.mark.parametrize("num_workers", [0, 1])
def test_a_reward_that_raised_is_not_called_again_per_completion(tmp_path, num_workers):
    log = tmp_path / "calls.log"
    (tmp_path / "judge.py").write_text(PAID.format(log=str(log)))
    pool = RewardPool([f"{tmp_path / 'judge.py'}:judge"], num_workers=num_workers)
    try:
        with pytest.raises(
            RewardError,
            match=r"^reward function 'judge' raised RuntimeError: the judge choked \(at judge.py:6\), on one of "
            r"completions 0..3 \(it is not called again to find which: it may be paid or have side effects\)$",
        ):
            pool.score_values(["q"] * 4, ["ok", "ok", "bad", "ok"], {})
    finally:
        pool.close()
    assert log.read_text() == "4\n"  # before: "4\n1\n1\n1\n", three more calls to find completion 2
