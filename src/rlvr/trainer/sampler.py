"""Which prompts each step trains on (a seeded permutation per epoch, sliced by rank), and the seed each
prompt's completions are sampled with."""

from __future__ import annotations

import numpy as np
import torch


def derived_seed(*keys: int) -> int:
    """A 32-bit seed mixed from integer keys, e.g. (training seed, step, prompt position): neighbouring keys
    give unrelated streams, unlike `seed + step`.

    >>> derived_seed(0, 1, 2) == derived_seed(0, 1, 2) != derived_seed(0, 2, 1)
    True
    """
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


class PromptSampler:
    """Deterministic, resumable prompt order.

    Each draw takes the next `prompts_per_step * world_size` indices of the epoch's permutation and
    gives rank r the r-th contiguous slice, so N ranks with b prompts see exactly the prompts one
    process with N * b would. A partial last chunk is dropped and a new epoch starts. A step draws once,
    or (dynamic sampling) up to 1 + max_resample_rounds times, the same number on every rank.
    """

    def __init__(
        self,
        num_rows: int,
        prompts_per_step: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        global_batch = prompts_per_step * world_size
        if num_rows < global_batch:
            raise ValueError(
                f"the dataset has {num_rows} prompts but one step needs {global_batch} "
                f"({prompts_per_step} per process x {world_size} processes): lower training.batch_size "
                "or use more data"
            )
        self.num_rows = num_rows
        self.prompts_per_step = prompts_per_step
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.position = 0

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_rows))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.num_rows, generator=generator).tolist()

    def next_indices(self) -> list[int]:
        global_batch = self.prompts_per_step * self.world_size
        if self.position + global_batch > self.num_rows:
            self.epoch += 1
            self.position = 0
        chunk = self._order()[self.position : self.position + global_batch]
        self.position += global_batch
        return chunk[self.rank * self.prompts_per_step : (self.rank + 1) * self.prompts_per_step]

    def first_position(self, draw: int = 0) -> int:
        """Where this rank's prompts of the step's `draw`-th draw start among all the prompts the step drew."""
        return (draw * self.world_size + self.rank) * self.prompts_per_step

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
