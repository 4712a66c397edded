"""`RemoteReward`: a reward computed by `rlvr serve-rewards` over HTTP, usable wherever a reward function is."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import httpx

from rlvr.rewards.extraction import completion_text, gold_choices, prompt_text
from rlvr.rewards.registry import RewardCallError, check_reward_values


class RemoteRewardError(RuntimeError):
    """The reward server could not be reached, refused the request, or answered something unusable."""


# The start-up check's request: one scorable completion with its gold, as training sends them.
PROBE = {"prompts": ["What is 1 + 1?"], "responses": ["1 + 1 = 2, so \\boxed{2}"], "golden_responses": ["2"]}


class RemoteReward:
    """Reward callable that POSTs to a reward server's `/get_reward` (align-anything request shape).

    Sends `{"prompts", "responses", "golden_responses"}`: the question (a chat prompt's last user message), the
    completion text, and the gold from the `answer` column (else `ground_truth`; omitted when there is none, so the
    server looks it up in its `--gold` file; a list where a row has several acceptable golds). Connection errors,
    timeouts and 5xx answers are retried `retries` times, waiting `backoff * 2**attempt` seconds; a 4xx answer
    raises at once with the server's message.

    >>> reward = RemoteReward("http://127.0.0.1:6000/get_reward", timeout=30)
    >>> reward.__name__
    'remote'
    """

    def __init__(
        self,
        url: str,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        api_key: str | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        # From the environment by default, so the key stays out of configs and process lists.
        self.api_key = api_key if api_key is not None else os.environ.get("RLVR_API_KEY")
        self.__name__ = "remote"
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def __call__(self, prompts, completions, answer=None, ground_truth=None, **kwargs) -> list[float | None]:
        payload: dict[str, Any] = {
            "prompts": [prompt_text(p) for p in prompts],
            "responses": [completion_text(c) for c in completions],
        }
        # a row with several acceptable golds sends the list of them (rlvr's server accepts any), one gold its text
        golds = [
            g if g is None or len(g) > 1 else g[0]
            for g in gold_choices(len(completions), answer, ground_truth)
        ]
        if any(gold is not None for gold in golds):
            payload["golden_responses"] = golds
        rewards = self._post(payload).get("rewards")
        if not isinstance(rewards, list) or len(rewards) != len(completions):
            raise RemoteRewardError(
                f"reward server at {self.url} answered {rewards!r:.200} for {len(completions)} completions"
            )
        try:
            return check_reward_values("remote", rewards, len(completions))
        except RewardCallError as exc:
            raise RemoteRewardError(
                f"reward server at {self.url} answered an unusable reward: {exc}"
            ) from None

    def check_reachable(self) -> None:
        """Raise RemoteRewardError unless the URL answers as a reward server: one request of the shape training
        sends (`PROBE`, retried as a scoring request is), whose answer must be `{"rewards": [one value]}` or a
        reward server's own error. Run at start-up, so a wrong URL, a server of another kind (a web page, a
        vLLM server, a reward server at another path) or a wrong API key shows before a model is loaded rather
        than after the first generation."""
        failure: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self._http().post(self.url, json=PROBE, headers=self._headers())
                break
            except httpx.TransportError as exc:
                failure = exc
        else:
            raise RemoteRewardError(
                f"cannot reach the reward server of remote:{self.url} ({type(failure).__name__}: {failure}); "
                "start it first with 'rlvr serve-rewards --reward NAME --port PORT', or correct the URL in "
                "rewards.functions"
            ) from failure
        if response.status_code in (401, 403):
            raise RemoteRewardError(
                f"the reward server at remote:{self.url} refused the request ({response.status_code} "
                f"{_error_text(response)}): set the RLVR_API_KEY environment variable to the key it was started "
                "with (rlvr serve-rewards --api-key)"
            )
        problem = _not_a_reward_answer(response)
        if problem is not None:
            raise RemoteRewardError(
                f"remote:{self.url} answers, but not as a reward server: {problem}. Give the URL of "
                "'rlvr serve-rewards' (or another server of its request shape) with its path, e.g. "
                "http://HOST:PORT/get_reward, in rewards.functions"
            )

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        failure: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self._http().post(self.url, json=payload, headers=self._headers())
            except httpx.TransportError as exc:  # refused connection, timeout, dropped connection
                failure = exc
                continue
            if response.status_code < 400:
                return response.json()
            problem = f"{response.status_code}: {_error_text(response)}"
            if response.status_code < 500:
                raise RemoteRewardError(f"reward server at {self.url} rejected the request ({problem})")
            failure = RemoteRewardError(f"reward server at {self.url} failed ({problem})")
        attempts = self.retries + 1
        if isinstance(failure, (httpx.ConnectError, httpx.ConnectTimeout)):
            raise RemoteRewardError(
                f"cannot reach the reward server at {self.url} after {attempts} attempts ({failure}); "
                "start it with 'rlvr serve-rewards --reward NAME --port PORT' and check the URL"
            ) from failure
        raise RemoteRewardError(
            f"reward server at {self.url} failed after {attempts} attempts: {failure}"
        ) from failure

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self.timeout)
            return self._client

    def close(self) -> None:
        """Close the HTTP connection pool (it is reopened on the next call)."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __getstate__(self) -> dict[str, Any]:
        # Picklable for process pools: the connection pool and lock are per process.
        state = self.__dict__.copy()
        state["_client"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RemoteReward({self.url!r}, timeout={self.timeout}, retries={self.retries})"


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        return str(body.get("error") or body.get("detail") or body)[:300]
    return str(body)[:300]


def _not_a_reward_answer(response: httpx.Response) -> str | None:
    """Why `response` to `PROBE` is not a reward server's answer, or None when it is one.

    A 2xx must be JSON with a list of one reward; 404 and 405 say the URL is not a scoring route. Other errors
    with a JSON body are a reward server refusing this one probe (a reward that needs columns it lacks), which
    real requests may not share.
    """
    status = response.status_code
    if status in (404, 405):
        return f"{status} {_error_text(response)} (no scoring route at this path)"
    try:
        body = response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content type")
        return f"{status} with a body that is not JSON ({kind}: {' '.join(response.text.split())[:60]!r})"
    if status >= 300:
        return None if isinstance(body, dict) else f"{status} {str(body)[:200]}"
    rewards = body.get("rewards") if isinstance(body, dict) else None
    if not isinstance(rewards, list) or len(rewards) != 1:
        return f"{status} {str(body)[:200]}, where a reward server answers {{'rewards': [...]}} with one per response"
    return None
