# Shared by the wrk comparisons (wrk_ratio.sh, ab.sh); sourced, not run. Expects B (binaries),
# PIN (a prefix such as "taskset -c 0,1", or empty) and port. Sets out (a scratch directory,
# removed at exit) and starts the minimal server, killed at exit; writes $out/post.lua, wrk's
# smallest chat request ("hi").
export LD_LIBRARY_PATH=$PWD/$B/lib
out=$(mktemp -d)
$PIN $B/fast_server --port $port --tokens 16 >/dev/null 2>&1 & F=$!
trap 'kill $F 2>/dev/null; rm -rf $out' EXIT
sleep 0.5
cat > $out/post.lua <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"fast-model","messages":[{"role":"user","content":"hi"}],"max_tokens":16,"stream":false}'
LUA

# One non-streaming llmload run of $S seconds at 64 workers against the server; prints its
# rate in req/s (0 if it failed).   llmload_rate BINARY [MORE LLMLOAD ARGS...]
llmload_rate() {
  local bin=$1; shift
  rm -rf "$out/run"
  $PIN $bin run --target http://127.0.0.1:$port --concurrency 64 --max-seconds $S --quiet --no-report \
    --no-server-metrics --no-gpu --no-stream --prompt-tokens 16 --output-tokens 16 --out "$out/run" "$@" >/dev/null 2>&1
  python3 -c "import json;print(int(json.load(open('$out/run/results.json'))['benchmarks'][0]['throughput']['requests_per_s']))" 2>/dev/null || echo 0
}
