"""The shape of the source tree (../shared/STYLE.md): no import circle across packages, no file over 600 lines,
every module saying what it is, and the `rlvr` command imported by nothing but `python -m rlvr`."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
MAX_LINES = 600


def _load_script():
    spec = importlib.util.spec_from_file_location("import_cycles", ROOT / "scripts" / "import_cycles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SOURCES = sorted(SRC.rglob("*.py"))


def test_no_import_circle_spans_packages():
    spanning = [(c, p) for c, p in _load_script().cross_package_cycles(SRC) if len(p) > 1]
    assert spanning == []


def test_the_cycle_finder_sees_a_circle_through_function_level_imports(tmp_path):
    # the checker must count imports inside functions: the circle it was written for ran through them
    (tmp_path / "pkg" / "a").mkdir(parents=True)
    (tmp_path / "pkg" / "b").mkdir()
    for init in ("pkg", "pkg/a", "pkg/b"):
        (tmp_path / init / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a" / "x.py").write_text("def f():\n    from pkg.b.y import g\n")
    (tmp_path / "pkg" / "b" / "y.py").write_text("from ..a import x\n")
    found = _load_script().cross_package_cycles(tmp_path)
    assert found == [(["pkg.a.x", "pkg.b.y"], {"pkg.a", "pkg.b"})]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_module_is_short_and_says_what_it_is(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"{path.name} has over {MAX_LINES} lines: split it"
    docstring = ast.get_docstring(ast.parse(text))
    if path.name == "__init__.py" and not text.strip():
        return
    assert docstring and docstring.splitlines()[0].strip(), f"{path.name} has no docstring saying what it is"


def test_only_main_imports_the_command_line():
    importers = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if "rlvr.cli" in names:
                importers.append(path.relative_to(SRC))
    assert importers == [Path("rlvr/__main__.py")]


@pytest.mark.parametrize("path", sorted((SRC / "rlvr" / "config").glob("*.py")), ids=lambda p: p.name)
def test_every_config_field_has_a_docstring(path):
    # STYLE.md: "each field with a one-line docstring"; `rlvr train --help`-level documentation lives there
    missing = []
    for cls in (node for node in ast.parse(path.read_text()).body if isinstance(node, ast.ClassDef)):
        for field, after in zip(cls.body, [*cls.body[1:], None]):
            is_doc = isinstance(after, ast.Expr) and isinstance(getattr(after, "value", None), ast.Constant)
            if isinstance(field, ast.AnnAssign) and not is_doc:
                missing.append(f"{cls.name}.{field.target.id}")
    assert missing == []
