"""Asynchronous rollouts with bounded staleness: a producer thread samples and scores the next batches while the
trainer updates the policy, and no sample trains more than S steps after the policy it was drawn from.

Versions count training steps: the engine holds version v once the weights after v steps reached it. Step k
(0-based: the policy it updates has version k) trains on samples of versions k - S to k. Admission control, as
SkyRL and AReaL do it, keeps the producer from starting the batch of step k before the engine holds version
k - S: batches started or ready never exceed (S + version + 1), every sample is fresh enough when it is trained,
and none is drawn to be thrown away. With S = 0 the producer starts a batch only after the previous step's push,
so generation and update take turns as in the synchronous loop.

Engine calls and weight pushes take one lock: a push lands between two calls (between two turns of a multi-turn
episode, never inside a generation), and each call records the version it sampled from (`policy_versions`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import torch

from rlvr.rollout.batch import Rollout

T = TypeVar("T")
_recording = threading.local()  # the version list of the `policy_versions` block this thread is in, if any


class PipelineStopped(Exception):
    """Raised in the producer when the pipeline closes while it works: the batch in progress is dropped."""


class StalenessError(RuntimeError):
    """A batch holds samples older than the bound allows: a bug in the pipeline, never a user's mistake."""


@dataclass
class ProducedBatch(Generic[T]):
    """What the producer made for one step, and how long it waited for weights before it could start."""

    step: int  # the step that trains it (0-based: the version of the policy it updates)
    value: T
    versions: list[int] = field(default_factory=list)  # the version of each engine call it made
    weight_wait: float = 0.0  # seconds admission held it back: the engine's weights were too old
    seconds: float = 0.0  # seconds from its start to ready


class RolloutPipeline(Generic[T]):
    """`produce(step)` run for steps first_step, first_step + 1, ... < end_step on a thread of its own, at most
    `max_staleness` steps ahead of the engine's weights; `take(step)` hands each batch to the trainer once.

    The trainer calls `push(sync)` after each step (the engine's `sync_weights`, between two engine calls) and
    `close()` when it stops, for any reason: the producer ends at its next engine call or wait, its batch in
    progress and the batches not taken are dropped (a checkpoint records the data position of the last batch
    taken, so a resumed run draws them again). An exception in `produce` reaches the trainer at its next
    `take` of a batch that was not made.

    >>> pipeline = RolloutPipeline(lambda step: step * 10, first_step=0, end_step=3, max_staleness=1)
    >>> pipeline.start()
    >>> pipeline.take(0).value, pipeline.push(lambda: None), pipeline.take(1).value
    (0, None, 10)
    >>> pipeline.close()
    True
    """

    def __init__(
        self,
        produce: Callable[[int], T],
        first_step: int,
        end_step: int,
        max_staleness: int,
        join_timeout: float = 30.0,
    ) -> None:
        if max_staleness < 0:
            raise ValueError(f"max_staleness must be >= 0, got {max_staleness}")
        self.produce = produce
        self.first_step, self.end_step = first_step, end_step
        self.max_staleness = max_staleness
        self.join_timeout = join_timeout
        self.version = first_step  # the engine holds the weights after `version` steps
        self.running: int | None = None  # the step being produced
        self._ready: dict[int, ProducedBatch[T]] = {}
        self._taken: set[int] = set()
        self._error: BaseException | None = None
        self._stopped = False
        self._changed = threading.Condition()  # guards every field above; signalled on each change
        self._engine = threading.Lock()  # one engine call or one push at a time
        self._calls: list[int] = []  # versions of the engine calls of the batch in progress
        self._thread = threading.Thread(target=self._run, name="rlvr-rollout-producer", daemon=True)

    # ------------------------------------------------------------------------------------- the producer
    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            for step in range(self.first_step, self.end_step):
                waited = time.perf_counter()
                with self._changed:  # admission: the engine's weights at most S steps older than the step's
                    while not self._stopped and self.version < step - self.max_staleness:
                        self._changed.wait()
                    if self._stopped:
                        return
                    self.running = step
                    self._calls = []
                started = time.perf_counter()
                value = self.produce(step)
                with self._changed:
                    self._ready[step] = ProducedBatch(
                        step, value, self._calls, started - waited, time.perf_counter() - started
                    )
                    self.running = None
                    self._changed.notify_all()
        except PipelineStopped:
            pass
        except BaseException as exc:  # noqa: BLE001 (handed to the trainer, which raises it)
            with self._changed:
                self._error = exc
                self.running = None
                self._changed.notify_all()

    def engine_call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)` (one engine call) under the engine lock, its version recorded when the producer
        makes it (the trainer's own calls, evaluation, record nothing)."""
        producer = threading.current_thread() is self._thread
        with self._engine:
            if producer and self._stopped:
                raise PipelineStopped
            version = self.version
            out = fn(*args, **kwargs)
        if producer:
            self._calls.append(version)
            if getattr(_recording, "versions", None) is not None:
                _recording.versions.append(version)
        return out

    # --------------------------------------------------------------------------------------- the trainer
    def take(self, step: int) -> ProducedBatch[T]:
        """The batch of `step`, once made (waiting for it); raises what stopped the producer, if it stopped."""
        if step in self._taken:
            raise ValueError(f"the batch of step {step + 1} was taken already: a sample trains once")
        if step - self.version > self.max_staleness:
            raise ValueError(  # the producer would wait for weights that never come
                f"step {step + 1} asked for while the engine holds version {self.version}: push after each step"
            )
        with self._changed:
            while step not in self._ready and self._error is None and self._thread.is_alive():
                self._changed.wait()
            if step not in self._ready:
                if self._error is not None:
                    raise self._error
                raise RuntimeError(f"the rollout producer stopped before the batch of step {step + 1}")
            batch = self._ready.pop(step)
            self._taken.add(step)
        oldest = min(batch.versions, default=step)
        if step - oldest > self.max_staleness or max(batch.versions, default=step) > step:
            raise StalenessError(
                f"the batch of step {step + 1} was sampled from versions {sorted(set(batch.versions))}, outside "
                f"[{step - self.max_staleness}, {step}]"
            )
        return batch

    def push(self, sync: Callable[[], None]) -> None:
        """Run `sync` (the engine's weight push) between two engine calls, then count the new version."""
        with self._engine:
            sync()
            with self._changed:
                self.version += 1
                self._changed.notify_all()

    @property
    def depth(self) -> int:
        """Batches made and not yet taken."""
        with self._changed:
            return len(self._ready)

    def close(self) -> bool:
        """Stop the producer and drop what it made; True when its thread has ended (it may still be in an engine
        call after join_timeout seconds: it ends when the call returns)."""
        with self._changed:
            self._stopped = True
            self._ready.clear()
            self._changed.notify_all()
        if self._thread.ident is not None:
            self._thread.join(self.join_timeout)
        return not self._thread.is_alive()


class PipelinedEngine:
    """A rollout engine shared by the trainer and a pipeline's producer: each call samples under the pipeline's
    lock and records its version, and `sync_weights` is the pipeline's push. Anything else is the engine's."""

    def __init__(self, engine: Any, pipeline: RolloutPipeline) -> None:
        self.engine = engine
        self.pipeline = pipeline

    @property
    def name(self) -> str:
        return self.engine.name

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self.pipeline.engine_call(self.engine.generate, *args, **kwargs)

    def generate_ids(self, *args: Any, **kwargs: Any) -> Any:
        return self.pipeline.engine_call(self.engine.generate_ids, *args, **kwargs)

    def sync_weights(self) -> None:
        self.pipeline.push(self.engine.sync_weights)

    def for_model(self, model: Any) -> Any:
        inner = self.engine.for_model(model)
        return self if inner is self.engine else PipelinedEngine(inner, self.pipeline)

    def close(self) -> None:
        self.engine.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


@contextlib.contextmanager
def policy_versions() -> Iterator[list[int]]:
    """The version of each engine call this thread makes through a pipeline inside the block, in order (empty
    for an engine outside a pipeline)."""
    outer = getattr(_recording, "versions", None)
    versions: list[int] = []
    _recording.versions = versions
    try:
        yield versions
    finally:
        _recording.versions = outer


def token_versions(rollout: Rollout, versions: list[int]) -> torch.Tensor:
    """[R, C] the version each sampled token was drawn from, -1 elsewhere, given `versions` of the engine calls
    that played the rollout's episodes: `run_episodes` makes one call per wave and every unfinished episode takes
    one turn in each, so turn t of every episode is call t.

    >>> r = Rollout(torch.zeros(1, 1), torch.ones(1, 1), torch.zeros(1, 4), torch.ones(1, 4), torch.tensor([False]),
    ...             ["p"], ["c"], loss_mask=torch.tensor([[1, 1, 0, 1]]), turn_index=torch.tensor([[0, 0, -1, 1]]))
    >>> token_versions(r, [3, 4])
    tensor([[ 3,  3, -1,  4]])
    """
    if rollout.turn_index is not None:
        turns = rollout.turn_index
    else:  # one reply per episode: one call
        turns = torch.where(rollout.loss_mask.bool(), 0, -1)
    sampled = (turns >= 0) & rollout.loss_mask.bool()
    if sampled.any() and int(turns[sampled].max()) >= len(versions):
        raise ValueError(
            f"tokens of turn {int(turns[sampled].max())} but {len(versions)} engine calls recorded"
        )
    table = torch.tensor(versions or [-1], dtype=torch.long)
    return torch.where(sampled, table[turns.clamp(min=0).cpu()].to(turns.device), -1)


def episode_lags(rollout: Rollout, step: int) -> torch.Tensor:
    """[E] long: how many steps older than `step` the oldest policy an episode's tokens came from is; -1 for an
    episode without sampled tokens (or a rollout without versions: every episode then has lag 0)."""
    if rollout.policy_version is None:
        return torch.zeros(rollout.num_episodes, dtype=torch.long)
    big = torch.iinfo(torch.long).max
    per_row = torch.where(rollout.policy_version >= 0, rollout.policy_version, big).min(dim=1).values
    oldest = torch.full((rollout.num_episodes,), big, dtype=torch.long, device=per_row.device)
    oldest = oldest.scatter_reduce(0, rollout.episode_index.to(per_row.device), per_row, reduce="amin")
    return torch.where(oldest == big, -1, step - oldest).cpu()
