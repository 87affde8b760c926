#!/bin/sh
# Gateway overhead benchmark: added latency (gateway vs direct, same backend, same client, back
# to back) at 1,000 streamed req/s, peak streamed req/s through the gateway, the gateway's CPU per
# request, and LiteLLM's proxy on the same backend in the same run as the anchor.
#
# Build first (from the repository root):
#   cargo bench -p llmload-gateway --bench gateway --no-run
#   cargo build --release -p llmload-gateway --example gateway
# then:
#   sh bench/gateway/run.sh
#
# Knobs (environment):
#   TARGET_DIR   cargo target directory holding release/ (default $CARGO_TARGET_DIR or target)
#   SECS ROUNDS  seconds per phase and open-loop rounds (default 5 and 3)
#   RATE CONC    open-loop rate and closed-loop concurrency for direct/gateway (1000, 64)
#   LITELLM      path of the `litellm` executable (pip install 'litellm[proxy]'); unset = skip
#   LITELLM_RATE LITELLM_CONC  LiteLLM's own rate and concurrency (20, 16): it saturates far
#                below 1,000 req/s, so it is measured at a rate it can hold
#   GW_CPUS LOAD_CPUS  with 4+ cores: pin the external gateway and the load (default 0,1 / 2-)
# Everything it prints goes to stdout; keep the whole output with the numbers.
set -eu
TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-target}}
BENCH=$(ls -t "$TARGET_DIR"/release/deps/gateway-* 2>/dev/null | grep -v '\.d$' | head -1)
GW_BIN="$TARGET_DIR/release/examples/gateway"
SECS=${SECS:-5}
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-1000}
CONC=${CONC:-64}
LITELLM_RATE=${LITELLM_RATE:-20}
LITELLM_CONC=${LITELLM_CONC:-16}
BACKEND_ADDR=127.0.0.1:18000
[ -x "$BENCH" ] || { echo "bench binary not found under $TARGET_DIR/release/deps: run cargo bench -p llmload-gateway --bench gateway --no-run"; exit 2; }
WORK=$(mktemp -d)
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM

echo "== machine"
date -u
uname -srm
echo "cpus: $(nproc)"
uptime
echo "bench: $BENCH"

echo
echo "== 1. added latency and peak throughput, gateway in-process on its own 2-thread runtime"
echo "   (load client + backend share 2 other threads; on a 2-core box all of them share the 2 cores)"
BENCH_SECS=$SECS BENCH_ROUNDS=$ROUNDS BENCH_RATE=$RATE BENCH_CONC=$CONC "$BENCH"

if [ "$(nproc)" -ge 4 ] && [ -x "$GW_BIN" ]; then
  GW_CPUS=${GW_CPUS:-0,1}
  LOAD_CPUS=${LOAD_CPUS:-2-$(($(nproc) - 1))}
  echo
  echo "== 2. gateway as its own process pinned to cores $GW_CPUS, load and backend on $LOAD_CPUS"
  GATEWAY_THREADS=2 taskset -c "$GW_CPUS" "$GW_BIN" --listen 127.0.0.1:9000 \
    --backend "http://$BACKEND_ADDR" --health-interval 0.2 \
    --max-in-flight-per-backend 4096 --queue-size 4096 2>"$WORK/gateway.err" &
  GW=$!
  PIDS="$PIDS $GW"
  for conc in "$CONC" 256; do
    taskset -c "$LOAD_CPUS" env BENCH_BACKEND_ADDR=$BACKEND_ADDR \
      BENCH_GATEWAY_URL=http://127.0.0.1:9000 BENCH_GATEWAY_PID=$GW BENCH_SECS="$SECS" \
      BENCH_ROUNDS="$ROUNDS" BENCH_CLIENT_THREADS=8 BENCH_RATE="$RATE" BENCH_CONC="$conc" "$BENCH"
  done
  kill "$GW" 2>/dev/null || true
fi

if [ -n "${LITELLM:-}" ]; then
  echo
  echo "== 3. LiteLLM proxy on the same backend, same run (anchor); direct and gateway again at LiteLLM's rate"
  "$LITELLM" --version 2>/dev/null | head -1 || true
  cat >"$WORK/litellm.yaml" <<EOF
model_list:
  - model_name: mock-model
    litellm_params:
      model: openai/mock-model
      api_base: http://$BACKEND_ADDR/v1
      api_key: none
general_settings:
  master_key: sk-bench-1234
litellm_settings:
  drop_params: true
EOF
  "$LITELLM" --config "$WORK/litellm.yaml" --host 127.0.0.1 --port 4000 --num_workers 1 \
    >"$WORK/litellm.log" 2>&1 &
  LL=$!
  PIDS="$PIDS $LL"
  i=0
  until curl -sf -o /dev/null -H 'authorization: Bearer sk-bench-1234' http://127.0.0.1:4000/health/liveliness; do
    i=$((i + 1))
    [ $i -lt 120 ] || { echo "LiteLLM did not start; its log:"; tail -30 "$WORK/litellm.log"; exit 1; }
    sleep 0.5
  done
  # LiteLLM's own worker process(es) are children of the launcher: count them all.
  LLPID=$(pgrep -P "$LL" | head -1 || true)
  BENCH_BACKEND_ADDR=$BACKEND_ADDR BENCH_SECS=$SECS BENCH_ROUNDS=$ROUNDS \
    BENCH_RATE=$LITELLM_RATE BENCH_CONC=$LITELLM_CONC \
    BENCH_EXTRA_TARGET=http://127.0.0.1:4000 BENCH_EXTRA_NAME=litellm \
    BENCH_EXTRA_KEY=sk-bench-1234 BENCH_EXTRA_PID="${LLPID:-$LL}" "$BENCH"
fi
echo
uptime
