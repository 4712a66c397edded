#!/usr/bin/env bash
# One more variant of the demo recipe's async run per seed, beside scripts/async_learning_curve.sh's S = 0 and
# S = 2 in runs/async_curve (run that first: it is the S = 0 each variant is compared with), e.g. clipping at the
# sampler (issue 25):
#   bash scripts/async_curve_variant.sh S2c 2 \
#     "algorithm.importance_sampling_correction=false algorithm.old_logps_source=sampler" 0 1 2 3 4
# -> runs/async_curve/seedN/bench_NAME (benchmarks/async_overlap.py, server and trainer pinned) and
#    eval_NAME_{checkpoint-5,checkpoint-10,final}; then python benchmarks/async_curve_seeds.py runs/async_curve
#    --variant NAME sums up over seeds.
set -euo pipefail
name=$1 s=$2 overrides=$3
shift 3
out=runs/async_curve
eval_args=(--dataset arithmetic --split test --limit 150 --template boxed --reward accuracy --max-new-tokens 64
           --batch-size 50 --bf16 false --no-progress)
for seed in "$@"; do
  run=$out/seed$seed
  [ -f "$run/bench_$name/S$s/final/model.safetensors" ] ||
    .venv/bin/python benchmarks/async_overlap.py --config configs/demo.yaml --staleness "$s" --steps 15 --warmup 2 \
      --out "$run/bench_$name" training.save_steps=5 training.save_total_limit=null training.seed="$seed" $overrides
  for model in checkpoint-5 checkpoint-10 final; do
    [ -f "$run/eval_${name}_$model/summary.json" ] ||
      .venv/bin/rlvr eval --model "$run/bench_$name/S$s/$model" "${eval_args[@]}" --output "$run/eval_${name}_$model"
  done
  .venv/bin/rlvr compare "$run/eval_S0_final" "$run/eval_${name}_final" > "$run/compare_S0_$name.txt"
  .venv/bin/rlvr compare "$out/base" "$run/eval_${name}_final" > "$run/compare_base_$name.txt"
  grep -i 'right answers' "$run/compare_S0_$name.txt"
done
