#!/usr/bin/env bash
# The rollout-engine measurements of docs/benchmarks.md ("Rollout engines") and docs/results/arithmetic_vllm/,
# one after the other on a quiet machine. Needs `make setup-vllm`. Usage:
#   bash scripts/rollout_measurements.sh [OUT]         # default OUT: runs/rollouts
# Steps (each prints its start time): the benchmark with every engine; rlvr eval on 200 GSM8K test problems
# with each engine; 10 training steps with vllm.mode=server (the server in its own process), the weights sent
# over HTTP, then 10 more with them broadcast (vllm.weight_transfer=collective, gloo here). The 50-step
# colocate proof run is separate: `rlvr train --config configs/arithmetic_proof.yaml generation.engine=vllm
# training.bf16=false`, then `rlvr eval` as in docs/results/arithmetic_vllm/README.md.
set -euo pipefail
out=${1:-runs/rollouts}
py=${PY:-.venv/bin/python}
rlvr="$py -m rlvr"
mkdir -p "$out"
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }

# float32 only: without AVX-512 a bfloat16 matrix product runs ~7x slower than float32 here (README)
stamp "benchmark: rlvr (hf), rlvr (vllm), TRL, TRL with use_vllm"
$py benchmarks/grpo_step.py --quick --dtypes float32 --systems rlvr,rlvr-vllm,trl,trl-vllm --json "$out/grpo_step.json" \
  | tee "$out/grpo_step.txt"

for engine in hf vllm; do
  stamp "rlvr eval, 200 GSM8K test problems, engine $engine"
  started=$(date +%s)
  $rlvr eval --model smollm2-135m-instruct --dataset gsm8k --split test --limit 200 --max-new-tokens 256 \
    --engine "$engine" --no-progress --output "$out/eval_$engine" --overwrite  # a rerun measures again
  echo "wall seconds, start-up included: $(( $(date +%s) - started ))" | tee "$out/eval_$engine/wall.txt"
done

stamp "server mode: rlvr serve-rollouts in its own process, 10 training steps"
port=8011
$rlvr serve-rollouts --model smollm2-135m-instruct --dtype float32 --max-model-len 192 --kv-cache-gb 1 \
  --port $port > "$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$port/health" > /dev/null; do
  kill -0 $server || { tail -20 "$out/server.log"; exit 1; }
  sleep 2
done
stamp "server ready"
for transfer in http collective; do
  stamp "server mode, weights by $transfer"
  $rlvr train --config configs/arithmetic_proof.yaml training.bf16=false training.max_steps=10 \
    training.save_steps=5 training.output_dir="$out/server_train_$transfer" training.overwrite_output_dir=true \
    generation.engine=vllm vllm.mode=server vllm.server_url=http://127.0.0.1:$port vllm.dtype=float32 \
    vllm.weight_transfer=$transfer
  curl -s "http://127.0.0.1:$port/health" | tee "$out/server_health_$transfer.json"; echo
done
stamp "done"
