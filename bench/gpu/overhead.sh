#!/usr/bin/env bash
# The overhead scenario on real vLLM with a real model, for a machine with an NVIDIA GPU (not part of
# CI). Starts `vllm serve MODEL` on one GPU, waits for /health, then runs the system against a direct
# client at equal concurrency on it (`npm run bench -- --scenario overhead --engine-url ...`) and prints
# the ratio. See bench/gpu/README.md.
#
#   bench/gpu/overhead.sh MODEL [GPU_INDEX] [CONCURRENCY] [REQUESTS]
#   bench/gpu/overhead.sh meta-llama/Llama-3.1-8B-Instruct 0 256 10000
#
# Environment (all optional):
#   PORT=8000            where vLLM listens (127.0.0.1)
#   RUNS=3               runs (each: the direct client, then the system)
#   MAX_TOKENS=          every answer this many tokens (default: 100 to 300 by line, mean 200; ignore_eos)
#   SERVED_NAME=         --served-model-name for vLLM (default: MODEL, as vLLM names it)
#   VLLM_ARGS=           more vLLM flags, e.g. "--max-model-len 8192 --gpu-memory-utilization 0.9"
#   VLLM_SERVE="vllm serve"   the command that starts vLLM; it is given MODEL, then the flags
#   ENGINE_URL=          a vLLM already running: start none (MODEL is then the name it serves)
#   START_TIMEOUT=1200   seconds to wait for /health (a first start downloads the weights)
#   OUT=.data/bench-gpu  where the report goes (benchmarks.md, benchmarks.json, vllm.log)
#   SKIP_GPU_CHECK=1     do not ask nvidia-smi for the GPU (to try the script without one)
set -euo pipefail

usage() {
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && usage 0
[[ $# -lt 1 || $# -gt 4 ]] && usage 2

MODEL=$1
GPU=${2:-0}
CONCURRENCY=${3:-256}
REQUESTS=${4:-10000}
PORT=${PORT:-8000}
RUNS=${RUNS:-3}
START_TIMEOUT=${START_TIMEOUT:-1200}
SERVED_NAME=${SERVED_NAME:-$MODEL}
VLLM_SERVE=${VLLM_SERVE:-vllm serve}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${OUT:-$ROOT/.data/bench-gpu}

for n in "$GPU" "$CONCURRENCY" "$REQUESTS" "$RUNS" "$PORT"; do
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "not a whole number: $n" >&2; usage 2; }
done
command -v npm >/dev/null || { echo "npm is needed (Node 20 or newer), and npm ci run in $ROOT" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }
mkdir -p "$OUT"

VLLM_PID=
stop_vllm() {
  if [[ -n "$VLLM_PID" ]] && kill -0 "$VLLM_PID" 2>/dev/null; then
    echo "stopping vLLM (pid $VLLM_PID)"
    # Its own process group (setsid): the API server and its engine processes together.
    kill -TERM -- "-$VLLM_PID" 2>/dev/null || kill -TERM "$VLLM_PID" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$VLLM_PID" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$VLLM_PID" 2>/dev/null || true
  fi
}
trap stop_vllm EXIT
trap 'exit 130' INT TERM

if [[ -n "${ENGINE_URL:-}" ]]; then
  URL=${ENGINE_URL%/}
  URL=${URL%/v1}
  echo "using the vLLM at $URL (model $SERVED_NAME); starting none"
else
  if [[ "${SKIP_GPU_CHECK:-}" != 1 ]]; then
    command -v nvidia-smi >/dev/null || { echo "nvidia-smi not found: this script is for a machine with an NVIDIA GPU (SKIP_GPU_CHECK=1 to try it anyway)" >&2; exit 1; }
    nvidia-smi -i "$GPU" --query-gpu=index,name,memory.total --format=csv,noheader || { echo "no GPU $GPU" >&2; exit 1; }
  fi
  if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/health" 2>/dev/null; then
    echo "something already answers on port $PORT: stop it, or set PORT (or ENGINE_URL to use it)" >&2
    exit 1
  fi
  URL="http://127.0.0.1:$PORT"
  served=()
  [[ "$SERVED_NAME" != "$MODEL" ]] && served=(--served-model-name "$SERVED_NAME")
  # shellcheck disable=SC2086 # VLLM_SERVE and VLLM_ARGS are word lists on purpose
  CMD=($VLLM_SERVE "$MODEL" --host 127.0.0.1 --port "$PORT" --max-num-seqs "$CONCURRENCY" --enable-prompt-tokens-details ${served[@]+"${served[@]}"} ${VLLM_ARGS:-})
  echo "starting on GPU $GPU: ${CMD[*]}"
  echo "(its output: $OUT/vllm.log)"
  CUDA_VISIBLE_DEVICES=$GPU setsid "${CMD[@]}" >"$OUT/vllm.log" 2>&1 &
  VLLM_PID=$!
  started=$(date +%s)
  until curl -fsS -o /dev/null "$URL/health" 2>/dev/null; do
    if ! kill -0 "$VLLM_PID" 2>/dev/null; then
      echo "vLLM exited before it was healthy; the end of $OUT/vllm.log:" >&2
      tail -n 30 "$OUT/vllm.log" >&2
      exit 1
    fi
    if (($(date +%s) - started > START_TIMEOUT)); then
      echo "vLLM was not healthy after ${START_TIMEOUT}s; the end of $OUT/vllm.log:" >&2
      tail -n 30 "$OUT/vllm.log" >&2
      exit 1
    fi
    sleep 2
  done
  echo "vLLM healthy after $(($(date +%s) - started))s"
fi

args=(--scenario overhead --engine-url "$URL" --model "$SERVED_NAME" --concurrency "$CONCURRENCY" --requests "$REQUESTS" --runs "$RUNS" --out "$OUT")
[[ -n "${MAX_TOKENS:-}" ]] && args+=(--max-tokens "$MAX_TOKENS")
echo "npm run bench -- ${args[*]}"
(cd "$ROOT" && npm run --silent bench -- "${args[@]}")

node -e '
const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).scenarios.find((s) => s.name === "overhead");
const m = (name) => r.metrics.find((x) => x.name === name);
const ratio = m("throughput vs direct client");
const f = (x) => x.toFixed(3);
console.log("");
console.log(`system vs direct client, ${process.argv[2]} requests at ${process.argv[3]} concurrent, model ${process.argv[4]}:`);
console.log(`  ratio per run: ${ratio.values.map(f).join(", ")}`);
console.log(`  median ratio:  ${f(ratio.median)}  (direct ${m("direct client time").median.toFixed(1)} s, system ${m("system time, create to completed").median.toFixed(1)} s)`);
console.log(`  report: ${process.argv[5]}`);
' "$OUT/benchmarks.json" "$REQUESTS" "$CONCURRENCY" "$SERVED_NAME" "$OUT/benchmarks.md"
