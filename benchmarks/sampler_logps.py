"""What returning the sampler's log-probs costs rlvr's decode loop: the same sampling work (4 prompts x 8 samples
x 64 forced tokens, SmolLM2-135M-Instruct, float32, temperature 0.7) with and without `return_logps`, the two
interleaved, the first pair dropped as warm-up.

    python benchmarks/sampler_logps.py [--repeats 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlvr.config import GenerationConfig
from rlvr.models.prepare import prepare_model
from rlvr.rollout import sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=4, help="calls of each kind (the first pair is warm-up)"
    )
    args = parser.parse_args()
    path = prepare_model("smollm2-135m-instruct")
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    config = GenerationConfig(max_completion_length=64, temperature=0.7)
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": f"What is {i} + {i + 3}?"}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for i in range(4)
    ]
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for repeat in range(args.repeats):
        for return_logps in (False, True):
            torch.manual_seed(repeat)
            started = time.perf_counter()
            sample(
                model, tokenizer, prompts, config, 8, 128, force_full_length=True, return_logps=return_logps
            )
            seconds[return_logps].append(time.perf_counter() - started)
    without, with_logps = (statistics.median(seconds[k][1:]) for k in (False, True))
    print(
        "seconds without:",
        [round(s, 2) for s in seconds[False]],
        "with:",
        [round(s, 2) for s in seconds[True]],
    )
    print(f"median without {without:.2f} s, with {with_logps:.2f} s, ratio {with_logps / without:.3f}")


if __name__ == "__main__":
    main()
