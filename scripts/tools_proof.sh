#!/usr/bin/env bash
# The tool proof (issue #21 point 8): does SmolLM2-135M-Instruct learn to use a calculator with GRPO, and does
# the tool beat the same training without it?
#   RLVR_DATA_DIR=/work/shared/data bash scripts/tools_proof.sh docs/results/tools/<run>
# 1. The base model on the 300 held-out `arithmetic` test problems (greedy): with the calculator and its three
#    worked examples (`environment.args: {few_shot: true}`), without the tool but with the same examples
#    computed inline (the twin's prompt), and plainly (no examples, the earlier proofs' prompt); and on SVAMP's
#    1,000 test problems (never trained on) with the calculator.
# 2. configs/calculator_proof.yaml (the calculator environment) and configs/calculator_proof_no_tool.yaml (its
#    single-turn twin: same data, seed, sampling and steps), on the arithmetic train split.
# 3. The trained models on the same sets, each in the form it trained in; `rlvr compare` (paired, exact McNemar):
#    compare_tool (a: before vs after, with the tool), compare_tool_vs_no_tool (b: the tool-trained model vs the
#    no-tool-trained one), compare_svamp (SVAMP with the tool, before vs after), compare_no_tool (the twin's
#    own change) and compare_untrained (the tool and examples alone, before any training).
# 4. tool_use.json (share of episodes with a call, errors, whether answers are the tool's result, per
#    evaluation; calls and environment tokens over training), mask_check.json (the token masks of 8 episodes
#    of the trained model), inspect.txt (`rlvr inspect` of the tool run: [trained] and [env] lines), plots.
# Evaluations run on vLLM (--engine vllm, about 20 times faster than rlvr's own loop for these episodes on this
# CPU); training samples with vLLM colocated and updates in rlvr.
# Runtime, estimated from measured parts (Intel Xeon with AMX, 2 cores shared with other jobs, OMP_NUM_THREADS=1,
# bf16 auto -> bfloat16): 20 tool steps x ~38 s + start = 14 min, 20 no-tool steps x ~19 s + start = 7 min, two
# SVAMP evaluations x ~4 min, five arithmetic evaluations x ~1 min, plots, comparisons and checks ~2 min: about
# 36 minutes.
# Each part is skipped when its output exists, so a stopped run picks up where it stopped. A smoke run of every
# part in 4-5 minutes (measured): LIMIT=8 STEPS=1 bash scripts/tools_proof.sh runs/tools_smoke
set -euo pipefail
out=${1:?usage: scripts/tools_proof.sh OUTPUT_DIR}
rlvr=${RLVR:-.venv/bin/rlvr}
python=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
common=(--template boxed --reward accuracy --max-prompt-length 1024 --engine vllm --vllm-enforce-eager --bf16 auto
        --no-progress ${LIMIT:+--limit "$LIMIT"})
arithmetic=(--dataset arithmetic --split test --max-new-tokens 64 "${common[@]}")
svamp=(--dataset svamp --split test --max-new-tokens 128 "${common[@]}")
tool=(--environment calculator --environment-args '{few_shot: true}' --max-turns 3)
no_tool=(--few-shot configs/calculator_proof_no_tool.yaml)

evaluate() {  # evaluate NAME MODEL ARGS...: one evaluation into $out/NAME, unless it is there
  local name=$1 model=$2
  shift 2
  [ -f "$out/$name/summary.json" ] && return 0
  echo "== $name: $model"
  $rlvr eval --model "$model" "$@" --output "$out/$name"
}

train() {  # train NAME CONFIG: one training into $out/NAME, unless its final model is there
  local name=$1 config=$2
  [ -d "$out/$name/final" ] && return 0
  echo "== $name: $config"
  $rlvr train --config "$config" training.output_dir="$out/$name" \
    ${STEPS:+training.max_steps="$STEPS" training.log_completions_steps=1}
  $rlvr plot "$out/$name"
}

base=smollm2-135m-instruct
evaluate before_tool $base "${arithmetic[@]}" "${tool[@]}" --max-total-tokens 1024
evaluate before_no_tool $base "${arithmetic[@]}" "${no_tool[@]}"
evaluate before_plain $base "${arithmetic[@]}"
evaluate svamp_before_tool $base "${svamp[@]}" "${tool[@]}" --max-total-tokens 1536

train train_tool configs/calculator_proof.yaml
train train_no_tool configs/calculator_proof_no_tool.yaml

evaluate after_tool "$out/train_tool/final" "${arithmetic[@]}" "${tool[@]}" --max-total-tokens 1024
evaluate after_no_tool "$out/train_no_tool/final" "${arithmetic[@]}" "${no_tool[@]}"
evaluate svamp_after_tool "$out/train_tool/final" "${svamp[@]}" "${tool[@]}" --max-total-tokens 1536

compare() {  # compare NAME BEFORE AFTER
  $rlvr compare "$out/$2" "$out/$3" --json "$out/$1.json" | tee "$out/$1.txt"
}
compare compare_tool before_tool after_tool
compare compare_tool_vs_no_tool after_no_tool after_tool
compare compare_svamp svamp_before_tool svamp_after_tool
compare compare_no_tool before_no_tool after_no_tool
compare compare_untrained before_no_tool before_tool

$rlvr inspect "$out/train_tool" --last 3 > "$out/inspect.txt"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} $python scripts/tools_proof_report.py masks --model "$out/train_tool/final" \
  --output "$out/mask_check.json" > /dev/null
$python scripts/tools_proof_report.py report "$out"
