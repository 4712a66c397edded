"""The GRPO trainer: sample -> score -> advantages -> policy updates -> log -> checkpoint."""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from rlvr.algorithm import combine_rewards, completion_logps, group_advantages, grpo_loss
from rlvr.config import ConfigError, GRPOConfig
from rlvr.data import build_messages, load_problems, render_prompt
from rlvr.distributed import DistState, all_reduce_sum, barrier, init_distributed
from rlvr.models import is_peft, load_policy, make_reference, resolve_device
from rlvr.rollout import Rollout, autocast, decode_completions, sample
from rlvr.trainer.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    rotate_checkpoints,
    save_checkpoint,
)
from rlvr.trainer.logging import RunLogger
from rlvr.trainer.sampler import PromptSampler
from rlvr.trainer.scoring import reward_name, score
from rlvr.utils import atomic_directory


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class GRPOTrainer:
    """Group Relative Policy Optimization with verifiable rewards.

    >>> trainer = GRPOTrainer(GRPOConfig.from_yaml("configs/gsm8k_boxed.yaml"))  # doctest: +SKIP
    >>> trainer.train()  # doctest: +SKIP

    `model`/`tokenizer`, `reward_funcs` and `train_dataset` (rows with `question` and `answer`) may
    be passed directly from a notebook; otherwise they come from the config.
    """

    def __init__(
        self,
        config: GRPOConfig,
        model: Any | None = None,
        tokenizer: Any | None = None,
        reward_funcs: list[Callable] | None = None,
        train_dataset: list[dict[str, Any]] | None = None,
        eval_dataset: list[dict[str, Any]] | None = None,
    ) -> None:
        self.config = config
        self.dist: DistState = init_distributed(config.distributed.backend)
        self.output_dir = Path(config.training.output_dir)
        seed_everything(config.training.seed + self.dist.rank)
        a = config.algorithm

        # Cheap checks first, so bad input fails before a model is loaded.
        self.reward_funcs = reward_funcs or self._load_rewards()
        self.reward_names = [reward_name(fn) for fn in self.reward_funcs]
        if config.rewards.weights is not None and len(config.rewards.weights) != len(self.reward_funcs):
            raise ConfigError(
                f"rewards.weights has {len(config.rewards.weights)} entries for "
                f"{len(self.reward_funcs)} reward functions"
            )
        self.reward_weights = torch.tensor(config.rewards.weights or [1.0] * len(self.reward_funcs))
        self.problems = train_dataset if train_dataset is not None else self._load_problems()
        self.eval_problems = eval_dataset

        device = resolve_device(config.model.device)
        if model is None:
            model, tokenizer = load_policy(config.model, device)
        elif tokenizer is None:
            raise ConfigError("pass the tokenizer along with the model")
        self.model, self.tokenizer = model.to(device), tokenizer
        self.device = device
        self.autocast_dtype = torch.bfloat16 if config.training.bf16 else None
        if is_peft(self.model) and (a.ref_model_refresh_steps or a.sync_ref_model):
            raise ConfigError(
                "reference refresh/sync is not available with LoRA: the reference is the base "
                "model with adapters off. Disable algorithm.ref_model_refresh_steps/sync_ref_model"
            )
        self.ref_model = make_reference(self.model) if a.beta > 0 else None

        self.prompts_per_step = config.training.batch_size // config.generation.num_generations
        self.sampler = PromptSampler(
            len(self.problems),
            self.prompts_per_step,
            config.training.seed,
            config.data.shuffle,
            self.dist.rank,
            self.dist.world_size,
        )
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=config.training.learning_rate,
            betas=(config.training.adam_beta1, config.training.adam_beta2),
            weight_decay=config.training.weight_decay,
        )
        self.scheduler = self._make_scheduler()
        self.step = 0
        self.best_metric: float | None = None
        self.best_checkpoint: str | None = None
        self.logger: RunLogger | None = None

    # ----------------------------------------------------------------------------------- set-up
    def _load_rewards(self) -> list[Callable]:
        from rlvr.rewards import get_reward

        fns = []
        for spec in self.config.rewards.functions:
            if spec.startswith("remote:"):
                from rlvr.rewards.remote import RemoteReward

                fns.append(
                    RemoteReward(
                        spec[len("remote:") :],
                        timeout=self.config.rewards.remote_timeout,
                        retries=self.config.rewards.remote_retries,
                    )
                )
            else:
                fns.append(get_reward(spec))
        return fns

    def _load_problems(self) -> list[dict[str, Any]]:
        d = self.config.data
        return load_problems(
            d.dataset,
            d.split,
            d.data_dir,
            d.hub_config,
            d.question_field,
            d.answer_field,
            d.answer_format,
            d.limit,
        )

    def _make_scheduler(self) -> Any:
        from transformers import get_scheduler

        t = self.config.training
        total = t.max_steps * self.config.algorithm.mu
        name = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}[
            t.lr_scheduler_type
        ]
        return get_scheduler(
            name, self.optimizer, num_warmup_steps=int(t.warmup_ratio * total), num_training_steps=total
        )

    # ------------------------------------------------------------------------------- the loop
    def train(self, resume: bool = False) -> Path:
        """Run to max_steps (from the newest checkpoint when `resume`); returns the final model's directory."""
        t = self.config.training
        if resume:
            self.resume_from_latest()
        if self.dist.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "config.yaml").write_text(self.config.to_yaml())
        self.logger = RunLogger(self.output_dir, t.report_to, self.dist.is_main, self.config.to_dict())
        progress = tqdm(
            total=t.max_steps,
            initial=self.step,
            desc="grpo",
            disable=not self.dist.is_main,
            dynamic_ncols=True,
        )
        while self.step < t.max_steps:
            started = time.perf_counter()
            rollout, timings = self.generate_rollout()
            rewards_per_fn = self.score_rollout(rollout, timings)
            advantages, stats = self.compute_advantages(rewards_per_fn)
            stats.update(self.policy_updates(rollout, advantages, timings))
            self.step += 1
            stats.update(self.rollout_stats(rollout, timings, time.perf_counter() - started))
            self.update_reference()
            evaluated = bool(t.eval_steps) and self.step % t.eval_steps == 0
            if evaluated:
                stats.update(self.evaluate())
            if evaluated or (t.logging_steps and self.step % t.logging_steps == 0):
                self.logger.log_metrics(self.step, stats)
            if t.log_completions_steps and self.step % t.log_completions_steps == 0:
                self.logger.log_completions(self.completion_records(rollout, rewards_per_fn, advantages))
            if t.save_steps and self.step % t.save_steps == 0:
                self.save_checkpoint(stats)
            progress.update(1)
            progress.set_postfix(
                reward=f"{stats['reward']:.3f}",
                kl=f"{stats['kl']:.4f}",
                len=f"{stats['completion_length/mean']:.0f}",
            )
        progress.close()
        self.logger.close()
        return self.save_final()

    # ------------------------------------------------------------------------------- the steps
    def generate_rollout(self) -> tuple[Rollout, dict[str, float]]:
        """Sample G completions for this step's prompts."""
        cfg = self.config
        started = time.perf_counter()
        rows = [self.problems[i] for i in self.sampler.next_indices()]
        messages = [
            build_messages(r["question"], cfg.data.template, cfg.data.system_prompt, cfg.data.few_shot)
            for r in rows
        ]
        texts = [render_prompt(self.tokenizer, m) for m in messages]
        g = cfg.generation.num_generations
        prompt_ids, prompt_mask, completion_ids, completion_mask, truncated, cut = sample(
            self.unwrapped_model,
            self.tokenizer,
            texts,
            cfg.generation,
            g,
            cfg.data.max_prompt_length,
            self.autocast_dtype,
        )
        columns = {
            key: [row.get(key) for row in rows for _ in range(g)] for key in rows[0] if key != "prompt"
        }
        rollout = Rollout(
            prompt_ids=prompt_ids,
            prompt_mask=prompt_mask,
            completion_ids=completion_ids,
            completion_mask=completion_mask,
            truncated=truncated,
            prompts=[m for m in messages for _ in range(g)],
            completions=decode_completions(self.tokenizer, completion_ids, completion_mask),
            columns=columns,
            num_prompts_cut=cut,
        )
        return rollout, {"timing/generate": time.perf_counter() - started}

    def score_rollout(self, rollout: Rollout, timings: dict[str, float]) -> torch.Tensor:
        """Rewards [N, F], NaN where a function said "not applicable"."""
        started = time.perf_counter()
        # completion_ids as TRL passes them, so length-based rewards count tokens
        completion_ids = [
            ids[mask.bool()].tolist() for ids, mask in zip(rollout.completion_ids, rollout.completion_mask)
        ]
        columns = {**rollout.columns, "completion_ids": completion_ids}
        per_fn = score(self.reward_funcs, rollout.prompts, rollout.completions, columns)
        timings["timing/score"] = time.perf_counter() - started
        return per_fn

    def compute_advantages(self, rewards_per_fn: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        rewards = combine_rewards(rewards_per_fn, self.reward_weights)
        batch_std = None
        if cfg.algorithm.scale_rewards == "batch" and self.dist.enabled:
            totals = all_reduce_sum(
                torch.stack([rewards.sum(), (rewards**2).sum(), torch.tensor(float(rewards.numel()))]),
                self.dist,
            )
            n = totals[2]
            batch_std = torch.sqrt(((totals[1] - totals[0] ** 2 / n) / (n - 1)).clamp(min=0))
        advantages, zero_std = group_advantages(
            rewards, cfg.generation.num_generations, cfg.algorithm.scale_rewards, batch_std=batch_std
        )
        sums = all_reduce_sum(
            torch.stack(
                [
                    rewards.sum(),
                    (rewards**2).sum(),
                    torch.tensor(float(rewards.numel())),
                    zero_std.float().sum(),
                    torch.tensor(float(zero_std.numel())),
                ]
            ),
            self.dist,
        )
        mean = (sums[0] / sums[2]).item()
        stats = {
            "reward": mean,
            "reward_std": math.sqrt(max(sums[1].item() / sums[2].item() - mean**2, 0.0)),
            "frac_reward_zero_std": (sums[3] / sums[4]).item(),
        }
        for j, name in enumerate(self.reward_names):
            column = rewards_per_fn[:, j]
            valid = ~torch.isnan(column)
            stats[f"rewards/{name}"] = column[valid].mean().item() if valid.any() else float("nan")
        return advantages, stats

    def policy_updates(
        self, rollout: Rollout, advantages: torch.Tensor, timings: dict[str, float]
    ) -> dict[str, float]:
        """mu optimizer steps on this rollout, each over gradient_accumulation_steps micro-batches."""
        cfg = self.config
        a, t = cfg.algorithm, cfg.training
        input_ids, attention_mask = rollout.input_ids, rollout.attention_mask
        loss_mask = rollout.completion_mask
        if a.mask_truncated_completions:
            loss_mask = loss_mask * (~rollout.truncated).unsqueeze(1).long()
        advantages = advantages.to(self.device)
        micro = len(rollout) // t.gradient_accumulation_steps
        slices = [slice(s, s + micro) for s in range(0, len(rollout), micro)]

        started = time.perf_counter()
        # Old log-probs are taken before the first update so the ratio is real when mu > 1; with
        # mu = 1 the policy has not moved since sampling, the ratio is exactly 1, and the pass is skipped.
        old_logps = (
            self.batched_logps(self.model, input_ids, attention_mask, loss_mask, slices) if a.mu > 1 else None
        )
        ref_logps = self.reference_logps(input_ids, attention_mask, loss_mask, slices) if a.beta > 0 else None
        timings["timing/logps"] = time.perf_counter() - started

        started = time.perf_counter()
        # Normalisers for the whole batch (and all ranks), so micro-batch losses add up to the batch loss.
        num_tokens = all_reduce_sum(loss_mask.sum().float(), self.dist) / self.dist.world_size
        totals = {
            "loss": 0.0,
            "kl": 0.0,
            "clip_ratio/low": 0.0,
            "clip_ratio/high": 0.0,
            "entropy": 0.0,
            "grad_norm": 0.0,
        }
        self.model.train()
        for _ in range(a.mu):
            self.optimizer.zero_grad(set_to_none=True)
            for part in slices:
                with autocast(self.device, self.autocast_dtype):
                    logps, entropy = completion_logps(
                        self.model,
                        input_ids[part],
                        attention_mask[part],
                        loss_mask[part],
                        cfg.generation.temperature,
                        a.logprob_chunk_size,
                    )
                out = grpo_loss(
                    logps=logps,
                    old_logps=old_logps[part] if old_logps is not None else logps.detach(),
                    advantages=advantages[part],
                    mask=loss_mask[part],
                    loss_type=a.loss_type,
                    max_completion_length=cfg.generation.max_completion_length,
                    epsilon=a.epsilon,
                    epsilon_high=a.epsilon_high,
                    beta=a.beta,
                    ref_logps=ref_logps[part] if ref_logps is not None else None,
                    num_sequences=len(rollout),
                    num_tokens=num_tokens,
                )
                loss = out.loss / len(slices) if a.loss_type == "bnpo" else out.loss
                if loss.requires_grad:  # a micro-batch whose tokens are all masked out adds nothing
                    loss.backward()
                share = 1.0 / (len(slices) * a.mu)
                totals["loss"] += loss.item() / a.mu
                totals["kl"] += out.kl.item() * share
                totals["clip_ratio/low"] += out.low_clip.item() * share
                totals["clip_ratio/high"] += out.high_clip.item() * share
                mask_f = loss_mask[part].float()
                totals["entropy"] += ((entropy * mask_f).sum() / mask_f.sum().clamp(min=1)).item() * share
            grad_norm = torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad],
                t.max_grad_norm if t.max_grad_norm is not None else math.inf,
            )
            totals["grad_norm"] += grad_norm.item() / a.mu
            self.optimizer.step()
            self.scheduler.step()
        timings["timing/update"] = time.perf_counter() - started
        totals["learning_rate"] = self.scheduler.get_last_lr()[0]
        return totals

    @torch.no_grad()
    def batched_logps(
        self,
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        loss_mask: torch.Tensor,
        slices: list[slice],
    ) -> torch.Tensor:
        parts = []
        for part in slices:
            with autocast(self.device, self.autocast_dtype):
                logps, _ = completion_logps(
                    model,
                    input_ids[part],
                    attention_mask[part],
                    loss_mask[part],
                    self.config.generation.temperature,
                    self.config.algorithm.logprob_chunk_size,
                )
            parts.append(logps)
        return torch.cat(parts)

    def reference_logps(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        loss_mask: torch.Tensor,
        slices: list[slice],
    ) -> torch.Tensor:
        if self.ref_model is not None:
            return self.batched_logps(self.ref_model, input_ids, attention_mask, loss_mask, slices)
        with self.unwrapped_model.disable_adapter():  # LoRA: the base model is the reference
            return self.batched_logps(self.model, input_ids, attention_mask, loss_mask, slices)

    def update_reference(self) -> None:
        """Hard refresh every ref_model_refresh_steps, or TR-DPO soft sync every ref_model_sync_steps."""
        a = self.config.algorithm
        if self.ref_model is None:
            return
        if a.ref_model_refresh_steps and self.step % a.ref_model_refresh_steps == 0:
            self.ref_model.load_state_dict(self.unwrapped_model.state_dict())
        elif a.sync_ref_model and self.step % a.ref_model_sync_steps == 0:
            # parameters(), not state_dict(): tied embeddings appear once, so each is mixed once
            with torch.no_grad():
                for ref, policy in zip(self.ref_model.parameters(), self.unwrapped_model.parameters()):
                    ref.mul_(1 - a.ref_model_mixup_alpha).add_(policy, alpha=a.ref_model_mixup_alpha)

    def rollout_stats(self, rollout: Rollout, timings: dict[str, float], seconds: float) -> dict[str, float]:
        lengths = rollout.completion_mask.sum(1).float()
        totals = all_reduce_sum(
            torch.stack(
                [
                    lengths.sum(),
                    torch.tensor(float(len(lengths))),
                    rollout.truncated.float().sum(),
                    torch.tensor(float(rollout.num_prompts_cut)),
                ]
            ),
            self.dist,
        )
        return {
            "completion_length/mean": (totals[0] / totals[1]).item(),
            "completion_length/max": lengths.max().item(),
            "truncated_frac": (totals[2] / totals[1]).item(),
            "prompts_cut": totals[3].item(),
            "step_seconds": seconds,
            "tokens_per_second": totals[0].item() / seconds,
            "epoch": self.sampler.epoch,
            **timings,
        }

    def completion_records(
        self, rollout: Rollout, rewards_per_fn: torch.Tensor, advantages: torch.Tensor
    ) -> list[dict[str, Any]]:
        """One record per completion for completions.jsonl: the file to read when hunting reward hacking."""
        records = []
        for i, completion in enumerate(rollout.completions):
            prompt = rollout.prompts[i]
            records.append(
                {
                    "step": self.step,
                    "prompt": prompt[-1]["content"] if isinstance(prompt, list) else prompt,
                    "completion": completion,
                    "answer": rollout.columns.get("answer", [None] * len(rollout))[i],
                    "rewards": {
                        name: _none_if_nan(rewards_per_fn[i, j].item())
                        for j, name in enumerate(self.reward_names)
                    },
                    "reward": combine_rewards(rewards_per_fn[i : i + 1], self.reward_weights).item(),
                    "advantage": advantages[i].item(),
                    "length": int(rollout.completion_mask[i].sum()),
                    "truncated": bool(rollout.truncated[i]),
                }
            )
        return records

    def evaluate(self) -> dict[str, float]:
        """Held-out accuracy with the evaluation module; keeps the best checkpoint by metric_for_best_model."""
        from rlvr.evaluation import evaluate_model

        t = self.config.training
        if t.eval_dataset is None and self.eval_problems is None:
            return {}
        if self.eval_problems is None:
            d = self.config.data
            self.eval_problems = load_problems(t.eval_dataset, t.eval_split, d.data_dir, limit=t.eval_limit)
        summary = evaluate_model(
            self.unwrapped_model,
            self.tokenizer,
            self.eval_problems[: t.eval_limit],
            template=self.config.data.template,
            reward=t.eval_reward,
            max_new_tokens=self.config.generation.max_completion_length,
            system_prompt=self.config.data.system_prompt,
            few_shot=self.config.data.few_shot,
            autocast_dtype=self.autocast_dtype,
            show_progress=False,
        )
        metrics = {f"eval/{k}": v for k, v in summary.items() if isinstance(v, (int, float))}
        value = metrics.get(t.metric_for_best_model)
        if value is not None and (self.best_metric is None or value > self.best_metric):
            self.best_metric = value
            self.best_checkpoint = str(
                self.output_dir / f"checkpoint-{self.step}"
            )  # set first: rotation keeps it
            self.save_checkpoint(metrics)
        return metrics

    # ---------------------------------------------------------------------- saving and resuming
    @property
    def unwrapped_model(self) -> Any:
        return getattr(self.model, "module", self.model)

    def trainer_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "sampler": self.sampler.state_dict(),
            "best_metric": self.best_metric,
            "best_checkpoint": self.best_checkpoint,
        }

    def save_checkpoint(self, metrics: dict[str, float] | None = None) -> Path:
        path = self.output_dir / f"checkpoint-{self.step}"
        if self.dist.is_main:
            state = {**self.trainer_state(), "metrics": metrics or {}}
            refreshes = self.config.algorithm.ref_model_refresh_steps or self.config.algorithm.sync_ref_model
            save_checkpoint(
                path,
                self.unwrapped_model,
                self.tokenizer,
                self.optimizer,
                self.scheduler,
                state,
                ref_model=self.ref_model if refreshes else None,
            )
            keep = Path(self.best_checkpoint) if self.best_checkpoint else None
            rotate_checkpoints(self.output_dir, self.config.training.save_total_limit, keep=keep)
        barrier(self.dist)
        return path

    def resume_from_latest(self) -> Path | None:
        """Load the newest checkpoint in output_dir, if any."""
        checkpoints = list_checkpoints(self.output_dir)
        if not checkpoints:
            if self.dist.is_main:
                print(f"--resume: no checkpoint in {self.output_dir}, starting from step 0")
            return None
        path = checkpoints[-1]
        state = load_checkpoint(path, self.unwrapped_model, self.optimizer, self.scheduler, self.ref_model)
        self.step = state["step"]
        self.sampler.load_state_dict(state["sampler"])
        self.best_metric = state.get("best_metric")
        self.best_checkpoint = state.get("best_checkpoint")
        return path

    def save_final(self) -> Path:
        """The final model in Hugging Face format (LoRA: the adapter, plus a merged copy when lora.merge)."""
        final = self.output_dir / "final"
        if self.dist.is_main:
            model = self.unwrapped_model
            with atomic_directory(final) as tmp:
                model.save_pretrained(tmp)
                self.tokenizer.save_pretrained(tmp)
            if is_peft(model) and self.config.model.lora.merge:
                merged = copy.deepcopy(
                    model
                ).merge_and_unload()  # merging in place would strip the live adapters
                with atomic_directory(self.output_dir / "final-merged") as tmp:
                    merged.save_pretrained(tmp)
                    self.tokenizer.save_pretrained(tmp)
        barrier(self.dist)
        return final


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value
