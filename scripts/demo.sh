#!/usr/bin/env bash
# make demo: measure SmolLM2-135M-Instruct on held-out generated arithmetic, train it briefly with GRPO
# on the CPU, measure again, and compare with a paired test. A shortened configs/arithmetic_proof.yaml.
set -euo pipefail
out=${1:-runs/demo}
rlvr=.venv/bin/rlvr
steps=${DEMO_STEPS:-30}
limit=${DEMO_EVAL_LIMIT:-150}
eval_args=(--dataset arithmetic --split test --limit "$limit" --template boxed --reward accuracy
           --max-new-tokens 64 --batch-size 50 --bf16)

rm -rf "$out"
model=$($rlvr prepare-model smollm2-135m-instruct | tail -n 1)
echo "== model: $model"
echo "== before: greedy accuracy on $limit held-out problems"
$rlvr eval --model "$model" "${eval_args[@]}" --output "$out/before"
echo "== GRPO: $steps steps"
$rlvr train --config configs/arithmetic_proof.yaml training.output_dir="$out/train" training.max_steps="$steps" \
  training.save_steps=0
echo "== after"
$rlvr eval --model "$out/train/final" "${eval_args[@]}" --output "$out/after"
echo "== before vs after"
$rlvr compare "$out/before" "$out/after"
