#!/usr/bin/env bash
# Measure SmolLM2-135M-Instruct on held-out generated arithmetic, train it with GRPO on the CPU
# (configs/demo.yaml), measure again, and compare with a paired test.
#   make demo                                   -> runs/demo: before/, train/ (with plots/), after/, compare.json
#   DEMO_EVAL_LIMIT=300 bash scripts/demo.sh runs/demo300   -> the same on 300 held-out problems
#   DEMO_BF16=false bash scripts/demo.sh runs/demo_fp32      -> float32 where auto would pick bfloat16
set -euo pipefail
out=${1:-runs/demo}
rlvr=${RLVR:-.venv/bin/rlvr}
limit=${DEMO_EVAL_LIMIT:-150}
bf16=${DEMO_BF16:-auto}  # auto: bfloat16 where the CPU computes it natively (AMX, avx512_bf16), else float32
eval_args=(--dataset arithmetic --split test --limit "$limit" --template boxed --reward accuracy
           --max-new-tokens 64 --batch-size 50 --bf16 "$bf16")
started=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - started )) s] $*"; }

rm -rf "$out/before" "$out/after" "$out/train"
mkdir -p "$out"
model=$($rlvr prepare-model smollm2-135m-instruct | tail -n 1)
stamp "model: $model"
stamp "before: greedy answers to $limit held-out problems"
$rlvr eval --model "$model" "${eval_args[@]}" --output "$out/before"
stamp "GRPO: configs/demo.yaml"
$rlvr train --config configs/demo.yaml training.output_dir="$out/train" training.bf16="$bf16"
stamp "after: the same $limit problems"
$rlvr eval --model "$out/train/final" "${eval_args[@]}" --output "$out/after"
$rlvr plot "$out/train"
stamp "before vs after"
$rlvr compare "$out/before" "$out/after" --json "$out/compare.json"
stamp "done"
