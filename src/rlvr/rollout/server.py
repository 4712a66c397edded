"""`rlvr serve-rollouts`: a vLLM engine on its own devices that training processes sample from.

    rlvr serve-rollouts --model Qwen/Qwen2.5-1.5B-Instruct --tensor-parallel-size 2 --port 8000

Endpoints (JSON unless said otherwise):
- `GET /health`: `{"status": "ok", "model", "fingerprint", "weight_version"}`; the client compares the
  fingerprint (architecture, vocabulary, width, depth) with the model it trains;
- `POST /generate`: `{"prompts": [[token ids]], "num_samples", "sampling": {GenerationConfig fields},
  "seeds": [one per prompt], "greedy", "eos_ids"}` -> `{"completions": [[ids]], "logprobs": [[floats]] | null}`,
  each prompt's `num_samples` completions adjacent;
- `POST /weights`: new weights, as a safetensors file in the body (`application/octet-stream`) or
  `{"path": FILE}` naming one the server can read (a shared directory) -> `{"weight_version", "seconds"}`;
- `POST /weights/transfer/init`: `{"init_info": {...}}`: the workers join a trainer's weight-transfer group
  (`rollout.transfer`; NCCL on GPUs, gloo on CPUs, as `/health` says under `weight_transfer`);
- `POST /weights/transfer`: `{"update_info": {"names", "dtype_names", "shapes"}}`: the workers take those
  tensors from the trainer's broadcast, start to finish -> `{"weight_version", "seconds"}`.
One request runs at a time: a weight push waits for the generation before it, and the other way round. A
broadcast that fails part-way leaves the engine's weights incomplete: the server then refuses to generate
(503) and says to restart it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request

from rlvr.argtypes import port, positive_int, probability, seed
from rlvr.config import ConfigError, GenerationConfig

JOIN_WAIT = 60.0  # seconds a trainer joining waits for the request before it
SAMPLING_FIELDS = ("max_completion_length", "temperature", "top_p", "top_k", "min_p", "repetition_penalty")


def model_fingerprint(config: Any) -> dict[str, Any]:
    """What must agree between the trained model and the served one for weights to fit (a transformers
    config object or its dict): the shapes of every weight follow from these."""
    get = config.get if isinstance(config, dict) else lambda key: getattr(config, key, None)
    keys = (
        "model_type",
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
    )
    return {key: get(key) for key in keys}


def create_app(engine: Any, model_name: str, fingerprint: dict[str, Any], workers: int = 1) -> Any:
    """The FastAPI app around `engine` (a `VLLMEngine` on `workers` devices)."""
    app = FastAPI(title="rlvr rollout server")
    lock = threading.Lock()
    broken: list[str] = []  # why the engine's weights are incomplete, once a broadcast failed part-way
    instance = uuid.uuid4().hex  # a trainer that joined this server sees a restarted one as another

    def usable() -> None:
        """Call holding `lock`: a request that waited for a failing broadcast must not sample after it."""
        if broken:
            raise HTTPException(
                503,
                f"this server's weights are incomplete since a weight broadcast failed part-way ({broken[0]}): "
                "restart `rlvr serve-rollouts`, then resume the run from its last checkpoint",
            )

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "broken" if broken else "ok",
            "model": model_name,
            "fingerprint": fingerprint,
            "weight_version": engine.weight_versions,
            "weight_transfer": engine.weight_transfer,
            "workers": workers,
            "instance": instance,
        }

    @app.post("/generate")
    def generate(body: dict[str, Any]) -> dict[str, Any]:
        try:
            prompts, num_samples, config, seeds, greedy, eos_ids = read_generate_request(body)
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            raise HTTPException(422, f"bad generation request: {exc}") from None
        with lock:
            usable()
            try:
                outputs = engine.sample_ids(prompts, num_samples, config, seeds, greedy, eos_ids)
            except ValueError as exc:  # vLLM's own checks: prompt too long for max_model_len, bad ids
                raise HTTPException(422, f"vLLM refused the request: {exc}") from None
        return {
            "completions": [ids for ids, _ in outputs],
            "logprobs": None if greedy else [logps for _, logps in outputs],
        }

    @app.post("/weights")
    async def weights(request: Request) -> dict[str, Any]:
        body = await request.body()
        tensor_parallel = workers > 1
        if request.headers.get("content-type", "").startswith("application/json"):
            path = Path(json.loads(body)["path"])
            if not path.is_file():
                raise HTTPException(422, f"no weights file {path} on the server: is the directory shared?")
            return _load(
                engine, lock, usable, path.read_bytes() if tensor_parallel else None, path, tensor_parallel
            )
        if not body:
            raise HTTPException(422, "empty weights: send a safetensors file in the request body")
        return _load(engine, lock, usable, body, None, tensor_parallel)

    @app.post("/weights/transfer/init")
    def join_transfer(body: dict[str, Any]) -> dict[str, Any]:
        if engine.weight_transfer is None:
            raise HTTPException(422, "this server takes no broadcast weights: use weight_transfer=http")
        if not lock.acquire(timeout=JOIN_WAIT):
            raise HTTPException(
                503,
                f"this server has been busy for {JOIN_WAIT:.0f} s (a weight broadcast whose trainer stopped "
                "part-way never ends on GPUs): restart `rlvr serve-rollouts`",
            )
        try:
            usable()
            engine.join_weight_transfer(body["init_info"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise HTTPException(
                422, f"could not join the trainer's weight transfer: {type(exc).__name__}: {exc}"
            ) from None
        finally:
            lock.release()
        return {"workers": workers}

    @app.post("/weights/transfer")
    def transfer(body: dict[str, Any]) -> dict[str, Any]:
        usable()
        update = body.get("update_info")
        if not isinstance(update, dict):
            raise HTTPException(
                422, "give update_info: the names, dtype_names and shapes of the tensors sent"
            )
        started = time.perf_counter()
        with lock:
            try:
                engine.receive_weights(update)
            except Exception as exc:
                broken.append(f"{type(exc).__name__}: {exc}")
                raise HTTPException(500, f"the broadcast weights did not load: {broken[0]}") from None
        return {"weight_version": engine.weight_versions, "seconds": time.perf_counter() - started}

    return app


def _load(
    engine: Any,
    lock: threading.Lock,
    usable: Any,
    data: bytes | None,
    path: Path | None,
    tensor_parallel: bool,
) -> Any:
    """Load safetensors `data` (or the file `path`) into the engine: in place from memory when the engine is
    in this process, else through a file every worker reads."""
    from safetensors import SafetensorError

    started = time.perf_counter()
    try:
        with lock:
            usable()
            if tensor_parallel:
                with tempfile.TemporaryDirectory(prefix="rlvr-weights-") as tmp:
                    (Path(tmp) / "model.safetensors").write_bytes(data)
                    engine.load_weights(path=tmp)
            else:
                engine.load_weights(safetensors_items(data, path))
    except (SafetensorError, KeyError, ValueError, RuntimeError, AssertionError) as exc:
        raise HTTPException(422, f"the weights did not load: {type(exc).__name__}: {exc}") from None
    return {"weight_version": engine.weight_versions, "seconds": time.perf_counter() - started}


def safetensors_items(data: bytes | None, path: Path | None) -> Any:
    """(name, tensor) pairs of a safetensors file in memory or on disk, read one tensor at a time from disk."""
    if data is not None:
        from safetensors.torch import load

        yield from load(data).items()
        return
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        for name in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
            yield name, f.get_tensor(name)


def read_generate_request(body: dict[str, Any]) -> tuple:
    """(prompts, num_samples, GenerationConfig, seeds, greedy, eos_ids) from a /generate body, checked."""
    prompts = body["prompts"]
    num_samples = int(body.get("num_samples", 1))
    if not prompts or not all(
        isinstance(p, list) and p and all(isinstance(t, int) for t in p) for p in prompts
    ):
        raise ValueError("prompts must be a non-empty list of non-empty lists of token ids")
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    unknown = set(body.get("sampling", {})) - set(SAMPLING_FIELDS)
    if unknown:
        raise ValueError(f"unknown sampling fields {sorted(unknown)}; known: {', '.join(SAMPLING_FIELDS)}")
    config = GenerationConfig(**body.get("sampling", {}))
    seeds = body.get("seeds") or [0] * len(prompts)
    if len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts: give one per prompt")
    eos_ids = [int(i) for i in body.get("eos_ids", [])]
    if not eos_ids:
        raise ValueError("eos_ids is empty: give the token ids that end a completion")
    return prompts, num_samples, config, [int(s) for s in seeds], bool(body.get("greedy", False)), eos_ids


def sampling_fields(config: GenerationConfig) -> dict[str, Any]:
    """The part of `config` a /generate request carries."""
    values = dataclasses.asdict(config)
    return {key: values[key] for key in SAMPLING_FIELDS}


# ------------------------------------------------------------------------------------------------ the CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="hub id, local directory, .gguf file, or shipped name")
    parser.add_argument(
        "--tensor-parallel-size",
        type=positive_int,
        default=1,
        help="devices the engine's weights are split over",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    parser.add_argument("--port", type=port, default=8000, help="port, 1 to 65535 (default: 8000)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="bfloat16")
    parser.add_argument(
        "--max-model-len", type=positive_int, default=2048, help="longest prompt + completion, tokens"
    )
    parser.add_argument(
        "--gpu-memory-utilization",
        type=probability,
        default=0.9,
        help="share of each GPU's memory for the engine",
    )
    parser.add_argument("--kv-cache-gb", type=positive_int, default=2, help="KV cache on a CPU, GiB")
    parser.add_argument(
        "--enforce-eager", action="store_true", help="no torch.compile / CUDA graphs: quick start, slower"
    )
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--cache-dir", default=None, help="for converted GGUF and shipped models")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from rlvr.models import load_tokenizer, resolve_model_path
    from rlvr.rollout.engine import require_vllm
    from rlvr.rollout.vllm_engine import VLLMEngine

    require_vllm(needed_by="rlvr serve-rollouts")
    path = resolve_model_path(args.model, args.cache_dir)
    tokenizer = load_tokenizer(path)
    import torch
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path).to_dict()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    engine = VLLMEngine(
        path,
        tokenizer,
        args.max_model_len,
        [tokenizer.eos_token_id],
        dtype=args.dtype,
        max_model_len=args.max_model_len,
        device=device,
        gpu_memory_utilization=args.gpu_memory_utilization,
        cpu_kv_cache_gb=args.kv_cache_gb,
        enforce_eager=args.enforce_eager,
        tensor_parallel_size=args.tensor_parallel_size,
        weight_transfer="nccl" if device == "cuda" else "gloo",
        seed=args.seed,
        length_settings="--max-model-len",
    )
    app = create_app(engine, args.model, model_fingerprint(config), args.tensor_parallel_size)
    print(f"rlvr serve-rollouts: {args.model} ready on http://{args.host}:{args.port} ", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
