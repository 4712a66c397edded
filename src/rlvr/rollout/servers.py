"""Several rollout servers behind one engine: `vllm.server_url` as a list.

Each engine call is cut into contiguous runs of prompts, one per server, sent at once; a first turn's prompt
carries its G samples, so a group is sampled whole on one server (later turns of multi-turn episodes are spread
the same way, one episode per prompt). A weight push gathers the policy's weights once, makes the request once
(one file in vllm.weights_dir, or one body) and sends it to every server, and returns when every server holds
them: no server samples the new version before all have it, and none samples an old one after it. A server that
fails is named, with each other that failed in the same call, and stops the run; with
`vllm.server_failure: continue` it leaves the run instead (its prompts go again to the others) while one is left.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

import torch

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

    def __init__(self, servers: list[ServerEngine], keep_going: bool = False) -> None:
        first = servers[0]
        super().__init__(first.tokenizer, first.max_prompt_length, first.eos_ids)
        self.servers = servers
        self.keep_going = keep_going  # vllm.server_failure=continue: a failed server leaves, the others go on
        self.threads = concurrent.futures.ThreadPoolExecutor(len(servers), "rlvr-rollout-server")
        self.weight_versions = 0
        self.dropped: list[ServerEngine] = []  # servers that left while this process generated

    @classmethod
    def for_training(cls, config: GRPOConfig, model: Any, tokenizer: Any) -> ServerPool:
        servers: list[ServerEngine] = []
        try:
            for url in config.vllm.server_urls:
                servers.append(ServerEngine.for_training(config, model, tokenizer, url=url, sync=False))
            pool = cls(servers, keep_going=config.vllm.server_failure == "continue")
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
        answers: list[Any] = [None] * len(prompts)  # each prompt's num_samples rows
        todo = list(range(len(prompts)))
        # a prompt whose server failed goes again to the servers left (vllm.server_failure=continue)
        while todo:
            runs = [
                (server, todo[lo:hi])
                for server, (lo, hi) in zip(self.servers, spread(len(todo), len(self.servers)))
                if hi > lo
            ]
            outcomes = self._on_each(
                [
                    lambda s=server, run=run: s.generate_ids(
                        [prompts[i] for i in run], num_samples, config, [seeds[i] for i in run], greedy
                    )
                    for server, run in runs
                ]
            )
            failed = [
                (server, out) for (server, _), out in zip(runs, outcomes) if isinstance(out, EngineError)
            ]
            self._drop(failed)
            todo = []
            for (_, run), out in zip(runs, outcomes):
                if isinstance(out, EngineError):
                    todo += run
                    continue
                for k, i in enumerate(run):
                    answers[i] = out[k * num_samples : (k + 1) * num_samples]
        return [row for answer in answers for row in answer]

    def sync_weights(self) -> None:
        """Gather the weights once (rank 0 sends; under FSDP every rank gathers), send them to every server, and
        return when all hold them; every rank learns whether they did, and which servers left."""
        first = self.servers[0]
        if first.source is None:
            return
        # A server one rank dropped while generating leaves every rank before the push: else rank 0 would stop
        # sending it weights while other ranks still sample from it, from an old policy.
        gone = _union_over_ranks({s.url for s in self.dropped})
        for server in [s for s in self.servers if s.url in gone]:
            self._drop(
                [(server, EngineError(f"rollout server {server.url} failed on another training process"))]
            )
        first = self.servers[0]
        outcome: tuple[str, Any] | None = None
        sharded = any(hasattr(p, "full_tensor") for p in first.source.parameters())
        if first.rank == 0 or sharded:
            weights = dict(policy_weights(first.source, first.dtype))
        if first.rank == 0:
            try:
                request = first.weights_request(weights)
                servers = list(self.servers)
                outcomes = self._on_each([lambda s=s: s.send_weights(request) for s in servers])
                failed = [(s, out) for s, out in zip(servers, outcomes) if isinstance(out, EngineError)]
                self._drop(failed)
                outcome = ("ok", [s.url for s, _ in failed])
            except EngineError as exc:
                outcome = ("error", str(exc))
        kind, value = _agreed(outcome)
        if kind == "error":
            raise EngineError(value)
        left = [s for s in self.servers if s.url in value]  # what rank 0 dropped, dropped here too
        self.servers = [s for s in self.servers if s not in left]
        for server in left:
            server.close()
        self.weight_versions += 1
        for server in self.servers:
            server.weight_versions += 1

    def _on_each(self, calls: list[Callable[[], Any]]) -> list[Any]:
        """Run the calls at once and wait for all; their results in order, an EngineError in place of a call that
        failed at its server (anything else is a bug, and raised)."""
        futures = [self.threads.submit(call) for call in calls]
        concurrent.futures.wait(futures)
        for future in futures:
            error = future.exception()
            if error is not None and not isinstance(error, EngineError):
                raise error
        return [f.exception() or f.result() for f in futures]

    def _drop(self, failed: list[tuple[ServerEngine, EngineError]]) -> None:
        """Stop the run naming every server that failed; or, with vllm.server_failure=continue and servers left,
        go on without them (said on the console)."""
        if not failed:
            return
        if not self.keep_going or len(failed) == len(self.servers):
            raise EngineError(
                "; ".join(str(error) for _, error in failed)
                + f" ({len(failed)} of {len(self.servers)} rollout servers failed)"
            )
        gone = {id(server) for server, _ in failed}
        self.dropped += [server for server, _ in failed]
        self.servers = [s for s in self.servers if id(s) not in gone]
        for server, error in failed:
            server.close()
            print(
                f"rollout server {server.url} left the run (vllm.server_failure=continue): {error}; going on with "
                f"{len(self.servers)}: {', '.join(s.url for s in self.servers)}",
                flush=True,
            )

    def close(self) -> None:
        for server in self.servers:
            server.close()
        self.threads.shutdown(wait=False, cancel_futures=True)


def _union_over_ranks(urls: set[str]) -> set[str]:
    """The union of every training process's `urls` (this process's own when it runs alone)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gathered: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, urls)
        return set().union(*gathered)
    return urls
