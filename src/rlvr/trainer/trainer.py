"""The GRPO trainer: sample -> score -> advantages -> policy updates -> log -> checkpoint.

Under torchrun each process trains on its slice of the step's prompts (every group of G completions on one
rank); gradients meet in DDP's all-reduce or FSDP's reduce-scatter, the logged figures are over all ranks,
and rank 0 alone prints, logs and writes.

The class holds the set-up, the loop and its steps; saving and resuming (`saving`), evaluation during
training (`evaluation`), dynamic sampling's extra draws (`dynamic_sampling`), the reference model's log-probs
and refresh (`reference`) and where each batch comes from (`rollouts`: sampled in turn, or ahead of the trainer
within rollout.max_staleness) are mixed in from their own modules.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
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
    sampler_terms,
    sampling_stats,
    unscorable,
    zero_range_groups,
)
from rlvr.config import ConfigError, GRPOConfig
from rlvr.data import load_problems
from rlvr.distributed import (
    DistState,
    PolicyForward,
    all_gather_objects,
    all_reduce_sum,
    gather_objects,
    global_norm,
    gradient_sync,
    init_distributed,
    is_sharded,
    mean_over_ranks,
    moment_sums,
    moments,
    sampling_metrics,
    shard,
    sum_over_ranks,
    wrap_policy,
)
from rlvr.environments import EnvironmentPool, make_environment_factory
from rlvr.models import is_peft, load_policy, make_reference, resolve_device, resolve_model_path
from rlvr.models.precision import resolve_bf16
from rlvr.optional import check_optional_packages
from rlvr.rewards import get_reward
from rlvr.rewards.pool import RewardPool, load_rewards
from rlvr.rollout import Rollout, autocast, eos_token_ids
from rlvr.rollout.chat_tokens import ChatFormat
from rlvr.rollout.engine import make_engine
from rlvr.rollout.episodes import sum_turn_gaps, turn_logp_gaps
from rlvr.trainer import TrainingError
from rlvr.trainer import checkpoint_files as ckpt
from rlvr.trainer.checkpoint_files import seed_everything
from rlvr.trainer.dynamic_sampling import DynamicSamplingMixin
from rlvr.trainer.evaluation import EvaluationMixin
from rlvr.trainer.logging import RunLogger, completion_records, rollout_metrics
from rlvr.trainer.reference import ReferenceMixin
from rlvr.trainer.rollouts import RolloutsMixin
from rlvr.trainer.sampler import PromptSampler
from rlvr.trainer.saving import CheckpointingMixin, RunComplete


class GRPOTrainer(CheckpointingMixin, EvaluationMixin, DynamicSamplingMixin, ReferenceMixin, RolloutsMixin):
    """Group Relative Policy Optimization with verifiable rewards.

    >>> trainer = GRPOTrainer(GRPOConfig.from_yaml("configs/gsm8k_boxed.yaml"))  # doctest: +SKIP
    >>> trainer.train()  # doctest: +SKIP

    `model`/`tokenizer`, `reward_funcs` and `train_dataset` (rows with `question` and `answer`) may
    be passed directly from a notebook; otherwise they come from the config. `tools` (typed functions with
    docstrings) or `environment_factory` (a class whose public methods are tools, TRL's convention) make each
    sample an episode, as `environment.name` does from the config (docs/environments.md).
    """

    def __init__(
        self,
        config: GRPOConfig,
        model: Any | None = None,
        tokenizer: Any | None = None,
        reward_funcs: list[Callable] | None = None,
        train_dataset: list[dict[str, Any]] | None = None,
        eval_dataset: list[dict[str, Any]] | None = None,
        tools: list[Callable] | None = None,
        environment_factory: Callable[[], Any] | None = None,
    ) -> None:
        device = resolve_device(config.model.device)
        self.dist: DistState = init_distributed(config.distributed.backend, device.type)
        if device.type == "cuda" and self.dist.enabled:
            device = torch.device("cuda", self.dist.local_rank)
        # `auto` becomes true or false here, once: config.yaml records what ran, and every engine reads a bool
        bf16, why = resolve_bf16(config.training.bf16, device)
        config = dataclasses.replace(config, training=dataclasses.replace(config.training, bf16=bf16))
        self.config = config
        if self.dist.is_main:
            print(why, flush=True)
        if not self.dist.is_main:  # rank 0 speaks for all: the others' progress bars would repeat it
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()
        self.output_dir = Path(config.training.output_dir)
        self.check_output_writable()
        # One seed on every rank while the model is built: LoRA's random initial weights must agree, since
        # FSDP shards what each rank holds and broadcasts nothing. Each rank gets its own stream below.
        seed_everything(config.training.seed)
        a = config.algorithm

        # Cheap checks first, so bad input fails before a model is loaded.
        check_optional_packages(config)  # vLLM, loggers, peft, reasoning-gym
        # Every sample is an episode of an environment; the default, single_turn, is one reply: today's GRPO.
        env = config.environment
        self.environments = EnvironmentPool(make_environment_factory(env, tools, environment_factory))
        self.episodic = env.name != "single_turn" or bool(tools) or environment_factory is not None
        refs, fns = (list(reward_funcs), list(reward_funcs)) if reward_funcs else load_rewards(config.rewards)
        if config.rewards.weights is not None and len(config.rewards.weights) != len(fns):
            raise ConfigError(
                f"rewards.weights has {len(config.rewards.weights)} entries for {len(fns)} reward functions"
            )
        weights = list(config.rewards.weights or [1.0] * len(fns))
        if self.episodic:  # the environment's own reward is one more component, with its weight
            refs, fns, weights = (
                [*refs, "environment"],
                [*fns, get_reward("environment")],
                [*weights, env.reward_weight],
            )
        self.rewards = RewardPool(refs, config.rewards.num_workers, config.rewards.timeout, fns=fns)
        self.reward_funcs = fns
        self.reward_names = self.rewards.names
        self.reward_weights = torch.tensor(weights)
        self.problems = train_dataset if train_dataset is not None else self._load_problems()
        self.eval_problems = eval_dataset if eval_dataset is not None else self.load_eval_problems()

        if model is None:
            model, tokenizer = load_policy(config.model, device)
            model_path = resolve_model_path(config.model.name_or_path, config.model.cache_dir)
        elif tokenizer is None:
            raise ConfigError("pass the tokenizer along with the model")
        else:
            model_path = _saved_path(model)
        self.model, self.tokenizer = model.to(device), tokenizer
        self.device = device
        self.autocast_dtype = torch.bfloat16 if bf16 else None
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
        self.eos_ids = eos_token_ids(tokenizer, self.model)
        if self.dist.is_main:
            self.warn_prompt_lengths()
        self.chat = ChatFormat(tokenizer, self.eos_ids, env.tool_prompt, env.tool_role)

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
        self.warn_if_disk_small()
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
        """Run to max_steps (from the newest checkpoint when `resume`; a finished run is left as it is);
        returns the final model's directory."""
        try:
            with self.claimed_output_dir(resume) as checkpoint:
                if checkpoint is not None:
                    self.resume_from(checkpoint)
                self.run_loop()
                return self.save_final()
        except RunComplete:  # claimed_output_dir said so
            return self.output_dir / "final"

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
                rollout, rewards_per_fn, batch_stats, timings = self.next_batch()
                advantages, stats = self.compute_advantages(rewards_per_fn)
                stats.update(batch_stats)
                stats.update(self.policy_updates(rollout, advantages, timings))
                self.step += 1
                self.update_reference()
                self.sync_engine(timings)
                stats.update(
                    rollout_metrics(
                        rollout, timings, time.perf_counter() - started, self.sampler.epoch, self.dist
                    )
                )
                evaluated = bool(t.eval_steps) and self.step % t.eval_steps == 0
                if evaluated:
                    stats.update(self.evaluate())
                if evaluated or (t.logging_steps and self.step % t.logging_steps == 0):
                    self.logger.log_metrics(self.step, stats)
                if t.log_completions_steps and self.step % t.log_completions_steps == 0:
                    records = completion_records(
                        rollout, rewards_per_fn, advantages, self.step, self.reward_names, self.reward_weights
                    )
                    for part in gather_objects(records, self.dist) or []:  # the whole batch, in prompt order
                        self.logger.log_completions(part)
                new_best = evaluated and self.best_checkpoint == f"checkpoint-{self.step}"
                if new_best or (t.save_steps and self.step % t.save_steps == 0):
                    self.save_checkpoint(stats)
                progress.update(1)
                progress.set_postfix(
                    reward=f"{stats['reward']:.3f}",
                    kl=f"{stats['kl']:.4f}" if "kl" in stats else "no reference",
                    len=f"{stats['completion_length/mean']:.0f}",
                )
        finally:
            self.close_rollouts()
            self.rewards.close()
            self.engine.close()
            progress.close()
            self.logger.close()

    # ------------------------------------------------------------------------------- the steps
    def score_rollout(self, rollout: Rollout, timings: dict[str, float]) -> torch.Tensor:
        """Rewards [N, F], NaN where a function said "not applicable"."""
        started = time.perf_counter()
        # completion_ids as TRL passes them, so length-based rewards count tokens: an episode's sampled ones
        completion_ids: list[list[int]] = [[] for _ in range(rollout.num_episodes)]
        for row, (ids, mask) in enumerate(zip(rollout.completion_ids, rollout.loss_mask)):
            completion_ids[int(rollout.episode_index[row])] += ids[mask.bool()].tolist()
        columns = {**rollout.columns, "completion_ids": completion_ids}
        completions = rollout.completion_messages or rollout.completions  # an episode: its messages, as TRL
        per_fn = self.rewards.score(
            rollout.prompts, completions, columns, group_size=self.config.generation.num_generations
        )
        timings["timing/score"] = time.perf_counter() - started
        return per_fn

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
        local = {**moment_sums(rewards), "unscorable": skip.sum().item()}
        for j, name in enumerate(self.reward_names):  # each function over the completions it applied to
            local[f"{name}/sum"] = torch.nan_to_num(rewards_per_fn[:, j]).sum().item()
            local[f"{name}/count"] = valid[:, j].sum().item()
        total = sum_over_ranks(local, self.dist)
        mean, std = moments(total)
        if cfg.algorithm.multi_objective_aggregation == "normalize_then_sum":
            decoupled = normalize_then_sum(rewards_per_fn, self.reward_weights, g)
            # the batch spans ranks: its mean and std from every rank's sums (one process: the same numbers)
            batch = (
                moments(sum_over_ranks(moment_sums(decoupled), self.dist))
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
        loss_mask = rollout.loss_mask  # sampled tokens only: an episode's environment tokens never train
        if a.mask_truncated_completions:
            loss_mask = loss_mask * (~rollout.per_row(rollout.episode_truncated)).unsqueeze(1).long()
        advantages = rollout.per_row(advantages).to(self.device)  # each row its episode's
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
        if a.off_policy_mask_threshold is not None:
            totals["off_policy_masked"] = 0.0  # share of sequences the off-policy mask dropped
        grad_norm = 0.0
        self.model.train()
        skipped_before = self.nonfinite_total
        drift: list[dict[str, torch.Tensor]] = []  # sampler against trainer, per micro-batch
        turn_gaps: list[dict[str, float]] = []  # the same gap, per turn of an episode
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
                            bounds = (a.importance_sampling_clip_min, a.importance_sampling_clip_max)
                            drift.append(sampling_stats(old, sampled, mask, sequence, *bounds))
                            if rollout.turn_index is not None:
                                turn_gaps.append(turn_logp_gaps(old, sampled, mask, rollout.turn_index[part]))
                        old, is_weights = sampler_terms(
                            old,
                            sampled,
                            mask,
                            a.old_logps_source,
                            a.importance_sampling_correction,
                            a.importance_sampling_mode,
                            a.importance_sampling_clip_min,
                            a.importance_sampling_clip_max,
                        )
                    elif a.old_logps_source == "sampler":
                        raise TrainingError(
                            f"algorithm.old_logps_source=sampler, but the {self.engine.name} engine returned no "
                            "log-probs of its samples: set it to trainer"
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
                        sampling_logps=rollout.sampling_logps[part]
                        if rollout.sampling_logps is not None
                        else None,
                        off_policy_mask_threshold=a.off_policy_mask_threshold,
                    )
                    loss = out.loss / len(slices) if a.loss_type == "bnpo" else out.loss
                    loss.backward()
                share = 1.0 / (len(slices) * a.mu)
                update_loss += loss.item()
                totals["loss"] += loss.item() / a.mu
                totals["kl"] += out.kl.item() * share
                totals["clip_ratio/low"] += out.low_clip.item() * share
                totals["clip_ratio/high"] += out.high_clip.item() * share
                if out.off_policy_masked is not None:
                    totals["off_policy_masked"] += out.off_policy_masked.item() * share
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
            **(mean_over_ranks(sum_turn_gaps(turn_gaps), self.dist) if turn_gaps else {}),
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
            raise TrainingError(
                f"step {self.step + 1}: the loss ({loss}) or gradient norm ({grad_norm}) was not finite in "
                f"{self.nonfinite_in_a_row} optimizer steps in a row, more than "
                f"training.max_nonfinite_updates={limit}; each was skipped, so the weights are those of the "
                f"last finite update. Last checkpoint: {ckpt.last_checkpoint(self.output_dir)}. Lower "
                "training.learning_rate, look at the rewards in completions.jsonl, or raise "
                "training.max_nonfinite_updates"
            )
        return False


def _saved_path(model: Any) -> str | None:
    """The directory or hub id a model given to the trainer was loaded from (what vLLM loads its
    architecture from), if it says."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(getattr(base, "config", None), "_name_or_path", None) or None
