#!/usr/bin/env bash
# Engine benchmarks on a quiet machine, client and server pinned together on 2 cores
# (taskset -c 0,1), as the bars of issue 2 ask. Binaries come prebuilt in bench/out/bin
# (a release build, stripped), so the machine needs no toolchain or network.
#   bench/engine/device.sh [SECONDS]
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${B:-bench/out/bin}
S=${1:-10}
export LD_LIBRARY_PATH=$PWD/$B/lib
out=$(mktemp -d)
pin="taskset -c 0,1"
nproc; lscpu | grep "Model name"
summ() { python3 - "$1" <<'PY'
import json,sys
r=json.load(open(sys.argv[1]))
for b in r["benchmarks"]:
    m=b["metrics"]; lag=(m.get("generator_lag_s") or {}); dd=m["dispatch_delay_s"]
    print(f"  {b['profile']['kind']} c={b['profile']['concurrency']} rate={b['profile']['rate']}: {b['throughput']['requests_per_s']:.0f} req/s, {b['requests']['completed']} ok, {b['requests']['errored']} err; ttft p50 {m['ttft_s']['p50']*1e3:.3f} ms p99 {m['ttft_s']['p99']*1e3:.3f} ms; dispatch_delay p50 {dd['p50']*1e3:.3f} p99 {dd['p99']*1e3:.3f} max {dd['max']*1e3:.3f} ms; generator lag p99 {lag.get('p99',0)*1e3:.3f} ms")
PY
}
$pin $B/fast_server --port 18716 --tokens 16 >/dev/null 2>&1 & F16=$!
$pin $B/fast_server --port 18764 --tokens 64 >/dev/null 2>&1 & F64=$!
sleep 0.5
echo "== streamed req/s, 16 tokens, client+server on 2 cores"
for c in 64 256; do
  $pin $B/llmload run --target http://127.0.0.1:18716 --concurrency $c --max-seconds $S --quiet --no-report \
    --no-server-metrics --no-gpu --prompt-tokens 16 --output-tokens 16 --out $out/c$c >/dev/null 2>&1
  summ $out/c$c/results.json
done
echo "== wrk, non-streaming, same server, 64 connections"
cat > $out/post.lua <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"fast-model","messages":[{"role":"user","content":"hi"}],"max_tokens":16,"stream":false}'
LUA
$pin $B/wrk -t1 -c64 -d${S}s -s $out/post.lua http://127.0.0.1:18716/v1/chat/completions 2>&1 | grep -E "Requests/sec|Latency|Non-2xx"
$pin $B/wrk -t1 -c64 -d${S}s -s $out/post.lua http://127.0.0.1:18716/v1/chat/completions 2>&1 | grep -E "Requests/sec"
echo "== llmload non-streaming, 64 workers (same as wrk), runtime of 2 threads (default here) and of 1"
for t in 2 1; do
  $pin $B/llmload run --threads $t --target http://127.0.0.1:18716 --concurrency 64 --max-seconds $S --quiet --no-report \
    --no-server-metrics --no-gpu --no-stream --prompt-tokens 16 --output-tokens 16 --out $out/ns$t >/dev/null 2>&1
  summ $out/ns$t/results.json
done
echo "== poisson 1000 req/s, ${S}x3 s"
$pin $B/llmload run --target http://127.0.0.1:18716 --profile poisson --rate 1000 --max-seconds $((S*3)) --quiet --no-report \
  --no-server-metrics --no-gpu --prompt-tokens 16 --output-tokens 16 --out $out/p >/dev/null 2>&1
summ $out/p/results.json
echo "== CPU seconds per 1,000 streamed requests of 64 tokens (5,000 requests, c=64)"
( $pin $B/llmload run --target http://127.0.0.1:18764 --concurrency 64 --max-requests 5000 --quiet --no-report \
  --no-server-metrics --no-gpu --prompt-tokens 16 --output-tokens 64 --out $out/cpu >/dev/null 2>&1; times ) 2>&1 | tail -1
summ $out/cpu/results.json
kill $F16 $F64
echo "== scraping every 250 ms during poisson 1000 req/s against the simulator (sim on cores 2-5)"
taskset -c 2-5 $B/llmload sim --port 18800 --speedup 20 >/dev/null 2>&1 & SIM=$!
sleep 1
for mode in "--no-server-metrics" "--scrape-interval 0.25"; do
  $pin $B/llmload run --target http://127.0.0.1:18800 --profile poisson --rate 1000 --max-seconds $S --quiet --no-report \
    --no-gpu $mode --prompt-tokens 16 --output-tokens 16 --out $out/s$RANDOM >/dev/null 2>&1
done
for d in $out/s*; do echo " $(python3 -c "import json;r=json.load(open('$d/results.json'));print('scraped' if r['benchmarks'][0]['server'] else 'no scraping')")"; summ $d/results.json; done
kill $SIM
rm -rf "$out"
