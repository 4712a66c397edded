"""The reward server: HTTP validation, gold lookup, limits and logging around the reward registry.

`POST /get_reward` takes align-anything's request `{"prompts", "responses", "golden_responses"?}` or OpenRLHF's
`{"query", "prompts", "labels"?}` and answers `{"rewards", "scores", "extra_logs"}`. Scoring runs in the worker
processes of a `RewardPool`, one request at a time each; a reward call that overruns the timeout gets 504 and its
worker is replaced, so one bad input cannot stall the others. Every error, a reward's fault or the server's, is
answered as JSON `{"error": message}` with its status.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import math
import re
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from rlvr.argtypes import MAX_TIMEOUT
from rlvr.rewards.adapters import split_response
from rlvr.rewards.extraction import extract_golds
from rlvr.rewards.options import bind_options
from rlvr.rewards.pool import RewardPool, RewardPoolBusy, RewardTimeout
from rlvr.rewards.registry import needs_gold, resolve_rewards, weighted_sum
from rlvr.rewards.scoring import RewardError

QUESTION_FIELDS = ("question", "problem", "prompt", "query", "input")
ANSWER_FIELDS = ("answer", "ground_truth", "gold", "final_answer", "solution", "label")
_ROUTES = "POST /get_reward and GET /health"
_log = logging.getLogger("uvicorn.error")  # the server's own log, as uvicorn configures it


@dataclass
class ServerConfig:
    """What `rlvr serve-rewards` serves and how."""

    rewards: list[str]
    """Reward specs: registry names, `module:function`, `path/file.py:function`."""
    weights: list[float] | None = None
    """One weight per reward for the summed `rewards`; None: 1.0 each."""
    gold_path: str | None = None
    """JSONL of {question, answer} rows, to look up the gold answer of a prompt sent without one."""
    workers: int = 2
    """Scoring processes; each scores one request at a time."""
    api_key: str | None = None
    """When set, every request needs `Authorization: Bearer <api_key>`."""
    log_path: str | None = None
    """JSONL file that receives every scored sample (prompt, response, gold, each reward)."""
    request_timeout: float = 60.0
    """Seconds a request may wait for a free worker (else 503), then each reward may take on it (else 504, worker
    replaced)."""
    max_request_bytes: int = 16 * 2**20
    """Larger bodies are answered 413."""
    reward_options: dict[str, dict[str, Any]] | None = None
    """Options per reward, by its spec or name: `{code_tests: {sandbox: bubblewrap}}` (`rlvr.rewards.options`)."""


class Problem(Exception):
    """An HTTP error answer: `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ---------------------------------------------------------------------------------------------------------------
# Gold answers


def _normalize_space(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


class GoldIndex:
    """Gold answers by question: exact, then with whitespace normalised, then a question inside a longer prompt.

    The last step finds a dataset question embedded in a chat-templated or few-shot prompt. It only considers
    questions of at least `MIN_EMBEDDED` characters, prefers the longest one found, and gives up (None) when two
    different answers tie, so a short question cannot match by accident.

    >>> index = GoldIndex([("What is 2 + 3? Answer with a number only.", "5")])
    >>> index.lookup("<|im_start|>user\\nWhat is 2 + 3?  Answer with a number only.<|im_end|>")
    '5'
    """

    MIN_EMBEDDED = 32
    _CACHE_SIZE = 65536

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._exact: dict[str, str] = {}
        self._normalized: dict[str, str] = {}
        self._by_prefix: dict[str, list[str]] = {}
        for question, answer in pairs:
            self._exact.setdefault(question, answer)
            normalized = _normalize_space(question)
            if normalized in self._normalized:
                continue
            self._normalized[normalized] = answer
            if len(normalized) >= self.MIN_EMBEDDED:
                self._by_prefix.setdefault(normalized[: self.MIN_EMBEDDED], []).append(normalized)
        self._cache: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._exact)

    @classmethod
    def from_file(cls, path: str | Path) -> GoldIndex:
        """Read a JSONL (or JSON list) file of rows with a question field and an answer field.

        Question fields tried: question, problem, prompt, query, input; answer fields: answer, ground_truth, gold,
        final_answer, solution, label. GSM8K's `... #### 72` and a `\\boxed{}` solution give their final answer.
        """
        path = Path(path)
        if path.is_dir():
            raise ValueError(
                f"gold file {str(path)!r} is a directory, not a JSONL file: name the file inside it"
            )
        if not path.exists():
            raise FileNotFoundError(f"gold file {str(path)!r} does not exist")
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise ValueError(f"{path}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        rows = []
        if text.lstrip().startswith("["):
            try:
                rows = list(enumerate(json.loads(text), start=1))
            except (ValueError, RecursionError) as exc:  # RecursionError: brackets nested thousands deep
                line = getattr(exc, "lineno", "?")
                raise ValueError(f"{path}:{line}: not a JSON list ({exc}); {_GOLD_SHAPE}") from None
        else:
            for number, line in enumerate(text.split("\n"), start=1):
                if not line.strip():
                    continue
                try:
                    rows.append((number, json.loads(line)))
                except (ValueError, RecursionError) as exc:
                    where = (
                        f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else exc
                    )
                    raise ValueError(f"{path}:{number}: not a JSON object ({where}); {_GOLD_SHAPE}") from None
        if not rows:
            raise ValueError(f"gold file {str(path)!r} is empty: {_GOLD_SHAPE}")
        pairs = []
        first: dict[str, tuple[Any, int]] = {}  # question (whitespace normalised) -> its answer and line
        for number, row in rows:
            question = _first_field(row, QUESTION_FIELDS)
            answer = extract_golds(_first_field(row, ANSWER_FIELDS))  # a list: any of them counts
            if not isinstance(question, str) or answer is None:
                raise ValueError(
                    f"{path}:{number}: need a question field ({', '.join(QUESTION_FIELDS)}) and an answer field "
                    f"({', '.join(ANSWER_FIELDS)}), got "
                    + (
                        f"keys {sorted(row)}"
                        if isinstance(row, dict)
                        else f"a {_JSON_KINDS.get(type(row), 'value')}"
                    )
                )
            earlier = first.setdefault(_normalize_space(question), (answer, number))
            if earlier[0] != answer:  # the first would win every lookup, without a word
                raise ValueError(
                    f"{path}:{number}: the question of line {earlier[1]} again, with another answer ({answer!r}, "
                    f"there {earlier[0]!r}): keep one (a list of answers accepts each)"
                )
            pairs.append((question, answer))
        return cls(pairs)

    def lookup(self, prompt: str) -> str | None:
        """The gold answer of the question in `prompt`, or None."""
        with self._lock:
            if prompt in self._cache:
                return self._cache[prompt]
        answer = self._lookup(prompt)
        with self._lock:
            if len(self._cache) >= self._CACHE_SIZE:
                self._cache.clear()
            self._cache[prompt] = answer
        return answer

    def _lookup(self, prompt: str) -> str | None:
        if prompt in self._exact:
            return self._exact[prompt]
        normalized = _normalize_space(prompt)
        if normalized in self._normalized:
            return self._normalized[normalized]
        found: list[str] = []
        width = self.MIN_EMBEDDED
        for start in range(len(normalized) - width + 1):
            for question in self._by_prefix.get(normalized[start : start + width], ()):
                if normalized.startswith(question, start):
                    found.append(question)
        if not found:
            return None
        longest = max(len(q) for q in found)
        answers = [self._normalized[q] for q in found if len(q) == longest]
        return answers[0] if all(a == answers[0] for a in answers) else None


_GOLD_SHAPE = "give a JSONL file with one object per line, each with a question field and an answer field"
_JSON_KINDS = {
    list: "list",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _first_field(row: Any, names: tuple[str, ...]) -> Any:
    if not isinstance(row, dict):
        return None
    return next((row[name] for name in names if row.get(name) is not None), None)


# ---------------------------------------------------------------------------------------------------------------
# Request parsing


def parse_request(body: Any) -> tuple[list[str], list[str], list[str | None]]:
    """`(prompts, responses, golds)` from an align-anything or OpenRLHF request body; `Problem` when malformed.

    >>> parse_request({"query": ["Q: 1+1? 2"], "prompts": ["Q: 1+1?"], "labels": ["2"]})
    (['Q: 1+1?'], [' 2'], ['2'])
    """
    usage = (
        "send {'prompts': [...], 'responses': [...], 'golden_responses': [...]} (align-anything) or "
        "{'query': [...], 'prompts': [...], 'labels': [...]} (OpenRLHF)"
    )
    if not isinstance(body, dict):
        raise Problem(400, f"request body must be a JSON object: {usage}")
    if "responses" in body:
        prompts, responses = _strings(body, "prompts"), _strings(body, "responses")
        golds = _optional_strings(body, "golden_responses")
        _same_length(("prompts", prompts), ("responses", responses), ("golden_responses", golds))
    elif "query" in body:
        queries, prompts = _strings(body, "query"), _strings(body, "prompts")
        golds = _optional_strings(body, "labels")
        _same_length(("query", queries), ("prompts", prompts), ("labels", golds))
        responses = [split_response(q, p) for q, p in zip(queries, prompts, strict=True)]
    else:
        raise Problem(422, f"missing field 'responses' or 'query': {usage}")
    return prompts, responses, golds if golds is not None else [None] * len(prompts)


def _strings(body: dict, key: str) -> list[str]:
    if key not in body:
        raise Problem(422, f"missing field {key!r}")
    values = body[key]
    if not isinstance(values, list):
        raise Problem(422, f"field {key!r} must be a list of strings, got {type(values).__name__}")
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise Problem(422, f"{key}[{i}] must be a string, got {type(value).__name__}")
    return values


def _optional_strings(body: dict, key: str) -> list[str | None] | None:
    values = body.get(key)
    if values is None:
        return None
    if not isinstance(values, list):
        raise Problem(
            422, f"field {key!r} must be a list of strings (null where unknown), got {type(values).__name__}"
        )
    for i, value in enumerate(values):
        several = isinstance(value, list) and value and all(isinstance(v, str) for v in value)
        if value is not None and not isinstance(value, str) and not several:
            raise Problem(
                422,
                f"{key}[{i}] must be a string, a list of strings (several acceptable golds) or null, got "
                f"{type(value).__name__}",
            )
    return values


def _same_length(*fields: tuple[str, list | None]) -> None:
    present = [(name, len(values)) for name, values in fields if values is not None]
    if len({n for _, n in present}) > 1:
        sizes = ", ".join(f"{name!r} has {n}" for name, n in present)
        raise Problem(422, f"lists of different lengths: {sizes}")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"request body of {int(declared)} bytes is over the {limit}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, f"request body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------------------------------------------------------
# Sample log


class SampleLog:
    """Appends one JSON line per scored sample, so reward hacking can be read off the file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(
        self,
        prompts: list[str],
        responses: list[str],
        golds: list[str | None],
        totals: list[float],
        per_fn: dict[str, list[float | None]],
    ) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        lines = []
        for i, (prompt, response, gold, total) in enumerate(
            zip(prompts, responses, golds, totals, strict=True)
        ):
            rewards = {name: values[i] for name, values in per_fn.items()}
            record = {"time": now, "prompt": prompt, "response": response, "gold": gold, "reward": total}
            lines.append(json.dumps({**record, "rewards": rewards}) + "\n")  # ASCII: no U+2028 line breaks
        with self._lock:
            self._file.write("".join(lines))
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


# ---------------------------------------------------------------------------------------------------------------
# The app


def create_app(config: ServerConfig) -> FastAPI:
    """The FastAPI app for `config`. Reward specs, weights and the gold file are checked here, before serving.

    Worker processes start with the app's lifespan (`uvicorn.run(app)` or `with TestClient(app)`).
    """
    fns = resolve_rewards(config.rewards)  # fails fast with the registry's message
    names = list(fns)
    refs, bound = bind_options(
        config.rewards, config.rewards, list(fns.values()), config.reward_options, "--reward-options"
    )
    if config.weights is not None and len(config.weights) != len(names):
        raise ValueError(
            f"{len(config.weights)} weights for {len(names)} rewards: give one weight per --reward"
        )
    if config.weights is not None and not all(math.isfinite(w) for w in config.weights):
        raise ValueError(f"weights must be finite numbers, got {config.weights}")
    if config.workers < 1:
        raise ValueError(f"workers must be at least 1, got {config.workers}")
    if not 0 < config.request_timeout <= MAX_TIMEOUT:
        raise ValueError(
            f"request_timeout must be above 0 and at most {MAX_TIMEOUT:g} s, got {config.request_timeout}"
        )
    if config.max_request_bytes < 1:
        raise ValueError(f"max_request_bytes must be at least 1, got {config.max_request_bytes}")
    gold_required = any(needs_gold(fn) for fn in bound)
    golds_index = GoldIndex.from_file(config.gold_path) if config.gold_path else None
    try:
        sample_log = SampleLog(config.log_path) if config.log_path else None
    except OSError as exc:
        raise ValueError(f"cannot open the sample log {config.log_path!r}: {exc.strerror or exc}") from None
    pool = RewardPool(refs, config.workers, config.request_timeout, fns=bound, names=names)
    # A thread per request in flight: it waits for a free worker (503 past request_timeout), then for the scores.
    # Past this many requests at once, a request waits for a thread before its time starts.
    requests = ThreadPoolExecutor(max_workers=64, thread_name_prefix="rlvr-request")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.get_running_loop().run_in_executor(requests, pool.start)
        try:
            yield
        finally:
            pool.close()
            requests.shutdown(wait=False, cancel_futures=True)
            if sample_log is not None:
                sample_log.close()

    app = FastAPI(title="rlvr reward server", lifespan=lifespan)
    app.state.config = config
    app.state.reward_names = names

    @app.exception_handler(Problem)
    async def problem_answer(request: Request, problem: Problem) -> JSONResponse:
        return JSONResponse({"error": problem.message}, status_code=problem.status)

    @app.exception_handler(HTTPException)
    async def http_error_answer(request: Request, error: HTTPException) -> JSONResponse:
        # Unknown routes (404) and methods (405) in the same shape as every other error, not FastAPI's "detail".
        message = error.detail
        if error.status_code in (404, 405):
            message = f"{error.detail}: {request.method} {request.url.path}; this server answers {_ROUTES}"
        return JSONResponse({"error": message}, status_code=error.status_code, headers=error.headers)

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        if config.api_key is not None:
            header = request.headers.get("authorization", "")
            token = header[len("Bearer ") :] if header.startswith("Bearer ") else ""
            if not hmac.compare_digest(token.encode(), config.api_key.encode()):
                return JSONResponse(
                    {"error": "missing or wrong API key: send the header 'Authorization: Bearer <key>'"},
                    status_code=401,
                )
        return await call_next(request)

    @app.middleware("http")  # added last, so outermost: it also catches what the other middleware raises
    async def answer_unexpected_errors(request: Request, call_next):
        try:
            return await call_next(request)
        except Exception as exc:
            # A bug, not the client's fault: log the traceback here, answer JSON there (not a plain-text 500).
            _log.exception("unexpected error answering %s %s", request.method, request.url.path)
            return JSONResponse(
                {"error": f"internal server error: {type(exc).__name__}: {exc}; see the server log"},
                status_code=500,
            )

    @app.get("/health")
    async def health() -> dict:
        return {
            "status": "ok",
            "rewards": names,
            "workers": config.workers,
            "gold_questions": len(golds_index) if golds_index is not None else 0,
        }

    @app.post("/get_reward")
    async def get_reward(request: Request) -> JSONResponse:
        raw = await _read_body(request, config.max_request_bytes)
        try:
            body = json.loads(raw)
        except ValueError as exc:  # JSONDecodeError and undecodable bytes
            raise Problem(400, f"malformed JSON: {exc}") from None
        prompts, responses, golds = parse_request(body)
        golds = _fill_golds(prompts, golds, golds_index, gold_required)
        values = await _score(pool, requests, prompts, responses, golds)
        totals, per_fn = weighted_sum(values, config.weights), dict(zip(names, values, strict=True))
        if sample_log is not None:
            try:
                sample_log.write(prompts, responses, golds, totals, per_fn)
            except OSError as exc:
                # The log is there to catch reward hacking: losing it silently is worse than failing the request.
                raise Problem(
                    500, f"scored, but could not append to the sample log {sample_log.path}: {exc}"
                ) from None
        return JSONResponse({"rewards": totals, "scores": totals, "extra_logs": per_fn})

    return app


def _fill_golds(
    prompts: list[str], golds: list[str | None], index: GoldIndex | None, required: bool
) -> list[str | None]:
    filled = list(golds)
    for i, prompt in enumerate(prompts):
        if filled[i] is None and index is not None:
            filled[i] = index.lookup(prompt)
        if filled[i] is None and required:
            where = "it is not in the --gold file" if index is not None else "the server has no --gold file"
            raise Problem(
                422,
                f"no gold answer for prompts[{i}] ({prompt[:80]!r}): send 'golden_responses' (or OpenRLHF "
                f"'labels'); {where}",
            )
    return filled


async def _score(
    pool: RewardPool,
    requests: ThreadPoolExecutor,
    prompts: list[str],
    responses: list[str],
    golds: list[str | None],
) -> list[list[float | None]]:
    """Each reward's values; `Problem` 503 when no worker is free, 504 past the timeout, 500 for a reward's fault."""
    # One chunk: a request is scored by one worker, so the other workers serve other requests meanwhile.
    call = functools.partial(
        pool.score_values,
        prompts,
        responses,
        {"answer": golds, "ground_truth": golds},
        group_size=max(1, len(responses)),
        wait=pool.timeout,
    )
    try:
        return await asyncio.get_running_loop().run_in_executor(requests, call)
    except RewardPoolBusy:
        raise Problem(503, f"no scoring worker became free within {pool.timeout:g}s; retry later") from None
    except RewardTimeout:
        raise Problem(504, f"scoring took over {pool.timeout:g}s; its worker was replaced") from None
    except RewardError as exc:  # a reward raised or returned something unusable, or its worker died
        message = exc.summary
        if exc.index is not None:
            completion = responses[exc.index]
            shown = completion if len(completion) <= 200 else completion[:200] + "..."
            message += f"; completion {exc.index}: {shown!r}"
        raise Problem(500, message) from None
