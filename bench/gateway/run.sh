#!/bin/sh
# Gateway overhead benchmark with the gateway as its own process pinned to two cores.
# Needs: the bench binary and the gateway example binary in $BIN (default bench/out), built with
#   cargo bench -p llmload-gateway --bench gateway --no-run
#   cargo build --release -p llmload-gateway --example gateway
# Cores: gateway on GW_CPUS (default 0,1), load client + test backend on LOAD_CPUS (default 2-15).
set -eu
BIN=${BIN:-bench/out}
GW_CPUS=${GW_CPUS:-0,1}
LOAD_CPUS=${LOAD_CPUS:-2-15}
SECS=${SECS:-5}
echo "cpus: $(nproc); gateway on $GW_CPUS; load on $LOAD_CPUS"
GATEWAY_THREADS=2 taskset -c "$GW_CPUS" "$BIN/gateway" --listen 127.0.0.1:9000 \
  --backend http://127.0.0.1:18000 --health-interval 0.2 \
  --max-in-flight-per-backend 4096 --queue-size 4096 2>gateway.err &
GW=$!
trap 'kill $GW 2>/dev/null || true' EXIT
run() {
  taskset -c "$LOAD_CPUS" env BENCH_BACKEND_ADDR=127.0.0.1:18000 \
    BENCH_GATEWAY_URL=http://127.0.0.1:9000 BENCH_SECS="$SECS" BENCH_CLIENT_THREADS=8 "$@" \
    "$BIN/gw-bench"
}
run BENCH_RATE=1000 BENCH_CONC=64
run BENCH_RATE=5000 BENCH_CONC=256
