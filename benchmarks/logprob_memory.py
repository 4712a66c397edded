"""Peak memory of per-token log-probs at long completions: rlvr's chunked path against full float32 logits.

    python benchmarks/logprob_memory.py                 # SmolLM2-135M, 4 x 1024 completion tokens
    python benchmarks/logprob_memory.py --batch 8 --completion-length 1024

Each variant runs in a fresh process, forward and backward of sum(log-probs), bfloat16 autocast, at two
levels:
- head: the log-prob computation itself, from final hidden states [B, C, H] (a leaf that needs grad)
  through the output projection and log-softmax to per-token log-probs. This is what chunking changes.
- model: the whole decoder on --prompt-length + --completion-length tokens plus the head; the decoder's
  own activations, identical in both variants, are most of it.
Reported: peak resident memory above what the loaded model already held, and the ratio chunked/naive.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(variant: str, args: argparse.Namespace) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from rlvr.algorithm import completion_logps, logps_from_hidden, selective_log_softmax
    from rlvr.models import prepare_model

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(prepare_model("smollm2-135m-instruct")).train()
    total = args.prompt_length + args.completion_length
    input_ids = torch.randint(5, model.config.vocab_size, (args.batch, total))
    attention_mask = torch.ones_like(input_ids)
    completion_mask = torch.ones(args.batch, args.completion_length, dtype=torch.long)
    # Touch everything once at a small size so allocator pools and weight casts exist in both variants.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        warm = model(input_ids=input_ids[:1, :32]).logits.float().sum()
    warm.backward()
    model.zero_grad(set_to_none=True)
    targets = input_ids[:, -args.completion_length :]
    hidden = None
    if args.level == "head":
        hidden = torch.randn(
            args.batch,
            args.completion_length,
            model.config.hidden_size,
            dtype=torch.bfloat16,
            requires_grad=True,
        )
    baseline = rss_mb()
    started = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        if args.level == "head" and variant == "naive":
            logps = selective_log_softmax(model.lm_head(hidden).float(), targets)
        elif args.level == "head":
            logps, _ = logps_from_hidden(
                hidden, model.lm_head, targets, completion_mask, chunk_size=args.chunk_size
            )
        elif variant == "naive":
            # full float32 logits [B, C, V], log_softmax over them, then gather
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[
                :, -args.completion_length - 1 : -1
            ]
            logps = selective_log_softmax(logits.float(), targets)
        else:
            logps, _ = completion_logps(
                model, input_ids, attention_mask, completion_mask, chunk_size=args.chunk_size
            )
    logps.sum().backward()
    return {
        "variant": variant,
        "level": args.level,
        "peak_above_model_mb": peak_mb() - baseline,
        "seconds": time.perf_counter() - started,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--prompt-length", type=int, default=128)
    parser.add_argument("--completion-length", type=int, default=1024)
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--levels", default="head,model", help="comma list of head, model")
    parser.add_argument("--variant", choices=["naive", "chunked"], help=argparse.SUPPRESS)
    parser.add_argument("--level", choices=["head", "model"], default="head", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run(args.variant, args)))
        return 0
    print(
        f"batch {args.batch}, prompt {args.prompt_length} + completion {args.completion_length} tokens, "
        f"chunk {args.chunk_size} rows"
    )
    for level in args.levels.split(","):
        results = {}
        for variant in ("naive", "chunked"):
            cmd = [
                sys.executable,
                __file__,
                "--variant",
                variant,
                "--level",
                level,
                "--batch",
                str(args.batch),
                "--prompt-length",
                str(args.prompt_length),
                "--completion-length",
                str(args.completion_length),
                "--chunk-size",
                str(args.chunk_size),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
            if out.returncode != 0:
                raise SystemExit(out.stderr[-3000:])
            results[variant] = r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{level:5} {variant:8} peak above model {r['peak_above_model_mb']:8.0f} MB   "
                f"forward+backward {r['seconds']:6.1f} s"
            )
        ratio = results["chunked"]["peak_above_model_mb"] / results["naive"]["peak_above_model_mb"]
        print(f"{level}: peak memory chunked/naive = {ratio:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
