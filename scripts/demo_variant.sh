#!/usr/bin/env bash
# One variant of the demo recipe against the base model, for the seed and dtype table of docs/results/demo/README.md:
#   bash scripts/demo_variant.sh OUT SEED BF16 [key=value overrides...]
#   e.g. bash scripts/demo_variant.sh runs/demo_var/b64_bf16_s1 1 true training.batch_size=64
# Trains configs/demo.yaml with training.seed=SEED training.bf16=BF16 and the overrides into OUT/train, evaluates
# the result greedily on the 150 held-out problems in the same dtype (OUT/after), measures the base model once
# per dtype (OUT/../before_BF16) and prints `rlvr compare`'s verdict line.
# The table's rows for the earlier recipe (10 steps, `accuracy` alone) add
#   'rewards.functions=[accuracy]' 'rewards.options={}' training.max_steps=10
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
# Right answers by kind of problem (the generator writes "buys ... more" for a sum, "gave ... to a friend" for a
# difference), before -> after.
.venv/bin/python - "$before/predictions.jsonl" "$out/after/predictions.jsonl" <<'PY'
import json, sys
def right(path):
    counts = {"sums": [0, 0], "differences": [0, 0]}
    for row in map(json.loads, open(path)):
        kind = counts["differences" if " gave " in row["question"] else "sums"]
        kind[0] += row["correct"]
        kind[1] += 1
    return counts
before, after = right(sys.argv[1]), right(sys.argv[2])
print(", ".join(f"{k}: {before[k][0]} -> {after[k][0]} of {after[k][1]}" for k in before))
PY
