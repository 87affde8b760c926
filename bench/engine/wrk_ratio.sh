#!/usr/bin/env bash
# llmload's non-streaming request rate as a fraction of wrk's, against the same minimal server,
# client and server together on this machine (issue 2's bar: >= 80 %). Alternates wrk and
# llmload round by round so that a busy machine affects both alike; prints every round and
# the medians.
#   bench/engine/wrk_ratio.sh [ROUNDS] [SECONDS]     (binaries from bench/out/bin)
# Env: PIN="taskset -c 0,1" to pin everything to two cores on a bigger machine;
#      THREADS="default 1 2" the llmload runtime sizes to try (--threads; "default": none given).
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${B:-bench/out/bin}
R=${1:-5}; S=${2:-5}
PIN=${PIN:-}; THREADS=${THREADS:-"default 1 2"}
port=18790
. bench/engine/common.sh
# Two wrk requests: the smallest chat request ("hi", $out/post.lua), and the very request
# llmload sends (its headers and a 16-token synthetic prompt; the server parses a body twice as
# long).
cat > $out/same.lua <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["accept"] = "*/*"
wrk.headers["user-agent"] = "llmload/0.1.0"
wrk.body = '{"messages":[{"role":"user","content":"the the the the same month where wall real corner table left plan four little well"}],"max_tokens":16,"ignore_eos":true,"model":"fast-model","stream":false}'
LUA
# V as a percentage of BASE, or "?" when the wrk run gave no rate.   pct V BASE
pct() { if [ "${2:-0}" -gt 0 ]; then echo "$(( 100 * $1 / $2 )) %"; else echo "? %"; fi; }
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; ${R} rounds of ${S}s"
for r in $(seq 1 $R); do
  w=$(wrk_rate $out/post.lua); ws=$(wrk_rate $out/same.lua)
  echo "wrk ${w:-0}" >> $out/all
  echo "wrk with llmload's request ${ws:-0}" >> $out/all
  line="round $r: wrk -t1 -c64 ${w:-?} req/s, with llmload's request ${ws:-?}"
  for t in $THREADS; do
    targ="--threads $t"; [ "$t" = default ] && targ=
    v=$(llmload_rate $B/llmload $targ)
    echo "llmload ${targ:-(default threads)} $v" >> $out/all
    line="$line; llmload ${targ:-(default threads)} $v ($(pct $v "$w") / $(pct $v "$ws"))"
  done
  echo "$line"
done
summarize $out/all
