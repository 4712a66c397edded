"""One config system: nested dataclasses, loaded from YAML with `key.sub=value` overrides.

Every hyperparameter of a run lives here; the trainer reads it and never keeps its own copy.
Unknown keys and wrong types are errors that name the key (and suggest the nearest valid one),
raised before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config that cannot run: the message names the key and what to do."""


@dataclass
class LoraConfig:
    enabled: bool = False
    """Train LoRA adapters (peft) instead of all weights."""
    r: int = 16
    """LoRA rank."""
    alpha: int = 32
    """LoRA scaling numerator (scale = alpha / r)."""
    dropout: float = 0.05
    """Dropout on the LoRA branch."""
    target_modules: list[str] | str = "all-linear"
    """Module names to adapt, or "all-linear"."""
    merge: bool = False
    """At the end of training also save the base model with the adapters merged in (`final-merged/`)."""


@dataclass
class ModelConfig:
    name_or_path: str = "smollm2-135m-instruct"
    """Hub id, local Hugging Face directory, `.gguf` file, or a name known to `rlvr prepare-model`."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Dtype of the stored weights (and optimizer state). Use bf16 autocast for speed with float32 weights."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train; auto picks cuda when available."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward: less memory, about a third more compute."""
    trust_remote_code: bool = False
    """Passed to from_pretrained for models with custom code."""
    cache_dir: str | None = None
    """Where converted GGUF models and prepared models are kept (default: ~/.cache/rlvr)."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA settings."""


@dataclass
class ReasoningGymConfig:
    size: int = 1000
    """Instances in the train split of a `reasoning_gym:` dataset."""
    eval_size: int = 200
    """Instances in each held-out split (validation, test) when no limit is given."""
    seed: int = 0
    """Seed of the train split; held-out splits use far-off seeds and leave out its questions."""
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Options per task: `weight` in a mix (default 1) and the task's own config keys, e.g.
    {chain_sum: {weight: 2, max_terms: 3}}. With a bare data.dataset `reasoning_gym`, these are the tasks."""


@dataclass
class DataConfig:
    dataset: str = "gsm8k"
    """`gsm8k`, another name in data_dir, a .jsonl/.json/.parquet/.csv file, a hub id, a save_to_disk dir, or
    reasoning-gym tasks: `reasoning_gym:chain_sum`, a mix `reasoning_gym:chain_sum+leg_counting`."""
    split: str = "train"
    """Split to train on."""
    data_dir: str | None = None
    """Folder with local copies (`<data_dir>/<name>/<split>.jsonl`), used when the hub is unreachable.
    Defaults to the RLVR_DATA_DIR environment variable."""
    hub_config: str | None = None
    """Hub dataset config name (gsm8k uses "main")."""
    question_field: str | None = None
    """Column holding the question (None: guess from question/problem/prompt)."""
    answer_field: str | None = None
    """Column holding the gold answer (None: guess from answer/solution/ground_truth)."""
    answer_format: Literal["auto", "gsm8k", "boxed", "plain"] = "auto"
    """How to read the gold final answer: after `####`, the last \\boxed{}, or the field as is."""
    template: Literal["boxed", "xml_reasoning", "think_answer", "answer_tag", "reasoning_gym", "plain"] = (
        "boxed"
    )
    """Prompt format; each asks for the answer in the form its reward reads (reasoning_gym: the library's own
    prompt, the answer in <answer> tags)."""
    system_prompt: str | None = None
    """Replaces the template's system prompt."""
    few_shot: list[dict[str, str]] = field(default_factory=list)
    """Example turns [{question, answer}] placed before the question (answer_tag has its own default)."""
    max_prompt_length: int = 512
    """Prompts longer than this (tokens) are cut from the left; the run reports how many."""
    limit: int | None = None
    """Use only the first N rows."""
    shuffle: bool = True
    """Shuffle prompt order each epoch (seeded)."""
    reasoning_gym: ReasoningGymConfig = field(default_factory=ReasoningGymConfig)
    """Size, seed and per-task options of a `reasoning_gym:` dataset (needs `pip install -e ".[tasks]"`)."""


@dataclass
class GenerationConfig:
    num_generations: int = 4
    """G: completions sampled per prompt; advantages are relative within these groups."""
    max_completion_length: int = 128
    """Tokens generated at most per completion."""
    temperature: float = 0.9
    """Sampling temperature (log-probs are computed at the same temperature)."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    top_k: int = 0
    """Top-k sampling (0: off)."""
    min_p: float = 0.0
    """Min-p sampling (0: off)."""
    repetition_penalty: float = 1.0
    """>1 discourages repeats."""
    seed_per_prompt: bool = False
    """Sample each prompt's G completions in a call of their own, seeded from (training.seed, step, the prompt's
    place in the global batch): completions then do not depend on the number of processes or on the other
    prompts (a run on N GPUs repeats one on 1), at the cost of one generate call per prompt instead of one per
    step (docs/distributed.md has the cost). false: one batched call on the process's random state."""
    engine: Literal["hf", "vllm"] = "hf"
    """What samples the completions (training and evaluation): `hf`, rlvr's own decode loop on the policy
    (no extra dependency), or `vllm` (`make setup-vllm`), colocated or as a server (the `vllm` section;
    docs/rollouts.md)."""


@dataclass
class VLLMConfig:
    mode: Literal["colocate", "server"] = "colocate"
    """colocate: an engine inside each training process, its weights updated in place after every optimizer
    step; server: `rlvr serve-rollouts` on its own devices, new weights sent to it after every step."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """The engine's weights and activations (auto: bfloat16 with training.bf16, else model.dtype)."""
    max_model_len: int | None = None
    """Longest prompt + completion the engine holds (None: data.max_prompt_length +
    generation.max_completion_length)."""
    gpu_memory_utilization: float = 0.3
    """Share of each GPU's memory the colocated engine may take for weights and KV cache (GPU only)."""
    cpu_kv_cache_gb: int = 1
    """KV cache of an engine on a CPU, in whole GiB (vLLM's VLLM_CPU_KVCACHE_SPACE)."""
    tensor_parallel_size: int = 1
    """Colocate: ranks that share one engine, its weights split over them (must divide the world size)."""
    enable_sleep_mode: bool = False
    """Colocate on GPUs: free the engine's KV cache and weights while the policy is updated (slower start of
    each generation, more memory for training)."""
    enforce_eager: bool = False
    """Run the engine without torch.compile / CUDA graphs: starts in seconds instead of minutes, generates
    more slowly."""
    server_url: str = "http://127.0.0.1:8000"
    """Server mode: where `rlvr serve-rollouts` listens."""
    server_timeout: float = 600.0
    """Server mode: seconds one generation or weight push may take."""
    weights_dir: str | None = None
    """Server mode with weight_transfer=http: a directory both sides see; new weights are written there as
    safetensors and the server reads them (None: they are sent in the HTTP request)."""
    weight_transfer: Literal["http", "collective"] = "http"
    """Server mode: how new weights reach the server. http: one safetensors file per push (works anywhere);
    collective: tensor by tensor through vLLM's weight-transfer engine, a broadcast from training rank 0 to
    the server's workers (NCCL between GPUs, gloo on CPUs); the server connects back to the trainer, on
    weight_transfer_host:weight_transfer_port, and the trainer needs vLLM installed."""
    weight_transfer_host: str | None = None
    """Collective transfer: this machine's address as the server reaches it (None: the address this machine
    reaches the server from)."""
    weight_transfer_port: int = 0
    """Collective transfer: the port training rank 0 listens on for the server's workers (0: a free one)."""


@dataclass
class RewardsConfig:
    functions: list[str] = field(default_factory=lambda: ["accuracy"])
    """Registry names, `module:function`, `path/file.py:function`, or `remote:http://host:port/get_reward`."""
    weights: list[float] | None = None
    """One weight per function (default 1.0 each)."""
    remote_timeout: float = 30.0
    """Seconds per remote reward request."""
    remote_retries: int = 3
    """Retries (with exponential backoff) for a remote reward."""
    num_workers: int = 0
    """Processes that run the reward functions (per training process), each on a chunk of whole groups, so a
    slow verifier does not hold up the step; 0 runs them in the training process."""
    timeout: float | None = None
    """Seconds one reward call may take in a worker before it is killed and the run stops with an error naming
    the function (needs num_workers >= 1: a call in the training process cannot be stopped). None: no limit."""


@dataclass
class AlgorithmConfig:
    beta: float = 0.04
    """KL coefficient to the reference model; 0 loads no reference model."""
    epsilon: float = 0.2
    """Lower clip range of the ratio: 1 - epsilon."""
    epsilon_high: float | None = None
    """Upper clip range 1 + epsilon_high (DAPO's clip-higher); None means epsilon."""
    mu: int = 1
    """Policy updates per generation batch (num_iterations); old log-probs are taken before the first."""
    loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo", "cispo"] = "grpo"
    """Loss aggregation: grpo (per-sequence mean, then mean), bnpo (token mean over the micro-batch),
    dr_grpo (sum / (batch * max_completion_length)), dapo (token sum / token count of the whole batch);
    cispo: MiniMax-M1's clipped-weight objective (bounds cispo_clip_min/max), aggregated as dapo."""
    scale_rewards: Literal["group", "batch", "none"] = "group"
    """Divide centred rewards by the group std, the batch std, or nothing (Dr. GRPO)."""
    mask_truncated_completions: bool = False
    """Exclude completions that hit max_completion_length from the loss (DAPO)."""
    ref_model_refresh_steps: int | None = None
    """Copy the policy into the reference every N steps (the from-scratch tutorial's outer iterations)."""
    sync_ref_model: bool = False
    """Soft-update the reference every ref_model_sync_steps (TR-DPO)."""
    ref_model_mixup_alpha: float = 0.9
    """TR-DPO mix: ref <- alpha * policy + (1 - alpha) * ref."""
    ref_model_sync_steps: int = 64
    """Steps between TR-DPO soft updates."""
    logprob_chunk_size: int = 256
    """Token rows per chunk in log-softmax, so a float32 [tokens, vocab] tensor is never whole."""
    # The GRPO family as practised in 2026 (docs/training.md has each option's paper and TRL/verl/OpenRLHF names).
    multi_objective_aggregation: Literal["sum_then_normalize", "normalize_then_sum"] = "sum_then_normalize"
    """Several rewards: weighted sum then group advantages, or normalise each within its group, sum, then
    normalise over the batch (GDPO; scale_rewards is then not used)."""
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    """Per-token KL(policy || ref) estimator (Schulman 2020): k1 log-ratio, k2 half squared, k3."""
    kl_in: Literal["loss", "reward"] = "loss"
    """Where beta * KL goes: added to the loss, or subtracted per token from the reward (sampled tokens)."""
    use_bias_correction_kl: bool = False
    """Weight the loss's KL by the importance ratio (DeepSeek-V3.2; TRL's default is true): its gradient is
    then the reverse KL's."""
    importance_sampling_level: Literal["token", "sequence"] = "token"
    """Importance ratio per token, or one length-normalised ratio per sequence (GSPO)."""
    delta: float | None = None
    """Two-sided clipping (INTELLECT-2): cap the unclipped ratio at delta (> 1 + epsilon_high); None: off."""
    cispo_clip_min: float | None = None
    """loss_type cispo: lower bound of the clipped importance weight (None: unbounded, as MiniMax-M1)."""
    cispo_clip_max: float = 5.0
    """loss_type cispo: upper bound of the clipped importance weight (ScaleRL's 5.0; TRL's epsilon_high)."""
    top_entropy_quantile: float = 1.0
    """Train the policy loss on the top rho of loss tokens by entropy ("Beyond the 80/20 rule": 0.2); 1.0: all."""
    importance_sampling_correction: bool = False
    """Weight the policy loss by pi_old / pi_sampler (the sampler's log-probs travel in the Rollout)."""
    importance_sampling_mode: Literal[
        "token_truncate", "token_mask", "sequence_truncate", "sequence_mask"
    ] = "sequence_mask"
    """Truncate (clip) or mask (zero) the weights outside the bounds, per token or per sequence."""
    importance_sampling_clip_min: float | None = None
    """Lower bound of the sampler importance weight (None: none)."""
    importance_sampling_clip_max: float | None = 3.0
    """Upper bound of the sampler importance weight (None: none)."""
    dynamic_sampling: bool = False
    """DAPO's dynamic sampling: drop groups whose rewards are all equal and draw more prompts until the batch
    holds batch_size completions of groups whose rewards differ, or max_resample_rounds is reached."""
    max_resample_rounds: int = 3
    """Dynamic sampling: generation rounds a step may draw after its first; a batch still short then trains
    on what it has, filled up with zero-variance groups (advantage 0)."""


@dataclass
class TrainingConfig:
    output_dir: str = "runs/grpo"
    """Where config.yaml, metrics.jsonl, completions.jsonl, checkpoints and the final model go."""
    max_steps: int = 100
    """Generation batches to train on (each gives mu optimizer steps)."""
    batch_size: int = 8
    """Completions per generation batch on each process: prompts per step * num_generations."""
    gradient_accumulation_steps: int = 1
    """Micro-batches the batch is split into for each optimizer step (memory, not maths)."""
    learning_rate: float = 1e-6
    """AdamW peak learning rate."""
    adam_beta1: float = 0.9
    """AdamW beta1."""
    adam_beta2: float = 0.99
    """AdamW beta2."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    lr_scheduler_type: Literal["constant", "linear", "cosine"] = "constant"
    """Schedule after warmup."""
    warmup_ratio: float = 0.0
    """Fraction of optimizer steps spent warming up linearly from 0."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm (None: no clipping)."""
    bf16: bool = False
    """bfloat16 autocast for forward/backward and generation (on CPU too: AMX makes it ~6x faster)."""
    seed: int = 0
    """Seeds Python, NumPy and torch; the data order and sampling follow from it."""
    logging_steps: int = 1
    """Write metrics every N steps."""
    log_completions_steps: int = 10
    """Write sampled completions with rewards and advantages every N steps (0: never)."""
    save_steps: int = 0
    """Write a checkpoint every N steps (0: only the final model)."""
    save_total_limit: int | None = 2
    """Keep at most N checkpoints (the best one is never deleted)."""
    report_to: list[str] = field(default_factory=list)
    """Extra loggers: "tensorboard", "wandb"."""
    eval_steps: int = 0
    """Evaluate on eval_dataset every N steps (0: never)."""
    eval_dataset: str | None = None
    """Held-out dataset (same forms as data.dataset); None disables evaluation."""
    eval_split: str = "test"
    """Split of eval_dataset."""
    eval_limit: int | None = 100
    """Evaluate on the first N held-out problems."""
    eval_reward: str = "accuracy"
    """Reward that scores held-out answers (1.0 = correct)."""
    metric_for_best_model: str = "eval/accuracy"
    """Metric that picks the best checkpoint (higher is better)."""
    overwrite_output_dir: bool = False
    """Delete a previous run's checkpoints, logs and final model in output_dir (`rlvr train --overwrite`)."""
    resume_allow_changes: bool = False
    """Let --resume continue a checkpoint whose data, template, G or batch size differ from this config."""
    max_nonfinite_updates: int = 3
    """Optimizer steps in a row whose loss or gradient is NaN/inf that are skipped before the run stops."""


@dataclass
class DistributedConfig:
    strategy: Literal["ddp", "fsdp"] = "ddp"
    """How to spread training over processes launched by torchrun."""
    backend: str | None = None
    """torch.distributed backend (None: nccl on cuda, gloo on cpu)."""


@dataclass
class GRPOConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    """Policy model."""
    data: DataConfig = field(default_factory=DataConfig)
    """Training prompts."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """Sampling."""
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    """The vLLM rollout engine (generation.engine=vllm)."""
    rewards: RewardsConfig = field(default_factory=RewardsConfig)
    """Reward functions."""
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    """GRPO objective."""
    training: TrainingConfig = field(default_factory=TrainingConfig)
    """Optimisation, logging and saving."""
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    """Multi-process settings."""

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> GRPOConfig:
        """Load a YAML file and apply `key.sub=value` overrides."""
        path = Path(path)
        if not path.exists():
            raise ConfigError(
                f"config file {path} does not exist; give a YAML file such as configs/gsm8k_boxed.yaml"
            )
        if path.is_dir():
            raise ConfigError(
                f"config {path} is a directory; give a YAML file such as configs/gsm8k_boxed.yaml"
            )
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(exc)}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must hold a mapping of sections, got {type(raw).__name__}")
        return cls.from_dict(apply_overrides(raw, overrides or []))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> GRPOConfig:
        """Build from nested dicts, checking every key and type."""
        return _build(cls, raw, prefix="")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` strings to nested dicts; values are parsed as YAML (`[1, 2]`, `true`, `1e-6`)."""
    raw = dict(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        key, value = item.split("=", 1)
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        try:
            node[parts[-1]] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"override {item!r}: the value is not valid YAML ({_yaml_problem(exc)}); quote it, e.g. {key}='...'"
            ) from None
    return raw


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """The parser's complaint with its 1-based line and column."""
    mark, context = getattr(exc, "problem_mark", None), getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if context is not None and getattr(exc, "context", None):  # e.g. where an unclosed bracket opened
        problem += f" ({exc.context} at line {context.line + 1})"
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in raw.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean {prefix + close[0]!r}?" if close else f"; valid keys: {', '.join(fields)}"
            raise ConfigError(f"unknown config key {prefix + key!r}{hint}")
        kwargs[key] = _coerce(hints[key], value, f"{prefix}{key}")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, converting ints to floats where a float is expected."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value if value is not None else {}, prefix=key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{key} must be one of {', '.join(map(repr, args))}, got {value!r}{hint}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list ({_type_name(tp)}), got {value!r}")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)] if args else value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return value
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads `1e-6` as a string
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool) and (
        not isinstance(value, tp) or (tp is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def validate(config: GRPOConfig) -> None:
    """Checks across fields, so a bad run fails before loading a model."""
    g = config.generation
    t = config.training
    a = config.algorithm
    if g.num_generations < 2:
        raise ConfigError(
            f"generation.num_generations must be at least 2, got {g.num_generations}: group-relative "
            "advantages compare completions of the same prompt, and a group of one has nothing to compare"
        )
    if t.batch_size < 1:
        raise ConfigError(
            f"training.batch_size must be at least 1, got {t.batch_size}: it counts the completions of a step, "
            f"prompts per step * num_generations, e.g. {2 * g.num_generations}"
        )
    if t.batch_size % g.num_generations != 0:
        raise ConfigError(
            f"training.batch_size ({t.batch_size}) must be divisible by generation.num_generations "
            f"({g.num_generations}): each prompt's {g.num_generations} completions stay in one batch; "
            f"try batch_size={max(1, t.batch_size // g.num_generations) * g.num_generations}"
        )
    if t.gradient_accumulation_steps < 1 or t.batch_size % t.gradient_accumulation_steps != 0:
        raise ConfigError(
            f"training.batch_size ({t.batch_size}) must be divisible by training.gradient_accumulation_steps "
            f"({t.gradient_accumulation_steps})"
        )
    for key, value in _non_finite(config):
        raise ConfigError(f"{key} must be a finite number, got {value}" + _NON_FINITE_HINTS.get(key, ""))
    minimum = {  # key: (value, least allowed); None turns a setting off and is never out of range
        "training.max_steps": (t.max_steps, 1),
        "algorithm.mu": (a.mu, 1),
        "generation.max_completion_length": (g.max_completion_length, 1),
        "data.max_prompt_length": (config.data.max_prompt_length, 1),
        "algorithm.logprob_chunk_size": (a.logprob_chunk_size, 1),
        "algorithm.ref_model_sync_steps": (a.ref_model_sync_steps, 1),
        "algorithm.ref_model_refresh_steps": (a.ref_model_refresh_steps, 1),
        "model.lora.r": (config.model.lora.r, 1),
        "data.limit": (config.data.limit, 1),
        "training.eval_limit": (t.eval_limit, 1),
        "training.save_total_limit": (t.save_total_limit, 1),
        "training.logging_steps": (t.logging_steps, 1),
        "training.log_completions_steps": (t.log_completions_steps, 0),
        "training.save_steps": (t.save_steps, 0),
        "training.eval_steps": (t.eval_steps, 0),
        "training.learning_rate": (t.learning_rate, 0),
        "training.weight_decay": (t.weight_decay, 0),
        "generation.top_k": (g.top_k, 0),
        "algorithm.epsilon_high": (a.epsilon_high, 0),
        "algorithm.max_resample_rounds": (a.max_resample_rounds, 0),
        "rewards.remote_retries": (config.rewards.remote_retries, 0),
    }
    for key, (value, least) in minimum.items():
        if value is not None and value < least:
            raise ConfigError(f"{key} must be at least {least}, got {value}" + _RANGE_HINTS.get(key, ""))
    within = {  # key: (value, low, high, low included, high included)
        "generation.top_p": (g.top_p, 0.0, 1.0, False, True),
        "generation.min_p": (g.min_p, 0.0, 1.0, True, True),
        "training.warmup_ratio": (t.warmup_ratio, 0.0, 1.0, True, True),
        "training.adam_beta1": (t.adam_beta1, 0.0, 1.0, True, False),
        "training.adam_beta2": (t.adam_beta2, 0.0, 1.0, True, False),
        "model.lora.dropout": (config.model.lora.dropout, 0.0, 1.0, True, False),
    }
    for key, (value, low, high, low_in, high_in) in within.items():
        if not ((low <= value if low_in else low < value) and (value <= high if high_in else value < high)):
            interval = f"{'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"
            raise ConfigError(f"{key} must be in {interval}, got {value}" + _RANGE_HINTS.get(key, ""))
    above_zero = {
        "generation.repetition_penalty": g.repetition_penalty,
        "rewards.remote_timeout": config.rewards.remote_timeout,
        "training.max_grad_norm": t.max_grad_norm,
        "model.lora.alpha": config.model.lora.alpha,
    }
    for key, value in above_zero.items():
        if value is not None and value <= 0:
            raise ConfigError(f"{key} must be > 0, got {value}" + _RANGE_HINTS.get(key, ""))
    if g.temperature <= 0:
        raise ConfigError(f"generation.temperature must be > 0 for sampling, got {g.temperature}")
    _validate_objective(a)
    _validate_vllm(config)
    if a.beta < 0 or a.epsilon < 0:
        raise ConfigError("algorithm.beta and algorithm.epsilon must be >= 0")
    if not 0.0 <= a.ref_model_mixup_alpha <= 1.0:
        raise ConfigError(f"algorithm.ref_model_mixup_alpha must be in [0, 1], got {a.ref_model_mixup_alpha}")
    weights = config.rewards.weights
    if weights is not None and len(weights) != len(config.rewards.functions):
        raise ConfigError(
            f"rewards.weights has {len(weights)} entries but rewards.functions has "
            f"{len(config.rewards.functions)}: give one weight per function"
        )
    if config.rewards.num_workers < 0:
        raise ConfigError(f"rewards.num_workers must be >= 0, got {config.rewards.num_workers}")
    if t.max_nonfinite_updates < 0:
        raise ConfigError(f"training.max_nonfinite_updates must be >= 0, got {t.max_nonfinite_updates}")
    if config.rewards.timeout is not None:
        if config.rewards.timeout <= 0:
            raise ConfigError(f"rewards.timeout must be > 0 seconds, got {config.rewards.timeout}")
        if config.rewards.num_workers == 0:
            raise ConfigError(
                "rewards.timeout needs rewards.num_workers >= 1: a reward call in the training process "
                "cannot be stopped, one in a worker process can be killed"
            )
    if not config.rewards.functions:
        raise ConfigError("rewards.functions is empty: name at least one reward, e.g. [accuracy]")
    rg = config.data.reasoning_gym
    if rg.size < 1 or rg.eval_size < 1:
        raise ConfigError("data.reasoning_gym.size and data.reasoning_gym.eval_size must be at least 1")
    tag_templates = ("reasoning_gym", "answer_tag", "xml_reasoning", "think_answer")
    if (
        "reasoning_gym" in (*config.rewards.functions, t.eval_reward)
        and config.data.template not in tag_templates
    ):
        raise ConfigError(
            "the reasoning_gym reward reads the answer from <answer> tags, but "
            f"data.template {config.data.template!r} does not ask for them: use data.template=reasoning_gym "
            f"(or {', '.join(tag_templates[1:])})"
        )
    unknown_report = set(t.report_to) - {"tensorboard", "wandb"}
    if unknown_report:
        raise ConfigError(
            f"training.report_to has unknown loggers {sorted(unknown_report)}; use tensorboard, wandb"
        )


def _validate_objective(a: AlgorithmConfig) -> None:
    """The GRPO-family options of `algorithm` (issue 10)."""
    high = 1 + (a.epsilon if a.epsilon_high is None else a.epsilon_high)
    if a.delta is not None and a.delta <= high:
        raise ConfigError(
            f"algorithm.delta ({a.delta}) must be above 1 + epsilon_high ({high:g}): it caps ratios that the "
            "clip leaves unbounded"
        )
    if a.cispo_clip_max <= 0 or (
        a.cispo_clip_min is not None and not 0 <= a.cispo_clip_min < a.cispo_clip_max
    ):
        raise ConfigError(
            f"algorithm.cispo_clip_min ({a.cispo_clip_min}) and algorithm.cispo_clip_max ({a.cispo_clip_max}) "
            "must satisfy 0 <= cispo_clip_min < cispo_clip_max"
        )
    if not 0.0 <= a.top_entropy_quantile <= 1.0:
        raise ConfigError(f"algorithm.top_entropy_quantile must be in [0, 1], got {a.top_entropy_quantile}")
    low, top = a.importance_sampling_clip_min, a.importance_sampling_clip_max
    if (
        (low is not None and low < 0)
        or (top is not None and top <= 0)
        or (None not in (low, top) and low >= top)
    ):
        raise ConfigError(
            f"algorithm.importance_sampling_clip_min ({low}) and algorithm.importance_sampling_clip_max ({top}) "
            "must satisfy 0 <= min < max"
        )
    if a.use_bias_correction_kl and a.kl_in == "reward":
        raise ConfigError(
            "algorithm.use_bias_correction_kl weights the KL in the loss; with algorithm.kl_in=reward there is none"
        )


def _validate_vllm(config: GRPOConfig) -> None:
    v = config.vllm
    if not 0 < v.gpu_memory_utilization <= 1:
        raise ConfigError(f"vllm.gpu_memory_utilization must be in (0, 1], got {v.gpu_memory_utilization}")
    for key, value in {
        "vllm.cpu_kv_cache_gb": v.cpu_kv_cache_gb,
        "vllm.server_timeout": v.server_timeout,
        "vllm.tensor_parallel_size": v.tensor_parallel_size,
        "vllm.max_model_len": v.max_model_len,
    }.items():
        if value is not None and value <= 0:
            raise ConfigError(f"{key} must be > 0, got {value}")
    needed = config.data.max_prompt_length + config.generation.max_completion_length
    if v.max_model_len is not None and v.max_model_len < needed:
        raise ConfigError(
            f"vllm.max_model_len ({v.max_model_len}) is shorter than data.max_prompt_length + "
            f"generation.max_completion_length ({needed}): raise it or leave it null"
        )
    if not v.server_url.startswith(("http://", "https://")):
        raise ConfigError(f"vllm.server_url must start with http:// or https://, got {v.server_url!r}")
    if v.weight_transfer == "collective" and v.weights_dir is not None:
        raise ConfigError(
            "vllm.weights_dir is where weight_transfer=http writes its files; with weight_transfer=collective "
            "the weights are broadcast: drop one of the two"
        )
    if not 0 <= v.weight_transfer_port <= 65535:
        raise ConfigError(
            f"vllm.weight_transfer_port must be 0 (a free one) to 65535, got {v.weight_transfer_port}"
        )


_NON_FINITE_HINTS = {
    "training.max_grad_norm": " (null: no clipping)",
    "rewards.timeout": " (null: no time limit)",
}
_RANGE_HINTS = {
    "generation.top_p": " (1.0: sampling from the whole distribution)",
    "generation.top_k": " (0: off)",
    "generation.min_p": " (0: off)",
    "generation.repetition_penalty": " (1.0: off)",
    "training.max_grad_norm": " (null: no clipping)",
    "training.save_total_limit": " (null: keep every checkpoint)",
    "training.eval_limit": " (null: every held-out problem)",
    "data.limit": " (null: every row)",
    "algorithm.ref_model_refresh_steps": " (null: never)",
    "algorithm.max_resample_rounds": " (0: one generation round per step, nothing drawn again)",
}


def _non_finite(node: Any, prefix: str = "") -> typing.Iterator[tuple[str, float]]:
    """(key, value) of every NaN or infinite float in the config, lists included."""
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        key = prefix + f.name
        if dataclasses.is_dataclass(value):
            yield from _non_finite(value, key + ".")
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            if isinstance(item, float) and not math.isfinite(item):
                yield (f"{key}[{i}]" if isinstance(value, list) else key), item
