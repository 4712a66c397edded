"""rlvr's own decode loop behind the token-id contract (`TokenEngine.generate_ids`), for episodes on the hf
engine: prompts are token ids, nothing is re-tokenized. Meant to become `HFEngine.generate_ids`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rlvr.rollout.generation import generate_static, prepacked_linears, weights_in


class HFTokenGenerator:
    """`generate_ids` on `model` with `generate_static`. With `per_prompt`, each prompt's samples come from a
    call of their own on the prompt's seed (they do not depend on the batch); otherwise one padded call for the
    whole batch, on a random state seeded from all the seeds (reproducible, but a prompt's samples depend on its
    batch), the faster choice on a CPU."""

    name = "hf"

    def __init__(
        self,
        model: Any,
        pad_id: int,
        eos_ids: list[int],
        autocast_dtype: torch.dtype | None = None,
        per_prompt: bool = False,
    ) -> None:
        self.model = model
        self.pad_id = pad_id
        self.eos_ids = list(eos_ids)
        self.autocast_dtype = autocast_dtype
        self.per_prompt = per_prompt

    @torch.no_grad()
    def generate_ids(
        self, prompts: list[list[int]], num_samples: int, config: Any, seeds: list[int], greedy: bool
    ) -> list[tuple[list[int], list[float] | None]]:
        device = next(self.model.parameters()).device
        groups = (
            [(prompts[i : i + 1], seeds[i : i + 1]) for i in range(len(prompts))]
            if self.per_prompt
            else [(prompts, seeds)]
        )
        outputs = []
        for batch, batch_seeds in groups:
            seed = (
                batch_seeds[0]
                if len(batch_seeds) == 1
                else int(np.random.SeedSequence(batch_seeds).generate_state(1)[0])
            )
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(seed)
                outputs += self._call(batch, num_samples, config, greedy, device)
        return outputs

    def _call(
        self, prompts: list[list[int]], num_samples: int, config: Any, greedy: bool, device: torch.device
    ) -> list[tuple[list[int], list[float] | None]]:
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):  # left-padded, as `tokenize_prompts` pads
            ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            mask[row, width - len(prompt) :] = 1
        ids = ids.repeat_interleave(num_samples, dim=0).to(device)
        mask = mask.repeat_interleave(num_samples, dim=0).to(device)
        was_training = self.model.training
        self.model.eval()
        try:
            with weights_in(self.model, self.autocast_dtype), prepacked_linears(self.model):
                completion, logps = generate_static(
                    self.model,
                    ids,
                    mask,
                    config,
                    self.eos_ids,
                    self.pad_id,
                    greedy=greedy,
                    group_size=num_samples,
                )
        finally:
            self.model.train(was_training)
        eos = torch.tensor(self.eos_ids, device=completion.device)
        out = []
        for row in range(completion.shape[0]):
            hits = torch.isin(completion[row], eos).nonzero()
            end = (
                int(hits[0]) + 1 if len(hits) else completion.shape[1]
            )  # through the first EOS; padding after
            out.append((completion[row, :end].tolist(), None if logps is None else logps[row, :end].tolist()))
        return out
