#!/usr/bin/env bash
# One run of an async learning curve per seed (issue 25): configs/demo.yaml (or CONFIG) trained at staleness S by
# benchmarks/async_overlap.py (rollout server pinned to core 0, trainer to core 1, float32), a checkpoint every
# SAVE steps; each checkpoint and final/ then answers the 150 held-out problems greedily (float32, hf engine, as
# scripts/demo.sh measures) and `rlvr compare` pairs final/ with the base model and with S = 0 of the same seed.
#   bash scripts/async_curve_variant.sh NAME S "OVERRIDES" SEED...
#   bash scripts/async_curve_variant.sh S2c 2 \
#     "algorithm.importance_sampling_correction=false algorithm.old_logps_source=sampler" 0 1 2 3 4
# -> OUT/seedN/bench_NAME (the training run and its steps per minute), OUT/seedN/eval_NAME_{checkpoint-K,final};
# then python benchmarks/async_curve_seeds.py OUT --variant NAME sums up over seeds. NAME S0 with S 0 and no
# overrides is the run the others are compared with (scripts/async_learning_curve.sh makes it beside S = 2).
# Environment: OUT (runs/async_curve), CONFIG (configs/demo.yaml), STEPS (15), SAVE (5), KEEP_MODELS (unset: a
# run's model weights and optimizer states are deleted once evaluated, about 1.6 GB a run).
set -euo pipefail
name=$1 s=$2 overrides=$3
shift 3
out=${OUT:-runs/async_curve} config=${CONFIG:-configs/demo.yaml} steps=${STEPS:-15} save=${SAVE:-5}
eval_args=(--dataset arithmetic --split test --limit 150 --template boxed --reward accuracy --max-new-tokens 64
           --batch-size 50 --bf16 false --no-progress)
mkdir -p "$out"
[ -f "$out/base/summary.json" ] || .venv/bin/rlvr eval --model smollm2-135m-instruct "${eval_args[@]}" --output "$out/base"
for seed in "$@"; do
  run=$out/seed$seed
  bench=$run/bench_$name
  [ -f "$bench/summary.json" ] ||
    .venv/bin/python benchmarks/async_overlap.py --config "$config" --staleness "$s" --steps "$steps" --warmup 2 \
      --out "$bench" training.save_steps="$save" training.save_total_limit=null training.seed="$seed" $overrides
  for model in $(cd "$bench/S$s" && ls -d checkpoint-* final 2>/dev/null); do
    [ "$model" != "checkpoint-$steps" ] || continue  # final/ is the same model
    [ -f "$run/eval_${name}_$model/summary.json" ] ||
      .venv/bin/rlvr eval --model "$bench/S$s/$model" "${eval_args[@]}" --output "$run/eval_${name}_$model"
  done
  [ -n "${KEEP_MODELS:-}" ] || rm -rf "$bench/S$s"/checkpoint-* "$bench/S$s/final"
  .venv/bin/rlvr compare "$out/base" "$run/eval_${name}_final" > "$run/compare_base_$name.txt"
  if [ "$name" != S0 ]; then
    .venv/bin/rlvr compare "$run/eval_S0_final" "$run/eval_${name}_final" > "$run/compare_S0_$name.txt"
    grep -i 'right answers' "$run/compare_S0_$name.txt"
  fi
done
