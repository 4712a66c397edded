"""The GRPO trainer: sample -> score -> advantages -> policy updates -> log -> checkpoint.

Under torchrun each process trains on its slice of the step's prompts (every group of G completions on one
rank); gradients meet in DDP's all-reduce or FSDP's reduce-scatter, the logged figures are over all ranks,
and rank 0 alone prints, logs and writes.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from rlvr.algorithm import (
    batch_advantages,
    combine_rewards,
    entropy_threshold,
    group_advantages,
    grpo_loss,
    high_entropy_mask,
    normalize_then_sum,
    sampling_importance_weights,
    sampling_stats,
    select_groups,
    unscorable,
    zero_range_groups,
)
from rlvr.config import ConfigError, GRPOConfig
from rlvr.data import build_messages, load_problems, render_prompt
from rlvr.distributed import (
    DistState,
    PolicyForward,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    gather_objects,
    global_norm,
    gradient_sync,
    init_distributed,
    is_sharded,
    max_over_ranks,
    mean_over_ranks,
    shard,
    sum_over_ranks,
    wrap_policy,
)
from rlvr.models import is_peft, load_policy, make_reference, resolve_device, resolve_model_path
from rlvr.rewards.pool import RewardPool, load_rewards
from rlvr.rollout import Rollout, autocast, concat_rollouts, decode_completions, group_rows
from rlvr.rollout.engine import EngineError, make_engine, require_vllm
from rlvr.trainer import checkpoint as ckpt
from rlvr.trainer.checkpoint import seed_everything
from rlvr.trainer.logging import RunLogger
from rlvr.trainer.rundir import RunDirError, prepare_output_dir, run_lock, run_signature
from rlvr.trainer.sampler import PromptSampler, derived_seed


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss keeps diverging); the message says where the last good state is."""


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
        device = resolve_device(config.model.device)
        self.dist: DistState = init_distributed(config.distributed.backend, device.type)
        if device.type == "cuda" and self.dist.enabled:
            device = torch.device("cuda", self.dist.local_rank)
        if not self.dist.is_main:  # rank 0 speaks for all: the others' progress bars would repeat it
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()
        self.output_dir = Path(config.training.output_dir)
        # One seed on every rank while the model is built: LoRA's random initial weights must agree, since
        # FSDP shards what each rank holds and broadcasts nothing. Each rank gets its own stream below.
        seed_everything(config.training.seed)
        a = config.algorithm

        # Cheap checks first, so bad input fails before a model is loaded.
        if config.generation.engine == "vllm" and config.vllm.mode == "colocate":
            require_vllm()
        refs, fns = (list(reward_funcs), list(reward_funcs)) if reward_funcs else load_rewards(config.rewards)
        self.rewards = RewardPool(refs, config.rewards.num_workers, config.rewards.timeout, fns=fns)
        self.reward_funcs = fns
        self.reward_names = self.rewards.names
        if config.rewards.weights is not None and len(config.rewards.weights) != len(self.reward_funcs):
            raise ConfigError(
                f"rewards.weights has {len(config.rewards.weights)} entries for "
                f"{len(self.reward_funcs)} reward functions"
            )
        self.reward_weights = torch.tensor(config.rewards.weights or [1.0] * len(self.reward_funcs))
        self.problems = train_dataset if train_dataset is not None else self._load_problems()
        self.eval_problems = eval_dataset

        if model is None:
            model, tokenizer = load_policy(config.model, device)
            model_path = resolve_model_path(config.model.name_or_path, config.model.cache_dir)
        elif tokenizer is None:
            raise ConfigError("pass the tokenizer along with the model")
        else:
            model_path = _saved_path(model)
        self.model, self.tokenizer = model.to(device), tokenizer
        self.device = device
        self.autocast_dtype = torch.bfloat16 if config.training.bf16 else None
        if is_peft(self.model) and (a.ref_model_refresh_steps or a.sync_ref_model):
            raise ConfigError(
                "reference refresh/sync is not available with LoRA: the reference is the base "
                "model with adapters off. Disable algorithm.ref_model_refresh_steps/sync_ref_model"
            )
        # Reference linear weights in autocast's dtype, except where a TR-DPO soft sync's small steps would
        # be rounded away, or under FSDP (one dtype per sharded unit).
        fsdp = self.dist.enabled and config.distributed.strategy == "fsdp"
        ref_dtype = self.autocast_dtype if not (a.sync_ref_model or fsdp) else None
        self.ref_model = make_reference(self.model, ref_dtype) if a.beta > 0 else None
        # `policy` generates and gives no-grad log-probs; `trained_policy` (DDP's wrapper, or the same
        # module) runs forward + backward. `self.model` stays the Hugging Face model inside them.
        self.policy, self.trained_policy = wrap_policy(
            self.model, config.distributed.strategy, self.dist, device
        )
        self.sharded = is_sharded(self.policy)
        self.ref_policy = PolicyForward(self.ref_model) if self.ref_model is not None else None
        if self.ref_policy is not None and self.sharded:
            shard(self.ref_policy, device, frozen=True)
        seed_everything(config.training.seed + self.dist.rank)
        self.engine = make_engine(
            config, self.model, tokenizer, model_path, self.autocast_dtype, self.policy.run, self.dist
        )

        self.prompts_per_step = config.training.batch_size // config.generation.num_generations
        self.sampler = PromptSampler(
            len(self.problems),
            self.prompts_per_step,
            config.training.seed,
            config.data.shuffle,
            self.dist.rank,
            self.dist.world_size,
        )
        # Built after sharding: under FSDP each rank's optimizer holds the state of its shards only.
        # The fused kernel steps 135M parameters in a sixth of the time of the default (foreach) one on a
        # CPU, without its parameter-sized temporaries; sharded (DTensor) parameters keep the default.
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=config.training.learning_rate,
            betas=(config.training.adam_beta1, config.training.adam_beta2),
            weight_decay=config.training.weight_decay,
            fused=not self.sharded and device.type in ("cpu", "cuda"),
        )
        self.scheduler = self._make_scheduler()
        self.step = 0
        self.nonfinite_in_a_row = 0  # optimizer steps skipped in a row for a non-finite loss or gradient
        self.nonfinite_total = 0
        self.best_metric: float | None = None
        self.best_checkpoint: str | None = None
        self.logger: RunLogger | None = None

    # ----------------------------------------------------------------------------------- set-up
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
            reasoning_gym=d.reasoning_gym,
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
        with self.claimed_output_dir(resume) as checkpoint:
            if checkpoint is not None:
                self.resume_from(checkpoint)
            self.run_loop()
            return self.save_final()

    def run_loop(self) -> None:
        """Steps from self.step to max_steps."""
        t = self.config.training
        self.logger = RunLogger(
            self.output_dir, t.report_to, self.dist.is_main, self.config.to_dict(), first_step=self.step + 1
        )
        progress = tqdm(
            total=t.max_steps,
            initial=self.step,
            desc="grpo",
            disable=not self.dist.is_main,
            dynamic_ncols=True,
        )
        try:
            while self.step < t.max_steps:
                started = time.perf_counter()
                rollout, timings = self.generate_rollout()
                rewards_per_fn = self.score_rollout(rollout, timings)
                resampled = {}
                if self.config.algorithm.dynamic_sampling:
                    rollout, rewards_per_fn, resampled = self.informative_batch(
                        rollout, rewards_per_fn, timings
                    )
                advantages, stats = self.compute_advantages(rewards_per_fn)
                stats.update(resampled)
                stats.update(self.policy_updates(rollout, advantages, timings))
                self.step += 1
                self.update_reference()
                self.sync_engine(timings)
                stats.update(self.rollout_stats(rollout, timings, time.perf_counter() - started))
                evaluated = bool(t.eval_steps) and self.step % t.eval_steps == 0
                if evaluated:
                    stats.update(self.evaluate())
                if evaluated or (t.logging_steps and self.step % t.logging_steps == 0):
                    self.logger.log_metrics(self.step, stats)
                if t.log_completions_steps and self.step % t.log_completions_steps == 0:
                    records = self.completion_records(rollout, rewards_per_fn, advantages)
                    for part in gather_objects(records, self.dist) or []:  # the whole batch, in prompt order
                        self.logger.log_completions(part)
                if t.save_steps and self.step % t.save_steps == 0:
                    self.save_checkpoint(stats)
                progress.update(1)
                progress.set_postfix(
                    reward=f"{stats['reward']:.3f}",
                    kl=f"{stats['kl']:.4f}" if "kl" in stats else "no reference",
                    len=f"{stats['completion_length/mean']:.0f}",
                )
        finally:
            self.rewards.close()
            self.engine.close()
            progress.close()
            self.logger.close()

    @contextlib.contextmanager
    def claimed_output_dir(self, resume: bool) -> Iterator[Path | None]:
        """Hold output_dir for this run (rank 0 takes the lock and readies it; see `rundir`) and yield the
        checkpoint to resume from; every rank gets the same checkpoint, or the same error."""
        with contextlib.ExitStack() as stack:
            outcome: tuple[str, Any] | None = None
            if self.dist.is_main:
                try:
                    stack.enter_context(run_lock(self.output_dir))
                    outcome = (
                        "ok",
                        prepare_output_dir(self.config, self.problems, resume, self.dist.world_size),
                    )
                except RunDirError as exc:
                    outcome = ("error", str(exc))
            kind, value = all_gather_objects(outcome, self.dist)[0]
            if kind == "error":
                raise RunDirError(value)
            yield value

    # ------------------------------------------------------------------------------- the steps
    def generate_rollout(self, draw: int = 0) -> tuple[Rollout, dict[str, float]]:
        """Sample G completions for each of this rank's next prompts: the step's `draw`-th draw (dynamic
        sampling draws again while too few groups are informative)."""
        cfg = self.config
        started = time.perf_counter()
        rows = [self.problems[i] for i in self.sampler.next_indices()]
        messages = [
            build_messages(r["question"], cfg.data.template, cfg.data.system_prompt, cfg.data.few_shot)
            for r in rows
        ]
        texts = [render_prompt(self.tokenizer, m) for m in messages]
        seeds = None
        if cfg.generation.seed_per_prompt:
            first = self.sampler.first_position(draw)  # each prompt drawn in the step its own seed
            seeds = [derived_seed(cfg.training.seed, self.step, first + i) for i in range(len(texts))]
        g = cfg.generation.num_generations
        try:
            prompt_ids, prompt_mask, completion_ids, completion_mask, truncated, cut, sampling_logps = (
                self.engine.generate(texts, g, cfg.generation, seeds)
            )
        except EngineError as exc:
            raise self.engine_failed("did not generate", exc) from exc
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
            sampling_logps=sampling_logps,
        )
        return rollout, {"timing/generate": time.perf_counter() - started}

    def sync_engine(self, timings: dict[str, float] | None = None) -> None:
        """Bring the rollout engine's weights up to the policy's (nothing to do for rlvr's own loop). An engine
        that cannot take them stops the run with the last checkpoint named; nothing saved is touched."""
        started = time.perf_counter()
        try:
            self.engine.sync_weights()
        except EngineError as exc:
            raise self.engine_failed("did not take the new weights", exc) from exc
        if timings is not None:
            timings["timing/sync_weights"] = time.perf_counter() - started

    def engine_failed(self, what: str, exc: EngineError) -> TrainingError:
        last = ckpt.list_checkpoints(self.output_dir)
        return TrainingError(
            f"step {self.step + 1}: the {self.engine.name} rollout engine {what}: {exc}. The run stopped; "
            f"saved checkpoints are untouched (last: {last[-1] if last else 'none'}); fix the engine and "
            "resume with --resume"
        )

    def score_rollout(self, rollout: Rollout, timings: dict[str, float]) -> torch.Tensor:
        """Rewards [N, F], NaN where a function said "not applicable"."""
        started = time.perf_counter()
        # completion_ids as TRL passes them, so length-based rewards count tokens
        completion_ids = [
            ids[mask.bool()].tolist() for ids, mask in zip(rollout.completion_ids, rollout.completion_mask)
        ]
        columns = {**rollout.columns, "completion_ids": completion_ids}
        per_fn = self.rewards.score(
            rollout.prompts, rollout.completions, columns, group_size=self.config.generation.num_generations
        )
        timings["timing/score"] = time.perf_counter() - started
        return per_fn

    def informative_batch(
        self, rollout: Rollout, rewards_per_fn: torch.Tensor, timings: dict[str, float]
    ) -> tuple[Rollout, torch.Tensor, dict[str, float]]:
        """DAPO's dynamic sampling (`algorithm.select_groups`): draw more prompts while any rank holds fewer
        informative groups than its prompts_per_step, at most max_resample_rounds more draws; then train on
        the first prompts_per_step informative groups, filled up with zero-variance ones (advantage 0) when
        the draws ran out. Returns the batch, its rewards [N, F] and the `dynamic_sampling/*` figures.

        All ranks draw together, as often as the one furthest from its quota needs: under FSDP sampling is
        collective, and the prompt order is one for all ranks. A rank that has its quota drops the surplus.
        """
        a = self.config.algorithm
        g = self.config.generation.num_generations
        parts, rewards = [rollout], [rewards_per_fn]
        informative = self.informative_groups(rewards_per_fn, rollout.truncated)
        while len(parts) <= a.max_resample_rounds and self.ranks_short(informative):
            more, more_timings = self.generate_rollout(draw=len(parts))
            more_rewards = self.score_rollout(more, more_timings)
            for key, seconds in more_timings.items():
                timings[key] += seconds
            parts.append(more)
            rewards.append(more_rewards)
            informative = torch.cat([informative, self.informative_groups(more_rewards, more.truncated)])
        selection = select_groups(informative, self.prompts_per_step)
        drawn = torch.cat(rewards)
        total = sum_over_ranks(
            {
                "kept": selection.kept,
                "dropped": selection.dropped,
                "filled": selection.filled,
                "extra_prompts": (len(parts) - 1) * self.prompts_per_step,
                **_moment_sums(self.combined_rewards(drawn)),
            },
            self.dist,
        )
        batch = concat_rollouts(parts, self.tokenizer.pad_token_id).take_groups(selection.groups, g)
        return (
            batch,
            drawn[group_rows(selection.groups, g)],
            {
                "dynamic_sampling/rounds": len(parts),
                "dynamic_sampling/kept_groups": total["kept"],
                "dynamic_sampling/dropped_groups": total["dropped"],
                "dynamic_sampling/extra_prompts": total["extra_prompts"],
                "dynamic_sampling/filled_groups": total["filled"],
                "dynamic_sampling/reward_all": _moments(total)[0],
            },
        )

    def informative_groups(self, rewards_per_fn: torch.Tensor, truncated: torch.Tensor) -> torch.Tensor:
        """[N // G] bool: groups whose advantages are not all 0, by the test the advantages use, and that
        reach the loss: with mask_truncated_completions a group whose every completion is truncated does not."""
        a, g = self.config.algorithm, self.config.generation.num_generations
        if a.multi_objective_aggregation == "normalize_then_sum":
            informative = ~zero_range_groups(normalize_then_sum(rewards_per_fn, self.reward_weights, g), g)
        else:
            informative = ~zero_range_groups(self.combined_rewards(rewards_per_fn), g)
        if a.mask_truncated_completions:
            informative &= ~truncated.view(-1, g).all(dim=1)
        return informative

    def ranks_short(self, informative: torch.Tensor) -> bool:
        """Whether any rank holds fewer informative groups than its prompts_per_step (the same on every rank)."""
        short = int(informative.sum().item()) < self.prompts_per_step
        return sum_over_ranks({"short": short}, self.dist)["short"] > 0

    def combined_rewards(self, rewards_per_fn: torch.Tensor) -> torch.Tensor:
        """[N] weighted sum over the reward functions; NaN for unscorable completions."""
        combined = combine_rewards(rewards_per_fn, self.reward_weights)
        return combined.masked_fill(unscorable(rewards_per_fn), math.nan)

    def compute_advantages(self, rewards_per_fn: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Advantages [N] and reward statistics over all ranks. A completion whose every reward is None is
        unscorable: left out of every statistic, advantage 0, counted in `unscorable`."""
        cfg = self.config
        g = cfg.generation.num_generations
        skip = unscorable(rewards_per_fn)
        rewards = self.combined_rewards(rewards_per_fn)
        valid = ~torch.isnan(rewards_per_fn)
        local = {**_moment_sums(rewards), "unscorable": skip.sum().item()}
        for j, name in enumerate(self.reward_names):  # each function over the completions it applied to
            local[f"{name}/sum"] = torch.nan_to_num(rewards_per_fn[:, j]).sum().item()
            local[f"{name}/count"] = valid[:, j].sum().item()
        total = sum_over_ranks(local, self.dist)
        mean, std = _moments(total)
        if cfg.algorithm.multi_objective_aggregation == "normalize_then_sum":
            decoupled = normalize_then_sum(rewards_per_fn, self.reward_weights, g)
            # the batch spans ranks: its mean and std from every rank's sums (one process: the same numbers)
            batch = (
                _moments(sum_over_ranks(_moment_sums(decoupled), self.dist))
                if self.dist.enabled
                else (None, None)
            )
            advantages = batch_advantages(decoupled, batch_mean=batch[0], batch_std=batch[1])
            zero_std = zero_range_groups(decoupled, g)
        else:
            batch_std = None
            if cfg.algorithm.scale_rewards == "batch" and self.dist.enabled:
                batch_std = torch.tensor(std)
            advantages, zero_std = group_advantages(
                rewards, g, cfg.algorithm.scale_rewards, batch_std=batch_std
            )
        groups = sum_over_ranks({"zero_std": zero_std.sum().item(), "groups": zero_std.numel()}, self.dist)
        count = total["count"]
        stats = {
            "reward": mean,
            "reward_std": math.sqrt(max(total["sum_sq"] / count - mean**2, 0.0)) if count else math.nan,
            "frac_reward_zero_std": groups["zero_std"] / groups["groups"],
            "unscorable": total["unscorable"],
        }
        for name in self.reward_names:
            count = total[f"{name}/count"]
            stats[f"rewards/{name}"] = total[f"{name}/sum"] / count if count else float("nan")
        return advantages, stats

    def policy_updates(
        self, rollout: Rollout, advantages: torch.Tensor, timings: dict[str, float]
    ) -> dict[str, float]:
        """mu optimizer steps on this rollout, each over gradient_accumulation_steps micro-batches."""
        cfg = self.config
        a, t = cfg.algorithm, cfg.training
        input_ids, attention_mask = rollout.input_ids, rollout.attention_mask
        # Log-probs are taken over every completion token, the loss over loss_mask. A micro-batch whose loss
        # tokens are all masked out (truncated, with mask_truncated_completions) then still runs backward,
        # adding zeros: under DDP/FSDP every rank must take part in each gradient reduction.
        completion_mask = rollout.completion_mask
        loss_mask = completion_mask
        if a.mask_truncated_completions:
            loss_mask = loss_mask * (~rollout.truncated).unsqueeze(1).long()
        advantages = advantages.to(self.device)
        micro = len(rollout) // t.gradient_accumulation_steps
        slices = [slice(s, s + micro) for s in range(0, len(rollout), micro)]

        started = time.perf_counter()
        # Old log-probs are taken before the first update so the ratio is real when mu > 1; with
        # mu = 1 the policy has not moved since sampling, the ratio is exactly 1, and the pass is skipped.
        old_logps = (
            self.batched_logps(self.policy, input_ids, attention_mask, completion_mask, slices)
            if a.mu > 1
            else None
        )
        ref_logps = (
            self.reference_logps(input_ids, attention_mask, completion_mask, slices) if a.beta > 0 else None
        )
        timings["timing/logps"] = time.perf_counter() - started

        started = time.perf_counter()
        # Normalisers for the whole batch (and all ranks), so micro-batch losses add up to the batch loss.
        num_tokens = all_reduce_sum(loss_mask.sum().float(), self.dist) / self.dist.world_size
        totals = {"loss": 0.0, "kl": 0.0, "clip_ratio/low": 0.0, "clip_ratio/high": 0.0, "entropy": 0.0}
        grad_norm = 0.0
        self.model.train()
        skipped_before = self.nonfinite_total
        drift: list[dict[str, torch.Tensor]] = []  # sampler against trainer, per micro-batch
        for update in range(a.mu):
            self.optimizer.zero_grad(set_to_none=True)
            update_loss = 0.0
            for k, part in enumerate(slices):
                with gradient_sync(self.trained_policy, sync=k == len(slices) - 1):
                    with autocast(self.device, self.autocast_dtype):
                        logps, entropy = self.trained_policy(
                            input_ids[part],
                            attention_mask[part],
                            completion_mask[part],
                            cfg.generation.temperature,
                            a.logprob_chunk_size,
                            cfg.generation.num_generations,
                        )
                    mask = loss_mask[part]
                    old = old_logps[part] if old_logps is not None else logps.detach()
                    is_weights = None
                    if rollout.sampling_logps is not None:
                        sampled = rollout.sampling_logps[part]
                        if update == 0:  # pi_old is the same in every update of this batch
                            sequence = a.importance_sampling_mode.startswith("sequence")
                            drift.append(sampling_stats(old, sampled, mask, sequence))
                        if a.importance_sampling_correction:
                            is_weights = sampling_importance_weights(
                                old,
                                sampled,
                                mask,
                                a.importance_sampling_mode,
                                a.importance_sampling_clip_min,
                                a.importance_sampling_clip_max,
                            )
                    out = grpo_loss(
                        logps=logps,
                        old_logps=old,
                        advantages=advantages[part],
                        mask=mask,
                        loss_type=a.loss_type,
                        max_completion_length=cfg.generation.max_completion_length,
                        epsilon=a.epsilon,
                        epsilon_high=a.epsilon_high,
                        beta=a.beta,
                        ref_logps=ref_logps[part] if ref_logps is not None else None,
                        num_sequences=len(rollout),
                        num_tokens=num_tokens,
                        kl_estimator=a.kl_estimator,
                        kl_in=a.kl_in,
                        use_bias_correction_kl=a.use_bias_correction_kl,
                        importance_sampling_level=a.importance_sampling_level,
                        delta=a.delta,
                        cispo_clip_min=a.cispo_clip_min,
                        cispo_clip_max=a.cispo_clip_max,
                        entropy_mask=self.entropy_mask(entropy, mask),
                        is_weights=is_weights,
                    )
                    loss = out.loss / len(slices) if a.loss_type == "bnpo" else out.loss
                    loss.backward()
                share = 1.0 / (len(slices) * a.mu)
                update_loss += loss.item()
                totals["loss"] += loss.item() / a.mu
                totals["kl"] += out.kl.item() * share
                totals["clip_ratio/low"] += out.low_clip.item() * share
                totals["clip_ratio/high"] += out.high_clip.item() * share
                mask_f = loss_mask[part].float()
                totals["entropy"] += ((entropy * mask_f).sum() / mask_f.sum().clamp(min=1)).item() * share
            # after the reduction every rank holds the same (averaged) gradient: the norm is global
            norm = global_norm(
                torch.nn.utils.clip_grad_norm_(
                    [p for p in self.model.parameters() if p.requires_grad],
                    t.max_grad_norm if t.max_grad_norm is not None else math.inf,
                )
            )
            if self.finite_update(norm, update_loss):
                grad_norm += norm / a.mu
                self.optimizer.step()
            self.scheduler.step()  # skipped or not, so the schedule stays a function of the step
        timings["timing/update"] = time.perf_counter() - started
        if a.beta == 0:  # no reference model: no KL to report (TRL leaves it out too)
            del totals["kl"]
        # DDP averages gradients over ranks, and each rank's loss is normalised for that: the batch's loss and
        # diagnostics are the means of the ranks'.
        return {
            **mean_over_ranks(totals, self.dist),
            **(sampling_metrics(drift, self.dist) if drift else {}),
            "grad_norm": grad_norm,
            "learning_rate": self.scheduler.get_last_lr()[0],
            "nonfinite_updates": self.nonfinite_total - skipped_before,
            "nonfinite_updates/total": self.nonfinite_total,
        }

    def entropy_mask(self, entropy: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """top_entropy_quantile < 1: the micro-batch's loss tokens in the top quantile by entropy, the threshold
        taken over this micro-batch on every rank (as TRL does per loss call); else None."""
        quantile = self.config.algorithm.top_entropy_quantile
        if quantile >= 1.0:
            return None
        local = entropy.detach()[mask.bool()].float().cpu()
        threshold = entropy_threshold(torch.cat(all_gather_objects(local, self.dist)), quantile)
        return high_entropy_mask(entropy.detach(), mask, threshold.to(entropy.device))

    def finite_update(self, grad_norm: float, loss: float) -> bool:
        """True when the loss (on every rank) and the global gradient norm are finite. Otherwise the gradient
        is dropped and the update skipped; after training.max_nonfinite_updates skipped in a row, stop."""
        loss = sum_over_ranks({"loss": loss}, self.dist)["loss"]  # NaN or inf on any rank stays in the sum
        if math.isfinite(grad_norm) and math.isfinite(loss):
            self.nonfinite_in_a_row = 0
            return True
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_in_a_row += 1
        self.nonfinite_total += 1
        limit = self.config.training.max_nonfinite_updates
        if self.nonfinite_in_a_row > limit:
            last = ckpt.list_checkpoints(self.output_dir)
            raise TrainingError(
                f"step {self.step + 1}: the loss ({loss}) or gradient norm ({grad_norm}) was not finite in "
                f"{self.nonfinite_in_a_row} optimizer steps in a row, more than "
                f"training.max_nonfinite_updates={limit}; each was skipped, so the weights are those of the "
                f"last finite update. Last checkpoint: {last[-1] if last else 'none'}. Lower "
                "training.learning_rate, look at the rewards in completions.jsonl, or raise "
                "training.max_nonfinite_updates"
            )
        return False

    @torch.no_grad()
    def batched_logps(
        self,
        policy: PolicyForward,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        completion_mask: torch.Tensor,
        slices: list[slice],
    ) -> torch.Tensor:
        parts = []
        for part in slices:
            with autocast(self.device, self.autocast_dtype):
                logps, _ = policy(
                    input_ids[part],
                    attention_mask[part],
                    completion_mask[part],
                    self.config.generation.temperature,
                    self.config.algorithm.logprob_chunk_size,
                    self.config.generation.num_generations,
                    entropy=False,  # only the trained pass reports entropy
                )
            parts.append(logps)
        return torch.cat(parts)

    def reference_logps(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        completion_mask: torch.Tensor,
        slices: list[slice],
    ) -> torch.Tensor:
        if self.ref_policy is not None:
            return self.batched_logps(self.ref_policy, input_ids, attention_mask, completion_mask, slices)
        with self.model.disable_adapter():  # LoRA: the base model is the reference
            return self.batched_logps(self.policy, input_ids, attention_mask, completion_mask, slices)

    def update_reference(self) -> None:
        """Hard refresh every ref_model_refresh_steps, or TR-DPO soft sync every ref_model_sync_steps."""
        a = self.config.algorithm
        if self.ref_policy is None:
            return
        # Through the PolicyForward roots: under FSDP both hold their shards in the same layout, and a root's
        # state_dict() first puts back any shards left gathered after a forward.
        if a.ref_model_refresh_steps and self.step % a.ref_model_refresh_steps == 0:
            self.ref_policy.load_state_dict(self.policy.state_dict())
        elif a.sync_ref_model and self.step % a.ref_model_sync_steps == 0:
            # parameters(), not state_dict(): tied embeddings appear once, so each is mixed once
            with torch.no_grad():
                for ref, policy in zip(self.ref_policy.parameters(), self.policy.parameters()):
                    ref.mul_(1 - a.ref_model_mixup_alpha).add_(policy, alpha=a.ref_model_mixup_alpha)

    def rollout_stats(self, rollout: Rollout, timings: dict[str, float], seconds: float) -> dict[str, float]:
        lengths = rollout.completion_mask.sum(1).float()
        total = sum_over_ranks(
            {
                "tokens": lengths.sum().item(),
                "completions": len(lengths),
                "truncated": rollout.truncated.sum().item(),
                "prompts_cut": rollout.num_prompts_cut,
            },
            self.dist,
        )
        # The slowest rank sets the pace: times are maxima over ranks.
        slowest = max_over_ranks(
            {"completion_length/max": lengths.max().item(), "step_seconds": seconds, **timings}, self.dist
        )
        return {
            "completion_length/mean": total["tokens"] / total["completions"],
            "truncated_frac": total["truncated"] / total["completions"],
            "prompts_cut": total["prompts_cut"],
            "tokens_per_second": total["tokens"] / slowest["step_seconds"],
            "epoch": self.sampler.epoch,
            **slowest,
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
                    "reward": None
                    if unscorable(rewards_per_fn[i : i + 1]).item()
                    else combine_rewards(rewards_per_fn[i : i + 1], self.reward_weights).item(),
                    "advantage": advantages[i].item(),
                    "length": int(rollout.completion_mask[i].sum()),
                    "truncated": bool(rollout.truncated[i]),
                }
            )
        return records

    def evaluate(self) -> dict[str, float]:
        """Held-out accuracy with the evaluation module; keeps the best checkpoint by metric_for_best_model.

        Each rank evaluates every world_size-th problem; the records are gathered to all ranks, so every rank
        computes the same figures and takes the same best-checkpoint decision (saving is collective).
        """
        from rlvr.evaluation.evaluate import summarize

        t = self.config.training
        if t.eval_dataset is None and self.eval_problems is None:
            return {}
        if self.eval_problems is None:
            d = self.config.data
            self.eval_problems = load_problems(
                t.eval_dataset, t.eval_split, d.data_dir, limit=t.eval_limit, reasoning_gym=d.reasoning_gym
            )
        problems = self.eval_problems[: t.eval_limit]
        with torch.no_grad():
            mine = self.policy.run(self._evaluate_shard, problems[self.dist.rank :: self.dist.world_size])
        parts = all_gather_objects(mine, self.dist)
        summary = summarize(
            [record for part in parts for record in part["predictions"]],
            num_samples=1,
            seconds=max(part["seconds"] for part in parts),
            prompts_cut=sum(part["prompts_cut"] for part in parts),
        )
        metrics = {f"eval/{k}": v for k, v in summary.items() if isinstance(v, (int, float))}
        value = metrics.get(t.metric_for_best_model)
        if value is not None and (self.best_metric is None or value > self.best_metric):
            self.best_metric = value
            # set first: rotation keeps it
            self.best_checkpoint = str(self.output_dir / f"checkpoint-{self.step}")
            self.save_checkpoint(metrics)
        return metrics

    def _evaluate_shard(self, model: Any, problems: list[dict[str, Any]]) -> dict[str, Any]:
        """Evaluate `problems` with the run's engine (`model`: the whole policy, inside `policy.run`)."""
        from rlvr.evaluation import evaluate_model

        if not problems:  # more ranks than problems
            return {"predictions": [], "seconds": 0.0, "prompts_cut": 0}
        started = time.perf_counter()
        summary = evaluate_model(
            model,
            self.tokenizer,
            problems,
            template=self.config.data.template,
            reward=self.config.training.eval_reward,
            max_new_tokens=self.config.generation.max_completion_length,
            system_prompt=self.config.data.system_prompt,
            few_shot=self.config.data.few_shot,
            autocast_dtype=self.autocast_dtype,
            show_progress=False,
            max_prompt_length=self.config.data.max_prompt_length,
            engine=self.engine.for_model(model),
        )
        return {
            "predictions": summary["predictions"],
            "seconds": time.perf_counter() - started,
            "prompts_cut": summary["prompts_cut"],
        }

    # ---------------------------------------------------------------------- saving and resuming
    def trainer_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "sampler": self.sampler.state_dict(),
            "best_metric": self.best_metric,
            "best_checkpoint": self.best_checkpoint,
            "world_size": self.dist.world_size,
            "nonfinite_in_a_row": self.nonfinite_in_a_row,
            "nonfinite_total": self.nonfinite_total,
            "run": run_signature(
                self.config, self.problems, self.dist.world_size
            ),  # what a resuming run must share
        }

    def save_checkpoint(self, metrics: dict[str, float] | None = None) -> Path:
        """Write checkpoint-{step}; every rank calls it (the state of all ranks is gathered to rank 0)."""
        a = self.config.algorithm
        refreshed = a.ref_model_refresh_steps or a.sync_ref_model
        self.check_weights_finite(f"checkpoint-{self.step}")
        path = ckpt.save_checkpoint(
            self.output_dir / f"checkpoint-{self.step}",
            self.policy,
            self.tokenizer,
            self.optimizer,
            self.scheduler,
            {**self.trainer_state(), "metrics": metrics or {}},
            self.dist,
            ref_policy=self.ref_policy if refreshed else None,
        )
        if self.dist.is_main:
            keep = Path(self.best_checkpoint) if self.best_checkpoint else None
            ckpt.rotate_checkpoints(self.output_dir, self.config.training.save_total_limit, keep=keep)
        barrier(self.dist)
        return path

    def resume_from(self, path: Path) -> None:
        """Load checkpoint `path` (chosen and checked by `rundir.prepare_output_dir`); every rank calls it.

        A checkpoint resumes on any number of processes and either strategy (see `checkpoint.load_checkpoint`
        for the random states). With `generation.seed_per_prompt` sampling does not read those, so a resumed
        run repeats the uninterrupted one on any number of processes.
        """
        state = ckpt.load_checkpoint(
            path,
            self.policy,
            self.optimizer,
            self.scheduler,
            self.dist,
            self.config.training.seed,
            self.ref_policy,
        )
        self.step = state["step"]
        self.sampler.load_state_dict(state["sampler"])
        self.best_metric = state.get("best_metric")
        self.best_checkpoint = state.get("best_checkpoint")
        self.nonfinite_in_a_row = state.get("nonfinite_in_a_row", 0)
        self.nonfinite_total = state.get("nonfinite_total", 0)
        self.sync_engine()

    def save_final(self) -> Path:
        """The final model in Hugging Face format (LoRA: the adapter, plus a merged copy when lora.merge)."""
        merge = is_peft(self.model) and self.config.model.lora.merge
        self.check_weights_finite("final")
        final = ckpt.save_final(
            self.output_dir, self.policy, self.tokenizer, self.dist, merge, self.config.model
        )
        barrier(self.dist)
        return final

    def check_weights_finite(self, name: str) -> None:
        """Refuse to save NaN or infinite weights as `name` (on every rank: each checks its own shards)."""
        bad = [n for n, p in self.model.named_parameters() if not torch.isfinite(_local(p)).all()]
        if sum_over_ranks({"bad": len(bad)}, self.dist)["bad"]:
            last = ckpt.list_checkpoints(self.output_dir)
            raise TrainingError(
                f"step {self.step}: the model's weights are not finite ({', '.join(bad[:3]) or 'on another rank'}"
                f"{', ...' if len(bad) > 3 else ''}); {name} was not written. Last checkpoint: "
                f"{last[-1] if last else 'none'}"
            )


def sampling_metrics(parts: list[dict[str, torch.Tensor]], state: DistState) -> dict[str, float]:
    """`sampling/logp_diff/mean|max` and `sampling/is_ratio/min|mean|max` from `sampling_stats` of every
    micro-batch on every rank."""
    sums = sum_over_ranks(
        {
            key: sum(p[key].item() for p in parts)
            for key in ("logp_diff_sum", "logp_diff_count", "is_ratio_sum", "is_ratio_count")
        },
        state,
    )
    top = max_over_ranks(
        {
            "logp_diff_max": max(p["logp_diff_max"].item() for p in parts),
            "is_ratio_max": max(p["is_ratio_max"].item() for p in parts),
            "neg_is_ratio_min": max(-p["is_ratio_min"].item() for p in parts),
        },
        state,
    )
    return {
        "sampling/logp_diff/mean": sums["logp_diff_sum"] / max(sums["logp_diff_count"], 1.0),
        "sampling/logp_diff/max": top["logp_diff_max"],
        "sampling/is_ratio/min": -top["neg_is_ratio_min"],
        "sampling/is_ratio/mean": sums["is_ratio_sum"] / max(sums["is_ratio_count"], 1.0),
        "sampling/is_ratio/max": top["is_ratio_max"],
    }


def _moment_sums(values: torch.Tensor) -> dict[str, float]:
    """Sum, sum of squares and count of the non-NaN entries of `values`, to be summed over ranks."""
    scored = values[~torch.isnan(values)].double()
    return {"sum": scored.sum().item(), "sum_sq": (scored**2).sum().item(), "count": scored.numel()}


def _moments(total: dict[str, float]) -> tuple[float, float]:
    """Mean and unbiased std (as torch.std on one process) from `_moment_sums` summed over ranks; NaN when
    there are too few values."""
    n = total["count"]
    mean = total["sum"] / n if n else math.nan
    std = math.sqrt(max((total["sum_sq"] - n * mean**2) / (n - 1), 0.0)) if n > 1 else math.nan
    return mean, std


def _saved_path(model: Any) -> str | None:
    """The directory or hub id a model given to the trainer was loaded from (what vLLM loads its
    architecture from), if it says."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(getattr(base, "config", None), "_name_or_path", None) or None


def _local(param: torch.Tensor) -> torch.Tensor:
    return param.to_local() if hasattr(param, "to_local") else param  # an FSDP shard is a DTensor


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value
