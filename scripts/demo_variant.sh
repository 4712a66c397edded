#!/usr/bin/env bash
# One variant of the demo recipe against the base model, for the seed and dtype table of docs/results/demo/README.md:
#   bash scripts/demo_variant.sh OUT SEED BF16 [key=value overrides...]
#   e.g. bash scripts/demo_variant.sh runs/demo_var/b64_bf16_s1 1 true training.batch_size=64
# Trains configs/demo.yaml with training.seed=SEED training.bf16=BF16 and the overrides into OUT/train, evaluates
# the result greedily on the 150 held-out problems in the same dtype (OUT/after), measures the base model once
# per dtype (OUT/../before_BF16) and prints `rlvr compare`'s verdict line.
set -euo pipefail
out=${1:?usage: scripts/demo_variant.sh OUT SEED BF16 [overrides...]} seed=${2:?seed} bf16=${3:?true or false}
shift 3
rlvr=${RLVR:-.venv/bin/rlvr}
eval_args=(--dataset arithmetic --split test --limit 150 --template boxed --reward accuracy --max-new-tokens 64
           --batch-size 50 --bf16 "$bf16" --no-progress)
before=$(dirname "$out")/before_$bf16
[ -f "$before/summary.json" ] || $rlvr eval --model smollm2-135m-instruct "${eval_args[@]}" --output "$before"
$rlvr train --config configs/demo.yaml training.output_dir="$out/train" training.seed="$seed" \
  training.bf16="$bf16" "$@"
$rlvr eval --model "$out/train/final" "${eval_args[@]}" --output "$out/after"
$rlvr compare "$before" "$out/after" | grep -i 'right answers'
