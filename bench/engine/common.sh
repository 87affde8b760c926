# Shared by the wrk comparisons (wrk_ratio.sh, ab.sh); sourced, not run. Expects B (binaries),
# PIN (a prefix such as "taskset -c 0,1", or empty), port and S (seconds per run). Sets out (a
# scratch directory, removed at exit) and starts the minimal server, killed at exit; writes
# $out/post.lua, wrk's smallest chat request ("hi").
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

# One wrk run of $S seconds, 1 thread and 64 connections, with the request of a Lua script;
# prints its rate in req/s (empty if it failed).   wrk_rate SCRIPT.lua
wrk_rate() {
  $PIN $B/wrk -t1 -c64 -d${S}s -s "$1" http://127.0.0.1:$port/v1/chat/completions 2>&1 | awk '/Requests\/sec/{print int($2)}'
}

# The summary of a series: FILE holds one "LABEL RATE" line per run (the label may hold
# spaces). Labels "wrk" and "wrk with llmload's request" are the baselines; every other label
# is an llmload arm, given with its median and, for each baseline, its ratio per round: each
# arm's run paired with the baseline's run of the same round (the machine's speed drifts from
# round to round, so the paired ratio is the fair one), as median, mean and range.
summarize() {
  python3 - "$1" <<'PY'
import sys, statistics, collections
med = statistics.median
d = collections.defaultdict(list)
for l in open(sys.argv[1]):
    k, v = l.rsplit(maxsplit=1); d[k].append(int(v))
bases = {k: d.pop(k) for k in ("wrk", "wrk with llmload's request") if k in d}
print("median: " + ", ".join(f"{k} {med(v):.0f} req/s" for k, v in bases.items()))
for k, v in d.items():
    parts = []
    for b, w in bases.items():
        r = [a / x for a, x in zip(v, w) if x]
        if r:
            parts.append(f"of {b}: median {100*med(r):.1f} %, mean {100*statistics.mean(r):.1f} %, rounds {100*min(r):.0f}-{100*max(r):.0f} %")
    print(f"  {k}: median {med(v):.0f} req/s; per round, " + "; ".join(parts))
PY
}
