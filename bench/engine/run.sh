#!/usr/bin/env bash
# Engine benchmarks of issue 2 (numbers go to docs/performance.md):
#   1. streamed requests/s of `llmload run` against the minimal server (16 tokens per answer),
#      and wrk's non-streaming rate against the same server;
#   2. Poisson at 1,000 req/s for 60 s: dispatch delay / generator lag p99;
#   3. client CPU-seconds per 1,000 streamed requests of 64 tokens.
# Usage: bench/engine/run.sh [quick]   (quick: shorter runs)
set -euo pipefail
cd "$(dirname "$0")/../.."
quick=${1:-}
secs=20; pois=60
[ "$quick" = quick ] && { secs=8; pois=20; }
out=bench/out/engine; mkdir -p "$out"
cargo build --release -q -p llmload -p llmload-client --features llmload-client/testkit --example fast_server
bin=target/release/llmload
fast=target/release/examples/fast_server

port16=18716; port64=18764
$fast --port $port16 --tokens 16 >/dev/null 2>&1 & p1=$!
$fast --port $port64 --tokens 64 >/dev/null 2>&1 & p2=$!
trap 'kill $p1 $p2 2>/dev/null || true' EXIT
sleep 0.5

echo "== 1. llmload streamed req/s, 16 tokens, concurrency 64 and 256 (${secs}s each)"
for c in 64 256; do
  $bin run --target http://127.0.0.1:$port16 --concurrency $c --max-seconds $secs --quiet \
    --prompt-tokens 16 --output-tokens 16 --out "$out/c$c" > "$out/c$c.txt"
  python3 - "$out/c$c/results.json" <<'PY'
import json,sys
b=json.load(open(sys.argv[1]))["benchmarks"][0]
print(f"  c={b['profile']['concurrency']}: {b['throughput']['requests_per_s']:.0f} req/s, {b['requests']['completed']} completed, {b['requests']['errored']} errors, ttft p50 {b['metrics']['ttft_s']['p50']*1e3:.3f} ms")
PY
done
if command -v wrk >/dev/null; then
  echo "== wrk (non-streaming POST, same server), 64 connections, ${secs}s"
  cat > "$out/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"fast","messages":[{"role":"user","content":"hi"}],"max_tokens":16,"stream":false}'
LUA
  wrk -t2 -c64 -d${secs}s -s "$out/post.lua" http://127.0.0.1:$port16/v1/chat/completions | tee "$out/wrk.txt" | grep -E "Requests/sec|Latency"
fi

echo "== 2. Poisson 1000 req/s for ${pois}s"
$bin run --target http://127.0.0.1:$port16 --profile poisson --rate 1000 --max-seconds $pois --quiet \
  --prompt-tokens 16 --output-tokens 16 --out "$out/poisson" > "$out/poisson.txt"
python3 - "$out/poisson/results.json" <<'PY'
import json,sys
b=json.load(open(sys.argv[1]))["benchmarks"][0]
m=b["metrics"]; lag=m.get("generator_lag_s") or {}
print(f"  achieved {b['throughput']['requests_per_s']:.1f} req/s; dispatch_delay p50 {m['dispatch_delay_s']['p50']*1e3:.3f} ms p99 {m['dispatch_delay_s']['p99']*1e3:.3f} ms max {m['dispatch_delay_s']['max']*1e3:.3f} ms; generator lag p99 {lag.get('p99',0)*1e3:.3f} ms")
PY

echo "== 3. client CPU-seconds per 1,000 streamed requests of 64 tokens (5,000 requests, c=64)"
/usr/bin/time -f "%U %S" -o "$out/cpu.txt" $bin run --target http://127.0.0.1:$port64 --concurrency 64 \
  --max-requests 5000 --quiet --prompt-tokens 16 --output-tokens 64 --out "$out/cpu" > /dev/null
read u s < "$out/cpu.txt"
python3 -c "print(f'  llmload: {($u+$s)/5:.3f} CPU-s per 1,000 requests (user {$u}s sys {$s}s for 5,000)')"
