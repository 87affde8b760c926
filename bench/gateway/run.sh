#!/bin/sh
# Gateway overhead benchmark: added latency (gateway vs direct, same backend, same client, back
# to back) at 1,000 streamed req/s, peak streamed req/s through the gateway, the gateway's CPU per
# request, and LiteLLM's proxy on the same backend in the same run as the anchor.
#
# Build first (from the repository root):
#   cargo bench -p llmload-gateway --bench gateway --no-run
#   cargo build --release -p llmload-gateway --example gateway
#   cargo build --release -p llmload
#   cargo build --release -p llmload-client --features testkit --example fast_server
#   pip install 'litellm[proxy]'
# then (every section; docs/performance/gateway.md has the numbers and how to read them):
#   SIM_RATE=1000 SIM_SPEEDUP=50 SIM_TOKENS=16 LITELLM=$(which litellm) \
#     LLMLOAD=target/release/llmload FAST_SERVER=target/release/examples/fast_server \
#     sh bench/gateway/run.sh 2>&1 | tee gateway-bench.txt
#
# Knobs (environment):
#   TARGET_DIR   cargo target directory holding release/ (default $CARGO_TARGET_DIR or target)
#   SECS ROUNDS  seconds per phase and open-loop rounds (default 5 and 3)
#   RATE CONC    open-loop rate and closed-loop concurrency for direct/gateway (1000, 64)
#   LITELLM      path of the `litellm` executable (pip install 'litellm[proxy]'); unset = skip
#   LITELLM_RATE LITELLM_CONC  LiteLLM's own rate and concurrency (10, 8): it saturates far
#                below 1,000 req/s, so it is measured at a rate it can hold
#   GW_CPUS LOAD_CPUS  with 4+ cores: pin the external gateway and the load (default 0,1 / 2-)
#   LLMLOAD FAST_SERVER  paths of the release `llmload` binary and llmload-client's
#                `fast_server` example: section 4 measures with `llmload run` as the client
#                (constant RATE, direct vs gateway back to back, ROUNDS times) against
#                fast_server, the gateway as its own process; LiteLLM there too when LITELLM is set
#   SIM_SPEEDUP SIM_RATE SIM_TOKENS  section 6: `llmload sim --speedup` as the backend (10, 100
#                req/s, 64 tokens), the same comparison on the simulator (needs LLMLOAD)
#   SECTIONS     which sections to run (default "1 2 3 4 5 6")
#   NICE         niceness for every process of the bench (e.g. -15 on a box shared with builds;
#                needs root; default 0)
# Everything it prints goes to stdout; keep the whole output with the numbers.
set -eu
NICE=${NICE:-0}
SECTIONS=${SECTIONS:-1 2 3 4 5 6}
want() { case " $SECTIONS " in *" $1 "*) return 0 ;; esac; return 1; }
N="nice -n $NICE"
TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-target}}
BENCH=$(ls -t "$TARGET_DIR"/release/deps/gateway-* 2>/dev/null | grep -v '\.d$' | head -1)
GW_BIN="$TARGET_DIR/release/examples/gateway"
SECS=${SECS:-5}
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-1000}
CONC=${CONC:-64}
LITELLM_RATE=${LITELLM_RATE:-10}
LITELLM_CONC=${LITELLM_CONC:-8}
BACKEND_ADDR=127.0.0.1:18000
[ -x "$BENCH" ] || { echo "bench binary not found under $TARGET_DIR/release/deps: run cargo bench -p llmload-gateway --bench gateway --no-run"; exit 2; }
WORK=$(mktemp -d)
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
# Starts the LiteLLM proxy on port 4000 with config $1 (log $2), waits until it is live, and
# leaves its pid in LL_PID.
start_litellm() {
  $N "$LITELLM" --config "$1" --host 127.0.0.1 --port 4000 --num_workers 1 >"$2" 2>&1 &
  LL_PID=$!
  PIDS="$PIDS $LL_PID"
  local i=0
  until curl -sf -o /dev/null http://127.0.0.1:4000/health/liveliness; do
    i=$((i + 1))
    [ $i -lt 240 ] || { echo "LiteLLM did not start; its log:"; tail -30 "$2"; exit 1; }
    sleep 0.5
  done
}
trap cleanup EXIT INT TERM

echo "== machine"
date -u
uname -srm
echo "cpus: $(nproc)"
uptime
echo "bench: $BENCH"

if want 1; then
echo
echo "== 1. added latency and peak throughput, gateway in-process on its own 2-thread runtime"
echo "   (load client + backend share 2 other threads; on a 2-core box all of them share the 2 cores)"
BENCH_SECS=$SECS BENCH_ROUNDS=$ROUNDS BENCH_RATE=$RATE BENCH_CONC=$CONC $N "$BENCH"
fi

if want 2 && [ "$(nproc)" -ge 4 ] && [ -x "$GW_BIN" ]; then
  GW_CPUS=${GW_CPUS:-0,1}
  LOAD_CPUS=${LOAD_CPUS:-2-$(($(nproc) - 1))}
  echo
  echo "== 2. gateway as its own process pinned to cores $GW_CPUS, load and backend on $LOAD_CPUS"
  GATEWAY_THREADS=2 $N taskset -c "$GW_CPUS" "$GW_BIN" --listen 127.0.0.1:9000 \
    --backend "http://$BACKEND_ADDR" --health-interval 0.2 \
    --max-in-flight-per-backend 4096 --queue-size 4096 2>"$WORK/gateway.err" &
  GW=$!
  PIDS="$PIDS $GW"
  for conc in "$CONC" 256; do
    $N taskset -c "$LOAD_CPUS" env BENCH_BACKEND_ADDR=$BACKEND_ADDR \
      BENCH_GATEWAY_URL=http://127.0.0.1:9000 BENCH_GATEWAY_PID=$GW BENCH_SECS="$SECS" \
      BENCH_ROUNDS="$ROUNDS" BENCH_CLIENT_THREADS=8 BENCH_RATE="$RATE" BENCH_CONC="$conc" "$BENCH"
  done
  kill "$GW" 2>/dev/null || true
fi

if [ -n "${LITELLM:-}" ]; then
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
fi

if want 3 && [ -n "${LITELLM:-}" ]; then
  echo
  echo "== 3. LiteLLM proxy on the same backend, same run (anchor); direct and gateway again at LiteLLM's rate"
  "$LITELLM" --version 2>/dev/null | head -1 || true
  start_litellm "$WORK/litellm.yaml" "$WORK/litellm.log"
  LL=$LL_PID
  # With one worker, LiteLLM serves from the launched process itself.
  BENCH_BACKEND_ADDR=$BACKEND_ADDR BENCH_SECS=$SECS BENCH_ROUNDS=$ROUNDS \
    BENCH_RATE=$LITELLM_RATE BENCH_CONC=$LITELLM_CONC \
    BENCH_EXTRA_TARGET=http://127.0.0.1:4000 BENCH_EXTRA_NAME=litellm \
    BENCH_EXTRA_KEY=sk-bench-1234 BENCH_EXTRA_PID="$LL" $N "$BENCH"
  kill "$LL" 2>/dev/null || true
  sleep 1
fi

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }


if want 4 && [ -n "${LLMLOAD:-}" ] && [ -n "${FAST_SERVER:-}" ] && [ -x "$GW_BIN" ]; then
  TOKENS=${TOKENS:-16}
  NREQ=${NREQ:-$((RATE * SECS))}
  echo
  echo "== 4. llmload run (constant $RATE req/s, $NREQ requests, 200 warm-up) against fast_server ($TOKENS tokens), direct vs gateway (own process, 2 threads), $ROUNDS rounds"
  $N "$FAST_SERVER" --port 18100 --tokens "$TOKENS" --threads 1 >"$WORK/fast.log" 2>&1 &
  FS=$!
  PIDS="$PIDS $FS"
  i=0
  until curl -sf -o /dev/null http://127.0.0.1:18100/v1/models; do
    i=$((i + 1))
    [ $i -lt 100 ] || { echo "fast_server did not start"; cat "$WORK/fast.log"; exit 1; }
    sleep 0.1
  done
  GATEWAY_THREADS=2 $N "$GW_BIN" --listen 127.0.0.1:19100 --backend http://127.0.0.1:18100 \
    --max-in-flight-per-backend 4096 --queue-size 4096 2>"$WORK/gw4.err" &
  GW4=$!
  PIDS="$PIDS $GW4"
  i=0
  until curl -sf http://127.0.0.1:19100/v1/models 2>/dev/null | grep -q fast-model; do
    i=$((i + 1))
    [ $i -lt 100 ] || { echo "the gateway does not see fast_server; its log:"; cat "$WORK/gw4.err"; exit 1; }
    sleep 0.1
  done
  lrun() { # name port rate n [extra args]
    name=$1; port=$2; rate=$3; n=$4; shift 4
    $N "$LLMLOAD" run --target "http://127.0.0.1:$port" --model fast-model --profile constant --rate "$rate" \
      --max-requests "$n" --warmup "${WARM:-200}req" --output-tokens "$TOKENS" --prompt-tokens 32 \
      --no-server-metrics --no-report --quiet --out "$WORK/$name" "$@" >/dev/null 2>"$WORK/$name.err" \
      || { echo "llmload run against $name failed:"; cat "$WORK/$name.err"; }
  }
  ARGS=""
  r=0
  while [ $r -lt "$ROUNDS" ]; do
    lrun "direct-$r" 18100 "$RATE" "$NREQ"
    c0=$(cpu_ticks "$GW4")
    lrun "gateway-$r" 19100 "$RATE" "$NREQ"
    c1=$(cpu_ticks "$GW4")
    echo "round $r: gateway process CPU $(( (c1 - c0) * 10 )) ms for $NREQ requests: $(( (c1 - c0) * 10000 / NREQ )) us/request; load $(cut -d' ' -f1-3 /proc/loadavg)"
    ARGS="$ARGS direct=$WORK/direct-$r gateway=$WORK/gateway-$r"
    r=$((r + 1))
  done
  python3 "$(dirname "$0")/compare.py" direct $ARGS || true
  echo
  echo "== 4b. llmload run closed loop (--concurrency), $((RATE * SECS * 2)) requests, direct vs gateway: peak streamed req/s"
  for conc in 8 "$CONC"; do
    for t in direct:18100 gateway:19100; do
      name=${t%%:*}; port=${t##*:}
      c0=$(cpu_ticks "$GW4")
      $N "$LLMLOAD" run --target "http://127.0.0.1:$port" --model fast-model --concurrency "$conc" \
        --max-requests $((RATE * SECS * 2)) --warmup 500req --output-tokens "$TOKENS" --prompt-tokens 32 \
        --no-server-metrics --no-report --quiet --out "$WORK/c-$name-$conc" >/dev/null 2>"$WORK/c.err" \
        || { echo "llmload run failed:"; cat "$WORK/c.err"; }
      c1=$(cpu_ticks "$GW4")
      python3 - "$WORK/c-$name-$conc/results.json" "$name" "$conc" "$((c1 - c0))" <<'EOF' || true
import json, sys
b = json.load(open(sys.argv[1]))["benchmarks"][0]
m = b["metrics"]["ttft_s"]
ticks = int(sys.argv[4])
n = b["requests"]["completed"] + b["requests"]["outside_window"]
cpu = f", gateway CPU {ticks * 10 / n * 1000:.0f} us/request" if sys.argv[2] == "gateway" and n else ""
print(f"{sys.argv[2]:<8} conc {sys.argv[3]:>4}: {b['throughput']['requests_per_s']:>7.0f} streamed req/s,"
      f" ttft p50 {m['p50'] * 1e3:.3f} ms p99 {m['p99'] * 1e3:.3f} ms, errors {b['requests']['errored']}{cpu}")
EOF
    done
  done
  echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
  if want 5 && [ -n "${LITELLM:-}" ]; then
    echo
    echo "== 5. the same at LiteLLM's rate ($LITELLM_RATE req/s): direct, gateway, LiteLLM (same fast_server)"
    sed "s/mock-model/fast-model/g; s#$BACKEND_ADDR#127.0.0.1:18100#" "$WORK/litellm.yaml" >"$WORK/litellm4.yaml"
    start_litellm "$WORK/litellm4.yaml" "$WORK/litellm4.log"
    LL4=$LL_PID
    LN=$((LITELLM_RATE * SECS * 2 + 20))
    WARM=20
    lrun direct-l 18100 "$LITELLM_RATE" "$LN"
    lrun gateway-l 19100 "$LITELLM_RATE" "$LN"
    c0=$(cpu_ticks "$LL4")
    lrun litellm-l 4000 "$LITELLM_RATE" "$LN" --api-key sk-bench-1234
    c1=$(cpu_ticks "$LL4")
    echo "LiteLLM process CPU $(( (c1 - c0) * 10 )) ms for $LN requests: $(( (c1 - c0) * 10000 / LN )) us/request"
    python3 "$(dirname "$0")/compare.py" direct direct="$WORK/direct-l" gateway="$WORK/gateway-l" litellm="$WORK/litellm-l" || true
    kill "$LL4" 2>/dev/null || true
  fi
  kill "$GW4" "$FS" 2>/dev/null || true
fi

if want 6 && [ -n "${LLMLOAD:-}" ] && [ -x "$GW_BIN" ]; then
  SIM_SPEEDUP=${SIM_SPEEDUP:-10}
  SIM_RATE=${SIM_RATE:-100}
  SIM_TOKENS=${SIM_TOKENS:-64}
  SIM_N=${SIM_N:-$((SIM_RATE * SECS))}
  echo
  echo "== 6. llmload run (constant $SIM_RATE req/s, $SIM_N requests, 50 warm-up, $SIM_TOKENS output tokens) against llmload sim --speedup $SIM_SPEEDUP, direct vs gateway, $ROUNDS rounds"
  $N "$LLMLOAD" sim --port 18200 --speedup "$SIM_SPEEDUP" --seed 1 >"$WORK/sim.log" 2>&1 &
  SIM=$!
  PIDS="$PIDS $SIM"
  i=0
  until curl -sf -o /dev/null http://127.0.0.1:18200/health; do
    i=$((i + 1))
    [ $i -lt 200 ] || { echo "llmload sim did not start"; cat "$WORK/sim.log"; exit 1; }
    sleep 0.1
  done
  GATEWAY_THREADS=2 $N "$GW_BIN" --listen 127.0.0.1:19200 --backend http://127.0.0.1:18200 \
    --max-in-flight-per-backend 4096 --queue-size 4096 2>"$WORK/gw6.err" &
  GW6=$!
  PIDS="$PIDS $GW6"
  i=0
  until curl -sf -o /dev/null http://127.0.0.1:19200/health; do
    i=$((i + 1))
    [ $i -lt 100 ] || { echo "the gateway does not see the simulator"; cat "$WORK/gw6.err"; exit 1; }
    sleep 0.1
  done
  ARGS=""
  r=0
  while [ $r -lt "$ROUNDS" ]; do
    for t in direct:18200 gateway:19200; do
      name=${t%%:*}; port=${t##*:}
      $N "$LLMLOAD" run --target "http://127.0.0.1:$port" --profile constant --rate "$SIM_RATE" \
        --max-requests "$SIM_N" --warmup 50req --output-tokens "$SIM_TOKENS" --prompt-tokens 128 \
        --no-server-metrics --no-report --quiet --out "$WORK/s-$name-$r" >/dev/null 2>"$WORK/s.err" \
        || { echo "llmload run against $name failed:"; cat "$WORK/s.err"; }
      ARGS="$ARGS $name=$WORK/s-$name-$r"
    done
    r=$((r + 1))
  done
  python3 "$(dirname "$0")/compare.py" direct $ARGS || true
  echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
  kill "$GW6" "$SIM" 2>/dev/null || true
fi
echo
uptime
