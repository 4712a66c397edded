"""The code that runs inside the sandbox: it sets the resource limits, then runs a program (`run`), judges a program
against tests (`judge`), or serves a program's functions to the judge (`serve`).

Standard library only, Python 3.8 or later: the sandbox's interpreter need not be the one running rlvr, and this
file is passed as text (`python -I -S -B -c <this file> MODE SPEC`), so nothing of rlvr has to be readable inside.

Why a judge and a separate program process (issue 22, point 3): a program and tests in one interpreter cannot be
kept apart, since the program can patch `AssertionError`, builtins, `sys.exit`, the harness itself, or return an
object whose `__eq__` is always True. Here the program runs in its own process (`serve`) and only answers calls;
the tests run in the judge, whose interpreter the program never touches, on plain values (int, str, list, ...)
decoded from the program's replies; the judge reports each test's outcome on a pipe the program does not hold,
each line led by a nonce the program never sees. The judge is made non-dumpable, so a program running as the same
user can neither ptrace it nor open its `/proc/PID/fd` or `/proc/PID/mem`.
"""

from __future__ import annotations

import ast
import base64
import builtins
import json
import os
import resource
import signal
import subprocess
import sys
import traceback

MAX_LINE = 16 << 20  # bytes in one reply of the program: a larger one is a broken (or hostile) program
BIG_INT_BITS = 60  # ints wider than this travel as hex: decimal conversion of huge ints is capped (3.11+)


def main() -> None:
    mode, spec = sys.argv[1], json.loads(sys.argv[2])
    set_limits(spec.get("limits", {}))
    if mode == "run":
        run(spec)
    elif mode == "judge":
        judge(spec)
    elif mode == "serve":
        serve(spec)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


def set_limits(limits: dict) -> None:
    """`{"RLIMIT_X": [soft, hard]}`: hard limits the program cannot raise again, never above the current ones."""
    for name, (soft, hard) in limits.items():
        kind = getattr(resource, name)
        current = resource.getrlimit(kind)[1]
        if current != resource.RLIM_INFINITY:
            soft, hard = min(soft, current), min(hard, current)
        resource.setrlimit(kind, (soft, hard))


def send(fd: int, text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    while data:
        data = data[os.write(fd, data) :]


def describe(exc: BaseException) -> str:
    """`Type: message`, at most a few hundred characters."""
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return text if len(text) <= 300 else text[:297] + "..."


# ------------------------------------------------------------------------------------------------ run a program
def run(spec: dict) -> None:
    """Compile `main.py`, say on the channel whether it compiled, close the channel, then run it as `__main__`."""
    channel, path = spec["channel"], spec["main"]
    with open(path, "rb") as file:
        source = file.read()
    try:
        code = compile(source, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes in the source
        send(channel, json.dumps({"status": "syntax_error", "detail": describe(exc)}) + "\n")
        raise SystemExit(1) from None
    send(channel, json.dumps({"status": "started"}) + "\n")
    os.close(channel)  # nothing the program says can reach the channel
    sys.argv = [path]
    namespace = {"__name__": "__main__", "__file__": path, "__builtins__": builtins}
    try:
        exec(code, namespace)
    except SystemExit:
        raise
    except BaseException as exc:
        # The traceback without this file's frame, as `python main.py` would print it.
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
        sys.stderr.flush()
        raise SystemExit(1) from None


# ------------------------------------------------------------------------------------- values across the pipe
# Scalars travel as JSON scalars; everything else as a one-key object naming its type. Decoding builds only plain
# built-in values, so a reply cannot smuggle an object with its own __eq__ into the judge.
def encode(value, depth: int = 0):
    if depth > 100:
        raise ValueError("value nested more than 100 deep")
    if value is None or isinstance(value, (bool, str)):
        return str(value) if isinstance(value, str) and type(value) is not str else value
    if isinstance(value, int):
        number = int(value)
        return {"h": format(number, "x")} if number.bit_length() > BIG_INT_BITS else number
    if isinstance(value, float):
        return float(value)
    if isinstance(value, complex):
        return {"c": [float(value.real), float(value.imag)]}
    if isinstance(value, (bytes, bytearray)):
        return {"y": base64.b64encode(bytes(value)).decode("ascii")}
    for kind, tag in ((list, "l"), (tuple, "t"), (set, "s"), (frozenset, "f")):
        if isinstance(value, kind):
            return {tag: [encode(item, depth + 1) for item in value]}
    if isinstance(value, dict):
        return {"d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    for convert in ("__index__", "__float__"):  # numpy scalars and the like, as the number they stand for
        if hasattr(type(value), convert):
            return encode(getattr(value, convert)(), depth + 1)
    if hasattr(value, "tolist"):  # numpy arrays
        return encode(value.tolist(), depth + 1)
    raise TypeError(f"cannot pass a {type(value).__name__} between the tests and the program")


_CONTAINERS = {"l": list, "t": tuple, "s": set, "f": frozenset}


def decode(data):
    if data is None or type(data) in (bool, int, float, str):
        return data
    if type(data) is not dict or len(data) != 1:
        raise ValueError("malformed value")
    ((tag, payload),) = data.items()
    if tag in _CONTAINERS and type(payload) is list:
        return _CONTAINERS[tag](decode(item) for item in payload)
    if tag == "d" and type(payload) is list:
        return {decode(pair[0]): decode(pair[1]) for pair in payload if _is_pair(pair)}
    if tag == "h" and type(payload) is str:
        return int(payload, 16)
    if tag == "c" and type(payload) is list and len(payload) == 2:
        return complex(float(payload[0]), float(payload[1]))
    if tag == "y" and type(payload) is str:
        return base64.b64decode(payload)
    raise ValueError("malformed value")


def _is_pair(pair) -> bool:
    if type(pair) is not list or len(pair) != 2:
        raise ValueError("malformed value")
    return True


# ------------------------------------------------------------------------ the program's side: serve its functions
def serve(spec: dict) -> None:
    """Define the program, then answer `{"call": name, "args": ..., "kwargs": ...}` lines with its results."""
    requests = os.fdopen(spec["request"], "rb")
    replies = spec["reply"]

    def reply(message: dict) -> None:
        try:
            line = json.dumps(message)
        except (TypeError, ValueError) as exc:
            line = json.dumps({"error": describe(exc)})
        for stream in (sys.stdout, sys.stderr):  # what it printed so far survives a kill at the end
            try:
                stream.flush()
            except Exception:
                pass
        send(replies, line + "\n")

    path = spec["program"]
    namespace = {"__name__": "solution", "__file__": path, "__builtins__": builtins}
    try:
        with open(path, "rb") as file:
            exec(compile(file.read(), path, "exec", dont_inherit=True), namespace)
    except BaseException as exc:  # SystemExit too: a program that exits while being defined defines nothing
        reply({"error": describe(exc)})
        return
    names = [name for name, value in namespace.items() if callable(value) and not name.startswith("__")]
    reply({"ready": names})
    while True:
        line = requests.readline()
        if not line:
            return
        try:
            message = json.loads(line)
            function = namespace.get(message["call"])
            if function is None:
                raise NameError(f"the program defines no {message['call']!r}")
            value = function(*decode(message["args"]), **decode(message["kwargs"]))
            reply({"value": encode(value)})
        except (
            BaseException
        ) as exc:  # SystemExit and KeyboardInterrupt too: the call failed, the server goes on
            reply({"error": describe(exc)})


# ------------------------------------------------------------------------------------- the judge: run the tests
class ProgramError(Exception):
    """The program raised, returned something that cannot be passed, or is gone."""


class Program:
    """The program in its own process, and the pipes to call its functions."""

    def __init__(self, boot: str, path: str) -> None:
        request_read, self.request_write = os.pipe()
        self.reply_read, reply_write = os.pipe()
        spec = {"request": request_read, "reply": reply_write, "program": path}
        # Its limits are the judge's (inherited); it gets no stdin and never the judge's channel (close_fds).
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", "-X", "utf8", "-c", boot, "serve", json.dumps(spec)],
            stdin=subprocess.DEVNULL,
            pass_fds=(request_read, reply_write),
        )
        os.close(request_read)
        os.close(reply_write)
        self.replies = os.fdopen(self.reply_read, "rb")
        self.gone: str | None = None
        self.killed = False  # by the judge, after a reply it could not read
        self.load_error: str | None = None
        self.names: list[str] = []
        try:
            first = self._receive()
        except ProgramError as exc:
            self.load_error = str(exc)
            return
        if "ready" not in first:
            self.stop()
            self.load_error = str(first.get("error", "the program sent no list of its functions"))
        else:
            self.names = [name for name in first["ready"] if type(name) is str]

    def call(self, name: str, args: tuple, kwargs: dict):
        if self.gone is not None:
            raise ProgramError(self.gone)
        try:
            request = json.dumps({"call": name, "args": encode(list(args)), "kwargs": encode(kwargs)})
        except (TypeError, ValueError) as exc:
            raise ProgramError(f"the test passed something the program cannot receive: {exc}") from None
        try:
            send(self.request_write, request + "\n")
        except OSError:
            self._lost()
        answer = self._receive()
        if "value" in answer:
            try:
                value = decode(answer["value"])
            except (ValueError, TypeError, RecursionError) as exc:
                raise ProgramError(f"the program's reply could not be read: {describe(exc)}") from None
            return value
        raise ProgramError(str(answer.get("error", "malformed reply")))

    def _receive(self) -> dict:
        line = self.replies.readline(MAX_LINE)
        if not line.endswith(b"\n"):
            self._lost()
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            message = None
        if type(message) is not dict:
            self.stop()
            self.gone = "the program wrote something that is not a reply on its reply pipe"
            raise ProgramError(self.gone)
        return message

    def _lost(self):
        self.stop()
        code = self.process.returncode
        self.gone = f"the program's process ended (exit code {code})"
        raise ProgramError(self.gone)

    def ending(self, exited: str) -> str:
        """The status for a program that is gone: timeout at the CPU limit (SIGXCPU at its soft limit; SIGKILL
        follows a second later at the hard one), crash for another signal, else `exited`."""
        code = self.process.poll()
        if self.killed:
            return exited
        if code == -signal.SIGXCPU:
            return "timeout"
        return "crash" if code is not None and code < 0 else exited

    def stop(self) -> None:
        if self.process.poll() is None:
            self.killed = True
            self.process.kill()
            self.process.wait()


class Remote:
    """A function of the program, called from the tests: arguments go over the pipe, plain values come back."""

    def __init__(self, program: Program, name: str) -> None:
        self.program, self.name = program, name

    def __call__(self, *args, **kwargs):
        return self.program.call(self.name, args, kwargs)

    def __repr__(self) -> str:
        return f"<program function {self.name}>"


def split_tests(tests: dict) -> tuple[list[tuple[bool, object]], str | None]:
    """[(is_case, code)] in order, and the name the candidate is bound to.

    `check`: HumanEval's `def check(candidate)` (`test`) and `entry_point`; each top-level statement of check's body
    that holds an `assert` is one case, the others are setup run in order. `asserts`: one case per string. `code`:
    a module whose top-level statements holding an `assert` are the cases.
    """
    kind = tests["kind"]
    if kind == "asserts":
        return [(True, compile(text, f"<test {i}>", "exec")) for i, text in enumerate(tests["asserts"])], None
    module = ast.parse(tests["code"], "<test>")
    statements, candidate = module.body, None
    if kind == "check":
        checks = [s for s in module.body if isinstance(s, ast.FunctionDef) and s.name == "check"]
        if checks and checks[-1].args.args:
            statements, candidate = checks[-1].body, checks[-1].args.args[0].arg
            statements = [s for s in statements if not _is_docstring(s)]
    steps = []
    for statement in statements:
        is_case = any(isinstance(node, ast.Assert) for node in ast.walk(statement))
        code = compile(ast.Module(body=[statement], type_ignores=[]), "<test>", "exec")
        steps.append((is_case, code))
    return steps, candidate


def _is_docstring(statement) -> bool:
    return isinstance(statement, ast.Expr) and isinstance(getattr(statement, "value", None), ast.Constant)


def judge(spec: dict) -> None:
    """Read {nonce, boot, program, tests} on stdin; report on the channel: the number of cases, each case's
    outcome as it ends, then the status (passed, failed, error, crash, syntax_error)."""
    _make_undumpable()
    config = json.loads(sys.stdin.buffer.read())
    channel = spec["channel"]
    os.set_inheritable(channel, False)
    nonce = config["nonce"]

    def report(message: dict) -> None:
        send(channel, nonce + " " + json.dumps(message) + "\n")

    path = config["program"]
    with open(path, "rb") as file:
        source = file.read()
    try:
        compile(source, path, "exec", dont_inherit=True)  # compiling runs none of the program's code
    except (SyntaxError, ValueError) as exc:
        report({"status": "syntax_error", "detail": describe(exc)})
        return
    tests = config["tests"]
    try:
        steps, candidate = split_tests(tests)
    except Exception as exc:  # the runner checked they compile; a newer syntax than this interpreter's, say
        report({"status": "test_error", "detail": describe(exc)})
        return
    report({"cases": sum(is_case for is_case, _ in steps)})
    program = Program(config["boot"], path)
    if program.load_error is not None:
        report({"status": program.ending("error"), "detail": program.load_error})
        return
    namespace = {"__name__": "__test__", "__builtins__": builtins}
    namespace.update((name, Remote(program, name)) for name in program.names)
    if tests["kind"] == "check":
        try:  # imports, helpers, METADATA and check itself
            exec(compile(tests["code"], "<test>", "exec"), namespace)
        except Exception as exc:
            program.stop()
            report({"status": "test_error", "detail": describe(exc)})
            return
    if candidate is not None:
        namespace[candidate] = Remote(program, tests["entry_point"])
    case, setup_failed, all_passed = 0, None, True
    for is_case, code in steps:
        outcome, detail = "pass", ""
        if setup_failed is not None:
            outcome, detail = "error", f"a setup step failed: {setup_failed}"
        else:
            try:
                exec(code, namespace)
            except AssertionError as exc:
                outcome, detail = "fail", describe(exc)
            except Exception as exc:
                outcome, detail = "error", describe(exc)
        if not is_case:
            setup_failed = detail if outcome != "pass" else None
            continue
        all_passed = all_passed and outcome == "pass"
        report({"case": case, "outcome": outcome, "detail": detail})
        case += 1
    if program.gone is not None:
        report({"status": program.ending("crash"), "detail": program.gone})
    else:
        report({"status": "passed" if all_passed else "failed", "detail": ""})
    program.stop()


def _make_undumpable() -> None:
    """prctl(PR_SET_DUMPABLE, 0): processes of the same user can no longer ptrace this one or open its /proc
    files (fd, mem, environ). Required: without it the program could reach the channel."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


if __name__ == "__main__":
    main()
