#!/usr/bin/env bash
# llmload's client against wrk on the same minimal server, back to back.
#
#   crates/llmload-client/scripts/wrk_compare.sh [ROUNDS] [SECS]
#
# Needs release builds of the bench and the server:
#   cargo build --release -p llmload-client --features testkit --bench client --example fast_server
# BENCH=path/to/bench-binary and SERVER=path/to/fast_server override the binaries (to compare
# two builds); PORT (default 18084). Each round: wrk -t1 -c128 (GET, answered with the same JSON
# body), then llmload non-streaming, then llmload streaming (16 tokens), each at 64/128/256
# workers; wrk's CPU per 1,000 requests is printed next to llmload's (cpu_s/1000req column,
# client process only when the server is external). The load average is printed before each measurement: on a shared machine, compare
# only numbers taken back to back.
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-3}
PORT=${PORT:-18084}
T=${CARGO_TARGET_DIR:-target}/release
SERVER=${SERVER:-$T/examples/fast_server}
BENCH=${BENCH:-$(ls -t "$T"/deps/client-* | grep -v '\.d$' | head -1)}
"$SERVER" --port "$PORT" --threads 1 >/dev/null &
SPID=$!
trap 'kill $SPID' EXIT
sleep 0.5
URL=http://127.0.0.1:$PORT
load() { cut -d' ' -f1-3 /proc/loadavg; }
for r in $(seq "$ROUNDS"); do
  echo "## round $r"
  echo "load $(load)"
  # wrk's own CPU per request too (user+system seconds from /usr/bin/time).
  /usr/bin/time -f "%U %S" -o /tmp/wrk_compare_time.$$ \
    wrk -t1 -c128 -d"${SECS}s" "$URL/v1/chat/completions" >/tmp/wrk_compare_out.$$
  grep -E 'Requests/sec|Non-2xx|errors' /tmp/wrk_compare_out.$$ || true
  REQS=$(grep -oE '^ *[0-9]+ requests in' /tmp/wrk_compare_out.$$ | grep -oE '[0-9]+')
  awk -v r="$REQS" '{printf "wrk cpu_s/1000req %.3f\n", ($1+$2)/(r/1000)}' /tmp/wrk_compare_time.$$
  rm -f /tmp/wrk_compare_time.$$ /tmp/wrk_compare_out.$$
  echo "load $(load)"
  LLMLOAD_BENCH_TARGET=$URL LLMLOAD_BENCH_NO_STREAM=1 "$BENCH" throughput "$SECS" | tail -3
  echo "load $(load)"
  LLMLOAD_BENCH_TARGET=$URL "$BENCH" throughput "$SECS" | tail -3
done
