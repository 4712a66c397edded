#!/usr/bin/env bash
# Measure SmolLM2-135M-Instruct on held-out generated arithmetic, train it with GRPO on the CPU
# (configs/arithmetic_proof.yaml), measure again, and compare with a paired test.
#   make demo                                     -> the shortened version (15 steps, 150 problems)
#   DEMO_STEPS=100 DEMO_EVAL_LIMIT=300 bash scripts/demo.sh docs/results/arithmetic   -> the proof run
set -euo pipefail
out=${1:-runs/demo}
rlvr=${RLVR:-.venv/bin/rlvr}
steps=${DEMO_STEPS:-15}
limit=${DEMO_EVAL_LIMIT:-150}
eval_args=(--dataset arithmetic --split test --limit "$limit" --template boxed --reward accuracy
           --max-new-tokens 64 --batch-size 100 --bf16 --no-progress)

rm -rf "$out/before" "$out/after" "$out/train"
mkdir -p "$out"
model=$($rlvr prepare-model smollm2-135m-instruct | tail -n 1)
echo "== model: $model"
echo "== before: greedy accuracy on $limit held-out problems"
$rlvr eval --model "$model" "${eval_args[@]}" --output "$out/before"
echo "== GRPO: $steps steps"
started=$(date +%s)
$rlvr train --config configs/arithmetic_proof.yaml training.output_dir="$out/train" training.max_steps="$steps" \
  training.save_steps=0
echo "== training wall-clock: $(( $(date +%s) - started )) s"
echo "== after"
$rlvr eval --model "$out/train/final" "${eval_args[@]}" --output "$out/after"
$rlvr plot "$out/train"
echo "== before vs after"
$rlvr compare "$out/before" "$out/after" --json "$out/compare.json"
