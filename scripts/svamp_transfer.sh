#!/usr/bin/env bash
# The transfer proof (configs/svamp_transfer.yaml): measure SmolLM2-135M-Instruct on the full SVAMP test set,
# train on generated arithmetic for at most 20 minutes, measure again, compare with a paired test. Also the
# held-out reasoning-gym chain_sum instances (arithmetic of another hand, scored here by `accuracy`).
#   bash scripts/svamp_transfer.sh docs/results/svamp        (about an hour on the project's 2-core CPU)
# SVAMP comes from RLVR_DATA_DIR (svamp/test.jsonl) or the hub (ChilleD/SVAMP).
set -euo pipefail
out=${1:-runs/svamp_transfer}
rlvr=${RLVR:-.venv/bin/rlvr}
svamp=(--dataset svamp --split test --template boxed --reward accuracy --max-new-tokens 128 --batch-size 100)
chain=(--dataset reasoning_gym:chain_sum --split test --limit 200 --template boxed --reward accuracy
       --max-new-tokens 64 --batch-size 100)
model=$($rlvr prepare-model smollm2-135m-instruct | tail -n 1)
[ -f "$out/before/summary.json" ] || $rlvr eval --model "$model" "${svamp[@]}" --output "$out/before"
[ -f "$out/chain_sum_before/summary.json" ] || $rlvr eval --model "$model" "${chain[@]}" --output "$out/chain_sum_before"
if [ ! -d "$out/train" ]; then
  # 20 minutes at most: `timeout` stops the run there (exit 124) and the newest checkpoint is measured.
  rc=0
  timeout 1200 $rlvr train --config configs/svamp_transfer.yaml training.output_dir="$out/train" || rc=$?
  [ "$rc" = 0 ] || [ "$rc" = 124 ] || exit "$rc"
fi
trained=$out/train/final
[ -d "$trained" ] || trained=$(ls -d "$out"/train/checkpoint-* | sort -V | tail -n 1)
echo "== measuring $trained"
# measured again on every run (the newest checkpoint may have changed): --overwrite replaces the last measure
$rlvr eval --model "$trained" "${svamp[@]}" --output "$out/after" --overwrite
$rlvr eval --model "$trained" "${chain[@]}" --output "$out/chain_sum_after" --overwrite
$rlvr plot "$out/train"
$rlvr compare "$out/before" "$out/after" --json "$out/compare.json" | tee "$out/compare.txt"
$rlvr compare "$out/chain_sum_before" "$out/chain_sum_after" --json "$out/chain_sum_compare.json" | tee "$out/chain_sum_compare.txt"
