"""The README's first sections, read as a newcomer would: every command they name exists and parses."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from rlvr.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FIRST = README[: README.index("\n## What a run writes")]  # the intro, "Two commands", "Using it"
MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")


def code_lines(text: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


RLVR_LINES = [line for line in code_lines(FIRST) if re.match(r"(\.venv/bin/)?rlvr ", line)]


def test_first_sections_name_commands():
    assert len(RLVR_LINES) >= 8  # the "Using it" block; an empty match would make the tests below vacuous
    assert any(line.startswith("make demo") for line in code_lines(FIRST))


@pytest.mark.parametrize("line", RLVR_LINES)
def test_each_rlvr_line_parses(line):
    argv = shlex.split(line, comments=True)[1:]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed why: an unknown command, flag or a missing argument
        pytest.fail(f"README line does not parse ({exc.code}): {line}")
    assert args.command in COMMANDS


def test_rlvr_commands_named_in_prose_exist():
    named = set(re.findall(r"`(?:\.venv/bin/)?rlvr ([a-z][a-z-]*)", FIRST))
    assert named and named <= set(COMMANDS), named - set(COMMANDS)


def test_make_targets_named_exist():
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", MAKEFILE, flags=re.M))
    named = set(re.findall(r"`make ([a-z][\w-]*)", FIRST))
    named |= {line.split()[1] for line in code_lines(FIRST) if line.startswith("make ")}
    assert {"demo", "test", "setup"} <= named
    assert named <= targets, named - targets


def test_paths_and_variables_named_exist():
    for config in re.findall(r"configs/[\w.-]+\.yaml", FIRST):
        assert (ROOT / config).is_file(), config
    assert re.search(r"^VENV \?= \.venv$", MAKEFILE, flags=re.M)  # where the README says rlvr lives
    assert ".venv/bin/rlvr" in FIRST and "source .venv/bin/activate" in FIRST
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "src" / "rlvr").rglob("*.py"))
    variables = set(re.findall(r"\bRLVR_[A-Z_]+\b", FIRST))
    assert "RLVR_DATA_DIR" in variables
    for name in variables:
        assert f'"{name}"' in source, f"the README names {name}, which rlvr never reads"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_makefile_sets_the_data_dir_only_where_it_exists(tmp_path):
    clone = tmp_path / "clone"
    clone.mkdir()
    shutil.copy(ROOT / "Makefile", clone)
    env = {k: v for k, v in os.environ.items() if k not in ("RLVR_DATA_DIR", "MAKEFLAGS", "MAKELEVEL")}

    def data_dir(**extra: str) -> str:
        run = subprocess.run(
            ["make", "-s", "-C", str(clone), "data-dir"],
            env={**env, **extra},
            capture_output=True,
            text=True,
            check=True,
        )
        return run.stdout.strip()

    # a newcomer's clone: no ../shared/data, so nothing is exported
    assert data_dir() == "RLVR_DATA_DIR=(unset: datasets come from the hub or from files)"
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert data_dir() == f"RLVR_DATA_DIR={tmp_path / 'shared' / 'data'}"  # the project's machines
    assert data_dir(RLVR_DATA_DIR="/elsewhere") == "RLVR_DATA_DIR=/elsewhere"  # the user's own wins


def test_the_reasoning_gym_task_count_is_the_librarys():
    factory = pytest.importorskip("reasoning_gym.factory")
    stated = re.search(r"reasoning-gym\]\([^)]*\)'s (\d+) procedural tasks", README)
    assert stated, "the README no longer states how many reasoning-gym tasks there are"
    assert int(stated.group(1)) == len([name for name in factory.DATASETS if name != "composite"])
