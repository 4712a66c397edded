"""Which prompts each step trains on: a seeded permutation per epoch, sliced by rank."""

from __future__ import annotations

import torch


class PromptSampler:
    """Deterministic, resumable prompt order.

    Each step takes the next `prompts_per_step * world_size` indices of the epoch's permutation and
    gives rank r the r-th contiguous slice, so N ranks with b prompts see exactly the prompts one
    process with N * b would. A partial last chunk is dropped and a new epoch starts.
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

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
