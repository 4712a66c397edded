#!/usr/bin/env bash
# The code proof (issue #22): SmolLM2-135M-Instruct on HumanEval before and after a short GRPO run on generated
# function-writing problems (configs/code_proof.yaml), every program run in the sandbox by `code_tests`.
#   bash scripts/code_proof.sh docs/results/code/<run>
# 1. The base model, greedy: HumanEval's 164 problems (pass@1: every test of `check` passes; up to 512 new
#    tokens) and the 200 problems of the held-out split of python_functions (kinds of task trained on, with
#    constants never trained on; up to 256 new tokens, as in training).
# 2. configs/code_proof.yaml on the train split of python_functions.
# 3. The trained model on the same two sets; `rlvr compare` (paired, exact McNemar) for each: compare_humaneval
#    and compare_heldout; plots of the run and `rlvr inspect` of its last logged completions.
# Evaluations run on vLLM (--engine vllm --vllm-enforce-eager); training samples with vLLM colocated and updates
# in rlvr, in float32.
# Runtime, estimated from the smoke run (Intel Xeon with AMX, 2 cores shared with other jobs, OMP_NUM_THREADS=1):
# a training step took 181 s (sampling 44 s, scoring 8 s, update 127 s), so 25 steps would take about 75 min (the config has 12, see docs/results/code/); evaluations at
# the smoke run's rate 2 x 23 min (HumanEval) and 2 x 10 min (held-out): at most about 2.5 hours, less on a free CPU.
# Each part is skipped when its output exists, so a stopped run picks up where it stopped. A smoke run of every
# part in 10-11 minutes (measured): LIMIT=8 STEPS=1 bash scripts/code_proof.sh runs/code_smoke
set -euo pipefail
out=${1:?usage: scripts/code_proof.sh OUTPUT_DIR}
rlvr=${RLVR:-.venv/bin/rlvr}
mkdir -p "$out"
common=(--template code --reward code_tests --engine vllm --vllm-enforce-eager --bf16 false --no-progress
        ${LIMIT:+--limit "$LIMIT"})
humaneval=(--dataset humaneval --split test --max-new-tokens 512 --max-prompt-length 512 "${common[@]}")
heldout=(--dataset python_functions --split test --max-new-tokens 256 --max-prompt-length 256 "${common[@]}")

evaluate() {  # evaluate NAME MODEL ARGS...: one evaluation into $out/NAME, unless it is there
  local name=$1 model=$2
  shift 2
  [ -f "$out/$name/summary.json" ] && return 0
  echo "== $name: $model"
  $rlvr eval --model "$model" "$@" --output "$out/$name"
}

base=smollm2-135m-instruct
evaluate before_humaneval $base "${humaneval[@]}"
evaluate before_heldout $base "${heldout[@]}"

if [ ! -d "$out/train/final" ]; then
  echo "== train: configs/code_proof.yaml"
  $rlvr train --config configs/code_proof.yaml training.output_dir="$out/train" training.overwrite_output_dir=true \
    ${STEPS:+training.max_steps="$STEPS" training.log_completions_steps=1}
  $rlvr plot "$out/train"
fi

evaluate after_humaneval "$out/train/final" "${humaneval[@]}"
evaluate after_heldout "$out/train/final" "${heldout[@]}"

compare() {  # compare NAME BEFORE AFTER
  $rlvr compare "$out/$2" "$out/$3" --json "$out/$1.json" | tee "$out/$1.txt"
}
compare compare_humaneval before_humaneval after_humaneval
compare compare_heldout before_heldout after_heldout
$rlvr inspect "$out/train" --last 3 > "$out/inspect.txt"
