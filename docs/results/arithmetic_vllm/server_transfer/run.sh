#!/usr/bin/env bash
# One rollout server, 4 training steps with the weights over HTTP, then 4 with them broadcast (gloo).
# Run from the repository after `make setup && make setup-vllm`: bash docs/results/arithmetic_vllm/server_transfer/run.sh
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
export RLVR_DATA_DIR=${RLVR_DATA_DIR:-../shared/data}
out=runs/server_cmp; mkdir -p $out
rlvr="${PY:-.venv/bin/python} -m rlvr"
port=8013
echo "== $(date -u +%T) server start"
$rlvr serve-rollouts --model smollm2-135m-instruct --dtype float32 --max-model-len 192 --kv-cache-gb 1 \
  --port $port > "$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$port/health" > /dev/null; do kill -0 $server; sleep 2; done
for transfer in http collective; do
  echo "== $(date -u +%T) server mode, weights by $transfer"
  $rlvr train --config configs/arithmetic_proof.yaml training.bf16=false training.max_steps=4 \
    training.save_steps=100 training.output_dir="$out/train_$transfer" training.overwrite_output_dir=true \
    generation.engine=vllm vllm.mode=server vllm.server_url=http://127.0.0.1:$port vllm.dtype=float32 \
    vllm.weight_transfer=$transfer > "$out/train_$transfer.log" 2>&1
  curl -s "http://127.0.0.1:$port/health" | tee "$out/health_$transfer.json"; echo
done
echo "== $(date -u +%T) done"
