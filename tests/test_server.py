"""The reward server over real HTTP: both request formats, every bad request, auth, gold lookup, the sample log,
a deliberate 500 and 504, rewards that are not finite numbers, JSON for every error, 500 requests from 16
concurrent clients, `RemoteReward`, and the CLI with every bad flag, gold file and busy port."""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import uvicorn
from conftest import wait_until_healthy
from fastapi.testclient import TestClient

from rlvr.rewards import RemoteReward, RemoteRewardError, get_reward
from rlvr.server import app as server_app
from rlvr.server.app import GoldIndex, ServerConfig, create_app
from rlvr.server.cli import add_arguments, run
from rlvr.utils import read_jsonl

API_KEY = "test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
GOLD_ROWS = [
    {
        "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many in May. How many clips in total?",
        "answer": "48/2 = 24\n48+24 = 72\n#### 72",
    },
    {
        "question": "Weng earns $12 an hour for babysitting. She babysat for 50 minutes. How much did she earn?",
        "answer": "#### 10",
    },
    {
        "problem": "What is the positive root of x^2 = 1/2?",
        "solution": "It is $\\boxed{\\frac{\\sqrt{2}}{2}}$.",
    },
]
TRAP = '''
import os
import time

BAD_VALUES = {"RETURN_INF": float("inf"), "RETURN_-INF": float("-inf"), "RETURN_NAN": float("nan"),
              "RETURN_STR": "0.5", "RETURN_BOOL": True, "RETURN_HUGE": 10**400}


def trap(prompts, completions, **kwargs):
    """Raises, stalls, ends its process or returns a value that is not a reward on demand, to test the server's
    500 and 504."""
    if any("EXPLODE" in c for c in completions):
        raise ValueError("asked to explode")
    if any("EXIT" in c for c in completions):
        os._exit(3)
    if any("STALL" in c for c in completions):
        time.sleep(30)
    return [BAD_VALUES.get(c, 0.0) for c in completions]
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reward-server")
    (tmp / "trap_rewards.py").write_text(TRAP)
    (tmp / "gold.jsonl").write_text("".join(json.dumps(row) + "\n" for row in GOLD_ROWS))
    config = ServerConfig(
        rewards=["accuracy", "xml_format", f"{tmp / 'trap_rewards.py'}:trap"],
        weights=[1.0, 0.5, 1.0],
        gold_path=str(tmp / "gold.jsonl"),
        workers=2,
        api_key=API_KEY,
        log_path=str(tmp / "samples.jsonl"),
        request_timeout=5.0,
        max_request_bytes=64 * 1024,
    )
    uv = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 90  # two spawned workers import the package
    while not uv.started:
        assert thread.is_alive(), "the server thread died while starting"
        assert time.monotonic() < deadline, "the server did not start in 90 s"
        time.sleep(0.05)
    port = uv.servers[0].sockets[0].getsockname()[1]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=30) as client:
        yield SimpleNamespace(client=client, url=f"http://127.0.0.1:{port}", log=tmp / "samples.jsonl")
    uv.should_exit = True
    thread.join(timeout=30)


def post(server, body, **kwargs):
    return server.client.post("/get_reward", json=body, **kwargs)


def test_health(server):
    answer = server.client.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "ok",
        "rewards": ["accuracy", "xml_format", "trap"],
        "workers": 2,
        "gold_questions": 3,
    }


def test_align_anything_request(server):
    answer = post(
        server,
        {
            "prompts": ["a", "b", "c"],
            "responses": [
                "<reasoning>r</reasoning><answer>72</answer>",
                "\\boxed{9}",
                "\\boxed{\\frac{1}{2}}",
            ],
            "golden_responses": ["72", "10", "0.5"],
        },
    )
    assert answer.status_code == 200
    body = answer.json()
    # accuracy + 0.5 * xml_format + trap: 1 + 0.5 * 0.8 = 1.4; 0; 1.
    assert body["rewards"] == pytest.approx([1.4, 0.0, 1.0])
    assert body["scores"] == body["rewards"]
    assert body["extra_logs"] == {
        "accuracy": [1.0, 0.0, 1.0],
        "xml_format": [0.8, 0.0, 0.0],
        "trap": [0.0, 0.0, 0.0],
    }


def test_a_list_of_golds_accepts_any_of_them(server):
    """Several acceptable golds (a list, as RemoteReward sends a dataset's list column): a match with any counts."""
    body = {
        "prompts": ["a", "b"],
        "responses": ["\\boxed{five}", "\\boxed{6}"],
        "golden_responses": [["5", "five"]] * 2,
    }
    answer = post(server, body)
    assert answer.status_code == 200, answer.text  # was 422: golden_responses[0] must be a string or null
    assert answer.json()["extra_logs"]["accuracy"] == [1.0, 0.0]


def test_openrlhf_request(server):
    prompts = ["<|user|>2+3?<|assistant|>", "<|user|>1+1?<|assistant|>"]
    queries = [prompts[0] + "\\boxed{5}", "not prefixed \\boxed{3}"]
    answer = post(server, {"query": queries, "prompts": prompts, "labels": ["5", "3"]})
    assert answer.status_code == 200
    assert answer.json()["rewards"] == [1.0, 1.0]


def test_latex_is_verified_inside_the_worker(server):
    # The symbolic path of math_equal, from a server worker process (math-verify in its own child).
    answer = post(
        server,
        {
            "prompts": ["q"],
            "responses": ["\\boxed{\\frac{1}{\\sqrt{2}}}"],
            "golden_responses": ["\\frac{\\sqrt{2}}{2}"],
        },
    )
    assert answer.json()["extra_logs"]["accuracy"] == [1.0]


@pytest.mark.parametrize(
    ("prompt", "response", "accuracy"),
    [
        (GOLD_ROWS[0]["question"], "\\boxed{72}", 1.0),  # exact question
        (
            "  " + GOLD_ROWS[1]["question"].replace(" ", "\n", 3) + " ",
            "\\boxed{10}",
            1.0,
        ),  # whitespace differs
        (
            f"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n{GOLD_ROWS[0]['question']}<|im_end|>\n",
            "\\boxed{72}",
            1.0,
        ),  # inside a template
        (GOLD_ROWS[2]["problem"], "\\boxed{\\sqrt{2}/2}", 1.0),  # a boxed solution as gold
        (GOLD_ROWS[0]["question"], "\\boxed{71}", 0.0),
    ],
)
def test_gold_looked_up_by_question(server, prompt, response, accuracy):
    answer = post(server, {"prompts": [prompt], "responses": [response]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["extra_logs"]["accuracy"] == [accuracy]


def test_gold_null_items_are_looked_up(server):
    body = {
        "prompts": [GOLD_ROWS[0]["question"], "x"],
        "responses": ["\\boxed{72}", "\\boxed{3}"],
        "golden_responses": [None, "3"],
    }
    assert post(server, body).json()["extra_logs"]["accuracy"] == [1.0, 1.0]


def test_prompt_without_gold_is_422(server):
    answer = post(server, {"prompts": ["an unknown question"], "responses": ["\\boxed{1}"]})
    assert answer.status_code == 422
    assert "no gold answer for prompts[0] ('an unknown question')" in answer.json()["error"]
    assert "not in the --gold file" in answer.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{not json", 400, "malformed JSON"),
        (b"\xff\xfe", 400, "malformed JSON"),  # not UTF-8
        (b"[1, 2]", 400, "must be a JSON object"),
        (b'{"prompts": ["a"]}', 422, "missing field 'responses' or 'query'"),
        (b'{"responses": ["a"]}', 422, "missing field 'prompts'"),
        (b'{"query": ["a"]}', 422, "missing field 'prompts'"),
        (b'{"prompts": "a", "responses": ["a"]}', 422, "field 'prompts' must be a list of strings, got str"),
        (b'{"prompts": [1], "responses": ["a"]}', 422, "prompts[0] must be a string, got int"),
        (b'{"prompts": ["a"], "responses": [null]}', 422, "responses[0] must be a string, got NoneType"),
        (
            b'{"prompts": ["a"], "responses": ["a"], "golden_responses": [5]}',
            422,
            "golden_responses[0] must be a string, a list of strings (several acceptable golds) or null",
        ),
        (  # a list of golds holds strings only, and at least one
            b'{"prompts": ["a"], "responses": ["a"], "golden_responses": [[]]}',
            422,
            "golden_responses[0] must be a string, a list of strings",
        ),
        (b'{"prompts": ["a"], "responses": ["a"], "golden_responses": [["5", 5]]}', 422, "got list"),
        (
            b'{"prompts": ["a", "b"], "responses": ["a"]}',
            422,
            "lists of different lengths: 'prompts' has 2, 'responses' has 1",
        ),
        (b'{"query": ["a"], "prompts": ["a"], "labels": ["1", "2"]}', 422, "'labels' has 2"),
        (
            b'{"prompts": ["a"], "responses": ["' + b"x" * 70_000 + b'"], "golden_responses": ["1"]}',
            413,
            "over the 65536-byte limit",
        ),
    ],
)
def test_bad_requests_are_4xx_that_name_the_problem(server, body, status, error):
    answer = server.client.post("/get_reward", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == status
    assert error in answer.json()["error"]


def test_body_over_the_limit_without_content_length_is_413(server):
    def chunks():
        for _ in range(100):
            yield b"x" * 1024

    answer = server.client.post("/get_reward", content=chunks())  # chunked: no Content-Length to check
    assert answer.status_code == 413


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}, {"Authorization": "Basic dGVzdA=="}],
)
@pytest.mark.parametrize(("method", "path"), [("GET", "/health"), ("POST", "/get_reward")])
def test_api_key_is_required(server, headers, method, path):
    answer = httpx.request(
        method, server.url + path, headers=headers, json={"prompts": ["a"], "responses": ["b"]}
    )
    assert answer.status_code == 401
    assert "Authorization: Bearer" in answer.json()["error"]


def test_raising_reward_is_500_naming_it_and_the_server_goes_on(server):
    answer = post(server, {"prompts": ["q"], "responses": ["EXPLODE"], "golden_responses": ["1"]})
    assert answer.status_code == 500
    assert answer.json()["error"] == (
        "reward function 'trap' raised ValueError: asked to explode (at trap_rewards.py:13); completion 0: 'EXPLODE'"
    )
    assert (
        post(server, {"prompts": ["q"], "responses": ["\\boxed{1}"], "golden_responses": ["1"]}).status_code
        == 200
    )


def test_reward_that_ends_its_worker_is_500_and_the_worker_is_replaced(server):
    before = _reward_workers()  # the server runs in this process: its workers are our children
    answer = post(
        server, {"prompts": ["q", "q"], "responses": ["fine", "EXIT"], "golden_responses": ["1", "1"]}
    )
    assert answer.status_code == 500
    assert answer.json()["error"] == (
        "a reward worker process died (exit code 3) while reward function 'trap' ran on completions 0..1; "
        "it was replaced"
    )
    assert (
        post(server, {"prompts": ["q"], "responses": ["\\boxed{2}"], "golden_responses": ["2"]}).status_code
        == 200
    )
    deadline = time.monotonic() + 60
    while len(_reward_workers() - before) < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(_reward_workers() - before) == 1 and len(_reward_workers()) == len(
        before
    )  # one in place of one


def _reward_workers() -> set[int]:
    return {p.pid for p in multiprocessing.active_children() if p.name == "rlvr-reward-worker"}


@pytest.mark.parametrize(
    ("completion", "returned"),
    [
        ("RETURN_INF", "inf"),  # was a plain-text 500: JSON cannot hold inf
        ("RETURN_-INF", "-inf"),
        ("RETURN_NAN", "nan"),  # was silently "not applicable"
        ("RETURN_STR", "'0.5'"),  # was parsed as 0.5
        ("RETURN_BOOL", "True"),  # was 1.0
        ("RETURN_HUGE", "1000000000"),  # 10**400: was an OverflowError from float()
    ],
)
def test_reward_that_is_not_a_finite_number_is_a_json_500_naming_function_and_completion(
    server, completion, returned
):
    answer = post(
        server, {"prompts": ["q", "q"], "responses": ["fine", completion], "golden_responses": ["1", "1"]}
    )
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()["error"]
    assert error.startswith(f"reward function 'trap' failed: returned {returned}")
    assert f"completion 1: {completion!r}" in error
    assert "number or None" in error


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/no/such/route", 404),
        ("POST", "/health", 405),
        ("GET", "/get_reward", 405),
        ("DELETE", "/get_reward", 405),
    ],
)
def test_unknown_route_or_method_is_json_in_the_servers_error_shape(server, method, path, status):
    answer = server.client.request(method, path)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    # One error shape (FastAPI's own is {"detail": "Not Found"}), saying what the server does answer.
    assert answer.json() == {
        "error": f"{'Not Found' if status == 404 else 'Method Not Allowed'}: {method} {path}; this server "
        "answers POST /get_reward and GET /health"
    }
    if status == 405:
        assert answer.headers["allow"]


@pytest.fixture(scope="module")
def logging_app(tmp_path_factory):
    """A one-worker app with a sample log, served in-process, for faults inside the handler."""
    log = tmp_path_factory.mktemp("logging-app") / "samples.jsonl"
    app = create_app(ServerConfig(rewards=["xml_format"], workers=1, log_path=str(log)))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield SimpleNamespace(client=client, log=log)


def test_unexpected_exception_in_a_handler_is_a_json_500(logging_app, monkeypatch):
    def broken(*args):
        raise RuntimeError("a bug in the server")

    monkeypatch.setattr(server_app, "_fill_golds", broken)
    answer = logging_app.client.post("/get_reward", json={"prompts": ["q"], "responses": ["a"]})
    assert answer.status_code == 500
    assert answer.json() == {
        "error": "internal server error: RuntimeError: a bug in the server; see the server log"
    }


def test_sample_log_that_cannot_be_written_is_a_json_500_naming_it(logging_app, monkeypatch):
    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(server_app.SampleLog, "write", full_disk)
    answer = logging_app.client.post("/get_reward", json={"prompts": ["q"], "responses": ["a"]})
    assert answer.status_code == 500
    assert answer.json()["error"] == (
        f"scored, but could not append to the sample log {logging_app.log}: [Errno 28] No space left on device"
    )


def test_stalled_request_is_504_and_does_not_stall_the_others(server):
    with ThreadPoolExecutor(max_workers=2) as pool:
        stalled = pool.submit(
            post, server, {"prompts": ["q"], "responses": ["STALL"], "golden_responses": ["1"]}
        )
        time.sleep(0.3)  # let the stalled request take its worker
        started = time.monotonic()
        for _ in range(10):  # served by the other worker meanwhile
            assert (
                post(
                    server, {"prompts": ["q"], "responses": ["\\boxed{1}"], "golden_responses": ["1"]}
                ).status_code
                == 200
            )
        assert time.monotonic() - started < 4.0
        answer = stalled.result(timeout=30)
    assert answer.status_code == 504
    assert "took over 5s" in answer.json()["error"]
    # The stalled worker was replaced: two requests at once are both served.
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [
            pool.submit(
                post, server, {"prompts": ["q"], "responses": ["\\boxed{2}"], "golden_responses": ["2"]}
            )
            for _ in range(4)
        ]
        assert [f.result(timeout=60).status_code for f in futures] == [200] * 4


def test_500_requests_from_16_concurrent_clients(server):
    def client_run(client_index: int) -> list[tuple[int, int, list[float]]]:
        results = []
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as client:
            for request_index in range(client_index, 500, 16):
                n = request_index
                body = {
                    "prompts": [f"p{n}", f"p{n}"],
                    "responses": [f"\\boxed{{{n}}}", f"<answer>{n + 1}</answer>"],
                    "golden_responses": [str(n), str(n)],
                }
                answer = client.post("/get_reward", json=body)
                rewards = answer.json().get("rewards") if answer.status_code == 200 else None
                results.append((n, answer.status_code, rewards))
        return results

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = [r for chunk in pool.map(client_run, range(16)) for r in chunk]
    elapsed = time.monotonic() - started
    assert sorted(n for n, _, _ in results) == list(range(500))  # every request answered once
    assert [status for _, status, _ in results if status != 200] == []
    # Right box: 1.0; wrong tag answer: 0 + 0.5 * 0.4 for its two answer tags.
    assert all(rewards == pytest.approx([1.0, 0.2]) for _, _, rewards in results)
    assert elapsed < 60, f"500 requests took {elapsed:.1f}s"
    print(f"\n500 requests from 16 clients: {elapsed:.2f}s")


def test_every_scored_sample_is_logged(server):
    marker = f"log-check-{time.time_ns()}"
    post(server, {"prompts": [marker], "responses": ["<answer>4</answer>"], "golden_responses": ["4"]})
    records = read_jsonl(server.log)
    mine = [r for r in records if r["prompt"] == marker]
    assert len(mine) == 1
    assert mine[0]["response"] == "<answer>4</answer>"
    assert mine[0]["gold"] == "4"
    assert mine[0]["rewards"] == {"accuracy": 1.0, "xml_format": 0.4, "trap": 0.0}
    assert mine[0]["reward"] == pytest.approx(1.2)


def test_remote_reward_against_the_server(server):
    remote = RemoteReward(server.url + "/get_reward", timeout=30, api_key=API_KEY)
    prompts = [[{"role": "user", "content": "2+3?"}], [{"role": "user", "content": GOLD_ROWS[0]["question"]}]]
    completions = [
        [{"role": "assistant", "content": "\\boxed{5}"}],
        [{"role": "assistant", "content": "\\boxed{72}"}],
    ]
    # Row 0 sends its gold; row 1 has none, so the server finds it by the question.
    assert remote(prompts=prompts, completions=completions, answer=["5", None]) == [1.0, 1.0]
    assert get_reward(f"remote:{server.url}/get_reward").url == server.url + "/get_reward"


def test_remote_reward_4xx_raises_at_once(server):
    remote = RemoteReward(server.url + "/get_reward", api_key="wrong", retries=3, backoff=5.0)
    started = time.monotonic()
    with pytest.raises(RemoteRewardError, match=r"rejected the request \(401: missing or wrong API key"):
        remote(prompts=["q"], completions=["a"], answer=["1"])
    assert time.monotonic() - started < 4.0  # no retries with a 5 s backoff


def test_remote_reward_unreachable_names_the_url_and_the_fix():
    port = _free_port()
    url = f"http://127.0.0.1:{port}/get_reward"
    remote = RemoteReward(url, timeout=2, retries=2, backoff=0.05)
    started = time.monotonic()
    with pytest.raises(
        RemoteRewardError,
        match=rf"cannot reach the reward server at {url} after 3 attempts.*rlvr serve-rewards",
    ):
        remote(prompts=["q"], completions=["a"])
    assert 0.05 + 0.1 <= time.monotonic() - started < 5.0  # backoff 0.05 s, then 0.1 s


def test_remote_reward_pickles_for_process_pools(server):
    remote = pickle.loads(pickle.dumps(RemoteReward(server.url + "/get_reward", api_key=API_KEY)))
    assert remote(prompts=["q"], completions=["\\boxed{4}"], answer=["4"]) == [1.0]


def test_remote_reward_retries_5xx_then_succeeds(monkeypatch):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(json.loads(request.content))
        if len(calls) < 3:
            return httpx.Response(503, json={"error": "busy"})
        return httpx.Response(200, json={"rewards": [0.5], "scores": [0.5], "extra_logs": {}})

    remote = RemoteReward("http://reward.test/get_reward", retries=3, backoff=0.01)
    monkeypatch.setattr(remote, "_client", httpx.Client(transport=httpx.MockTransport(handler)))
    assert remote(prompts=["q"], completions=["a"], ground_truth=["#### 7"]) == [0.5]
    assert len(calls) == 3
    assert calls[0] == {"prompts": ["q"], "responses": ["a"], "golden_responses": ["7"]}


def test_remote_reward_gives_up_after_retries_on_5xx(monkeypatch):
    remote = RemoteReward("http://reward.test/get_reward", retries=2, backoff=0.01)
    transport = httpx.MockTransport(
        lambda request: httpx.Response(500, json={"error": "reward function 'x' failed"})
    )
    monkeypatch.setattr(remote, "_client", httpx.Client(transport=transport))
    with pytest.raises(RemoteRewardError, match=r"failed after 3 attempts.*500: reward function 'x' failed"):
        remote(prompts=["q"], completions=["a"])


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("What is 2 + 3? Answer with a number only.", "5"),
        ("What   is 2 + 3?\nAnswer with a number only.", "5"),
        ("System: be brief.\nUser: What is 2 + 3? Answer with a number only.\nAssistant:", "5"),
        ("What is 2 + 3?", None),  # part of a question is not the question
        ("Two plus three", None),
    ],
)
def test_gold_index_lookup(prompt, expected):
    index = GoldIndex([("What is 2 + 3? Answer with a number only.", "5"), ("What is 2 + 4?", "6")])
    assert index.lookup(prompt) == expected


def test_gold_index_ambiguous_embedding_is_none():
    question_a = "A question long enough to be found inside a prompt, version a"
    question_b = "A question long enough to be found inside a prompt, version b"
    index = GoldIndex([(question_a, "1"), (question_b, "2")])
    assert index.lookup(f"few-shot: {question_a} answer 1. now: {question_b}") is None


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (None, r"gold file '.*none.jsonl' does not exist"),
        ("DIRECTORY", r"gold file '.*gold' is a directory, not a JSONL file"),
        ("", r"gold file '.*gold' is empty: give a JSONL file"),
        ("\n  \n", r"gold file '.*gold' is empty"),
        (
            '{"question": "q", "answer": "#### 1"}\n{"text": "no fields"}\n',
            r"gold:2: need a question field .* got keys \['text'\]",
        ),
        (
            '{"question": "q", "answer": "1"}\n\n{not json\n',
            r"gold:3: not a JSON object \(Expecting property name",
        ),
        ('{"question": "q", "answer": "1"}\n[1, 2]\n', r"gold:2: need a question field .* got a list"),
        (
            '[{"question": "q", "answer": "1"}, ',
            r"gold:1: not a JSON list \(Expecting value: line 1 column 36",
        ),  # starts like a list
        (b'{"question": "q", "answer": "1"}\n{"question": "\xff"}\n', r"gold:2: not UTF-8 text"),
        (
            '{"question": "q", "answer": "1"}\n' + "[" * 100_000 + "\n",
            r"gold:2: not a JSON object \(maximum recursion",
        ),
    ],
)
def test_gold_file_errors_name_the_file_and_line(tmp_path, content, error):
    path = tmp_path / ("none.jsonl" if content is None else "gold")
    if content == "DIRECTORY":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises((OSError, ValueError), match=error):
        GoldIndex.from_file(path)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"weights": [1.0, math.inf]}, r"weights must be finite numbers, got \[1.0, inf\]"),  # inf * 0 is NaN
        ({"weights": [math.nan, 1.0]}, r"weights must be finite numbers"),
        ({"workers": 0}, r"workers must be at least 1, got 0"),
        ({"request_timeout": 0.0}, r"request_timeout must be above 0 and at most 86400 s, got 0.0"),
        ({"request_timeout": math.nan}, r"request_timeout must be above 0"),
        (
            {"request_timeout": 1e300},
            r"request_timeout must be above 0 and at most 86400 s",
        ),  # poll() overflows
        ({"max_request_bytes": 0}, r"max_request_bytes must be at least 1, got 0"),
        ({"log_path": "/"}, r"cannot open the sample log '/'"),
    ],
)
def test_create_app_refuses_a_config_it_cannot_serve(change, error):
    with pytest.raises(ValueError, match=error):
        create_app(ServerConfig(**{"rewards": ["accuracy", "xml_format"], **change}))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "rlvr.server.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


@pytest.fixture
def bad_gold_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("empty.jsonl").write_text("")
    Path("bad.jsonl").write_text('{"question": "q", "answer": "1"}\n{"question": "q2", answer: 2}\n')
    Path("a_directory").mkdir()


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--reward", "accuracyy"], "unknown reward 'accuracyy'; did you mean 'accuracy'?"),
        (["--reward", ""], "reward spec must be a non-empty string"),
        (["--reward", "accuracy", "--reward", "accuracy"], "reward 'accuracy' is listed twice"),
        (["--reward", "no_such_file.py:f"], "reward file 'no_such_file.py' does not exist"),
        (["--reward", "accuracy", "--weights", "1", "2"], "2 weights for 1 rewards"),
        (
            ["--reward", "accuracy", "--weights", "nan"],
            "argument --weights: must be a finite number, got 'nan'",
        ),
        (
            ["--reward", "accuracy", "--weights", "inf"],
            "argument --weights: must be a finite number, got 'inf'",
        ),
        (
            ["--reward", "accuracy", "--gold", "no/such/gold.jsonl"],
            "gold file 'no/such/gold.jsonl' does not exist",
        ),
        (["--reward", "accuracy", "--gold", "a_directory"], "gold file 'a_directory' is a directory"),
        (["--reward", "accuracy", "--gold", "empty.jsonl"], "gold file 'empty.jsonl' is empty"),
        (["--reward", "accuracy", "--gold", "bad.jsonl"], "bad.jsonl:2: not a JSON object"),
        (["--reward", "accuracy", "--log", "a_directory"], "cannot open the sample log 'a_directory'"),
        (
            ["--reward", "accuracy", "--port", "-1"],
            "argument --port: must be an integer from 1 to 65535, got '-1'",
        ),
        (
            ["--reward", "accuracy", "--port", "0"],
            "argument --port: must be an integer from 1 to 65535, got '0'",
        ),
        (["--reward", "accuracy", "--port", "70000"], "argument --port: must be an integer from 1 to 65535"),
        (["--reward", "accuracy", "--port", "6000.5"], "argument --port: must be an integer from 1 to 65535"),
        (
            ["--reward", "accuracy", "--workers", "0"],
            "argument --workers: must be at least 1, got 0",
        ),
        (["--reward", "accuracy", "--workers", "-3"], "argument --workers: must be at least 1, got -3"),
        (["--reward", "accuracy", "--timeout", "abc"], "argument --timeout: must be a number of seconds"),
        (
            ["--reward", "accuracy", "--timeout", "0"],
            "argument --timeout: must be a number of seconds above 0",
        ),
        (
            ["--reward", "accuracy", "--timeout", "-1"],
            "argument --timeout: must be a number of seconds above 0",
        ),
        (
            ["--reward", "accuracy", "--timeout", "nan"],
            "argument --timeout: must be a number of seconds above 0",
        ),
        (
            ["--reward", "accuracy", "--timeout", "inf"],
            "argument --timeout: must be a number of seconds above 0",
        ),
        (["--reward", "accuracy", "--timeout", "1e300"], "and at most 86400 (a day), got '1e300'"),
        (
            ["--reward", "accuracy", "--max-request-mb", "0"],
            "argument --max-request-mb: must be a number above 0",
        ),
        (
            ["--reward", "accuracy", "--max-request-mb", "-1"],
            "argument --max-request-mb: must be a number above 0",
        ),
        (
            ["--reward", "accuracy", "--max-request-mb", "inf"],
            "argument --max-request-mb: must be a number above 0",
        ),
        (
            ["--reward", "accuracy", "--max-request-mb", "nan"],
            "argument --max-request-mb: must be a number above 0",
        ),
        (["--reward", "accuracy", "--api-key", ""], "--api-key is empty"),
        (
            ["--reward", "accuracy", "--api-key", "two words"],
            "--api-key must be printable ASCII without spaces",
        ),
        (
            ["--reward", "accuracy", "--host", "no.such.host.invalid"],
            "cannot listen on no.such.host.invalid:",
        ),
        (["--reward", "accuracy", "--host", "999.1.1.1"], "cannot listen on 999.1.1.1:"),
        (["--reward", "accuracy", "--host", "192.0.2.1"], "192.0.2.1 is not an address of this machine"),
    ],
)
def test_cli_refuses_bad_flags_with_one_message_and_status_2(
    argv, error, bad_gold_files, capsys, monkeypatch
):
    monkeypatch.delenv("RLVR_API_KEY", raising=False)
    refused = _refusal(argv, capsys, monkeypatch)
    assert error in refused


def test_cli_refuses_a_busy_port_in_process(capsys, monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        refused = _refusal(["--reward", "accuracy", "--port", str(port)], capsys, monkeypatch)
    assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in refused
    assert "choose another --port" in refused


def _refusal(argv: list[str], capsys, monkeypatch) -> str:
    """Run the CLI on `argv` with serving forbidden; return its one error line, checking status 2 and no banner."""

    def serve(*args, **kwargs):
        raise AssertionError(f"{argv} was served")

    monkeypatch.setattr(uvicorn, "run", serve)
    monkeypatch.setattr(uvicorn.Server, "run", serve)
    parser = argparse.ArgumentParser(prog="rlvr serve-rewards")
    add_arguments(parser)
    try:
        status = run(parser.parse_args(["--port", str(_free_port()), *argv]))
    except SystemExit as exc:  # argparse refuses a bad value with status 2
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err and "serving [" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("rlvr serve-rewards: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_cli_busy_port_is_one_message_status_2_no_banner():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = _cli("--reward", "accuracy", "--workers", "1", "--port", str(port))
        output, _ = process.communicate(timeout=120)
    assert process.returncode == 2, output
    assert output.strip() == (
        f"rlvr serve-rewards: error: cannot listen on 127.0.0.1:{port}: the port is already in use (another "
        "server is running there?): stop it or choose another --port"
    )


def test_cli_serves_and_stops(tmp_path):
    port = _free_port()
    log = tmp_path / "cli.jsonl"
    process = _cli("--reward", "gsm8k_correctness", "--port", str(port), "--workers", "1", "--log", str(log))
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(process, url)
        answer = httpx.post(
            url + "/get_reward",
            json={"prompts": ["q"], "responses": ["<answer>72</answer>"], "golden_responses": ["72"]},
        )
        assert answer.json()["rewards"] == [2.0]
        assert json.loads(log.read_text())["rewards"] == {"gsm8k_correctness": 2.0}
        # Workers are started from the server's threads: collect the children of every task.
        children = [
            int(pid)
            for task in Path(f"/proc/{process.pid}/task").glob("*/children")
            for pid in task.read_text().split()
        ]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    # uvicorn shuts down cleanly on SIGTERM, then re-raises it: exit status -15.
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "serving [gsm8k_correctness] at http://127.0.0.1:" in output
    assert "Application shutdown complete" in output
    if sys.platform == "linux":
        assert children, "the server had no scoring worker"
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in children if _alive(pid)], "a worker outlived the server"


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
