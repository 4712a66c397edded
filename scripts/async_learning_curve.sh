#!/usr/bin/env bash
# The demo recipe's learning curve at rollout.max_staleness S = 0 and S = 2, same seeds (issue 25):
#   bash scripts/async_learning_curve.sh OUT [SEED...]      e.g. bash scripts/async_learning_curve.sh runs/curve 0 1
# For each seed, benchmarks/async_overlap.py trains configs/demo.yaml at S = 0 and S = 2 with the rollout server
# pinned to core 0 and the trainer to core 1 (float32, 15 steps, a checkpoint every 5), which also gives the
# steps per minute; then the base model, checkpoint-5, checkpoint-10 and final/ of each run answer the 150
# held-out problems greedily (float32, hf engine, as scripts/demo.sh measures), and `rlvr compare` pairs S = 0
# with S = 2 at step 15 and each run with the base model. Results: OUT/curve.md (accuracy at steps 0, 5, 10, 15)
# and OUT/seedN/compare_*.txt. More config overrides for both runs, space-separated, e.g.
#   ASYNC_OVERRIDES=algorithm.importance_sampling_mode=token_truncate bash scripts/async_learning_curve.sh OUT 0
# Each run's model weights and optimizer states are deleted once evaluated; KEEP_MODELS=1 keeps them.
set -euo pipefail
out=${1:?usage: scripts/async_learning_curve.sh OUT [SEED...]}
shift
seeds=("${@:-0}")
py=${PYTHON:-.venv/bin/python}
rlvr=${RLVR:-.venv/bin/rlvr}
eval_args=(--dataset arithmetic --split test --limit 150 --template boxed --reward accuracy --max-new-tokens 64
           --batch-size 50 --bf16 false --no-progress)
accuracy() { $py -c "import json,sys; print(f\"{json.load(open(sys.argv[1]))['metrics']['accuracy']:.3f}\")" "$1"; }

mkdir -p "$out"
[ -f "$out/base/summary.json" ] || $rlvr eval --model smollm2-135m-instruct "${eval_args[@]}" --output "$out/base"
{
  echo "# configs/demo.yaml at rollout.max_staleness 0 and 2: held-out accuracy (150 problems, greedy) by step"
  echo
  echo "| seed | S | step 0 | step 5 | step 10 | step 15 | steps/min |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
} > "$out/curve.md"
for seed in "${seeds[@]}"; do
  run=$out/seed$seed
  $py benchmarks/async_overlap.py --config configs/demo.yaml --staleness 0 2 --steps 15 --warmup 2 --out "$run" \
    training.save_steps=5 training.save_total_limit=null training.seed="$seed" ${ASYNC_OVERRIDES:-}
  for s in 0 2; do
    for model in checkpoint-5 checkpoint-10 final; do
      [ -f "$run/eval_S${s}_$model/summary.json" ] ||
        $rlvr eval --model "$run/S$s/$model" "${eval_args[@]}" --output "$run/eval_S${s}_$model"
    done
    [ -n "${KEEP_MODELS:-}" ] || rm -rf "$run/S$s"/checkpoint-* "$run/S$s/final"  # about 1.6 GB a run
    $rlvr compare "$out/base" "$run/eval_S${s}_final" > "$run/compare_base_S$s.txt"
    rate=$($py -c "import json, sys; r = json.load(open(sys.argv[1]))['results'][sys.argv[2]]
print(f\"{r['steps_per_minute']:.2f}\")" "$run/summary.json" "$s")
    row="| $seed | $s | $(accuracy "$out/base/summary.json")"
    for model in checkpoint-5 checkpoint-10 final; do row+=" | $(accuracy "$run/eval_S${s}_$model/summary.json")"; done
    echo "$row | $rate |" >> "$out/curve.md"
  done
  $rlvr compare "$run/eval_S0_final" "$run/eval_S2_final" > "$run/compare_S0_S2.txt"
  verdict=$(grep -i 'right answers' "$run/compare_S0_S2.txt")
  echo "seed $seed, S = 0 (before) vs S = 2 (after) at step 15: $verdict" >> "$out/verdicts.txt"
done
cat "$out/curve.md" "$out/verdicts.txt"
