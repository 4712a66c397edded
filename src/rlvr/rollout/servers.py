"""Several rollout servers behind one engine: `vllm.server_url` as a list.

Each engine call is cut into contiguous runs of prompts, one per server, sent at once; a first turn's prompt
carries its G samples, so a group is sampled whole on one server (later turns of multi-turn episodes are spread
the same way, one episode per prompt). A weight push gathers the policy's weights once, makes the request once
(one file in vllm.weights_dir, or one body) and sends it to every server, and returns when every server holds
them: no server samples the new version before all have it, and none samples an old one after it. A server that
fails is named, with each other that failed in the same call.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

from rlvr.config import GenerationConfig, GRPOConfig
from rlvr.rollout.client import ServerEngine, _agreed
from rlvr.rollout.engine import EngineError, TokenEngine
from rlvr.rollout.weights import policy_weights


def spread(n: int, parts: int) -> list[tuple[int, int]]:
    """[lo, hi) runs of `n` items over `parts` servers, in order, sizes differing by at most one (empty runs at
    the end when n < parts).

    >>> spread(5, 2), spread(1, 3)
    ([(0, 3), (3, 5)], [(0, 1), (1, 1), (1, 1)])
    """
    size, extra = divmod(n, parts)
    bounds, lo = [], 0
    for k in range(parts):
        hi = lo + size + (k < extra)
        bounds.append((lo, hi))
        lo = hi
    return bounds


class ServerPool(TokenEngine):
    """`ServerEngine`s of several rollout servers as one engine (each checked at start: it answers and serves
    the model trained)."""

    name = "vllm-server"
    runs_apart = True  # on devices of their own: they may sample while the trainer updates

    def __init__(self, servers: list[ServerEngine]) -> None:
        first = servers[0]
        super().__init__(first.tokenizer, first.max_prompt_length, first.eos_ids)
        self.servers = servers
        self.threads = concurrent.futures.ThreadPoolExecutor(len(servers), "rlvr-rollout-server")
        self.weight_versions = 0

    @classmethod
    def for_training(cls, config: GRPOConfig, model: Any, tokenizer: Any) -> ServerPool:
        servers: list[ServerEngine] = []
        try:
            for url in config.vllm.server_urls:
                servers.append(ServerEngine.for_training(config, model, tokenizer, url=url, sync=False))
            pool = cls(servers)
        except BaseException:
            for server in servers:
                server.close()
            raise
        try:
            pool.sync_weights()
        except BaseException:
            pool.close()
            raise
        return pool

    @property
    def source(self) -> Any:
        return self.servers[0].source

    def generate_ids(
        self,
        prompts: list[list[int]],
        num_samples: int,
        config: GenerationConfig,
        seeds: list[int],
        greedy: bool,
    ) -> list[tuple[list[int], list[float] | None]]:
        calls = [
            lambda s=server, lo=lo, hi=hi: s.generate_ids(
                prompts[lo:hi], num_samples, config, seeds[lo:hi], greedy
            )
            for server, (lo, hi) in zip(self.servers, spread(len(prompts), len(self.servers)))
            if hi > lo
        ]
        answers = self._on_each(calls)
        return [row for answer in answers for row in answer]

    def sync_weights(self) -> None:
        """Gather the weights once (rank 0 sends; under FSDP every rank gathers), send them to every server, and
        return when all hold them; every rank learns whether they did."""
        first = self.servers[0]
        if first.source is None:
            return
        failure = None
        sharded = any(hasattr(p, "full_tensor") for p in first.source.parameters())
        if first.rank == 0 or sharded:
            weights = dict(policy_weights(first.source, first.dtype))
        if first.rank == 0:
            try:
                request = first.weights_request(weights)
                self._on_each([lambda s=s: s.send_weights(request) for s in self.servers])
            except EngineError as exc:
                failure = str(exc)
        failure = _agreed(failure)
        if failure is not None:
            raise EngineError(failure)
        self.weight_versions += 1
        for server in self.servers:
            server.weight_versions += 1

    def _on_each(self, calls: list[Callable[[], Any]]) -> list[Any]:
        """Run the calls at once and wait for all; their results in order, or one EngineError naming every
        server that failed."""
        futures = [self.threads.submit(call) for call in calls]
        concurrent.futures.wait(futures)
        errors = [f.exception() for f in futures if f.exception() is not None]
        for error in errors:
            if not isinstance(error, EngineError):  # a bug, not a server: raised as it is
                raise error
        if errors:
            raise EngineError(
                "; ".join(map(str, errors))
                + f" ({len(errors)} of {len(self.servers)} rollout servers failed)"
            )
        return [f.result() for f in futures]

    def close(self) -> None:
        for server in self.servers:
            server.close()
        self.threads.shutdown(wait=False, cancel_futures=True)
