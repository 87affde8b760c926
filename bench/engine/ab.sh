#!/usr/bin/env bash
# A/B of llmload builds or settings against wrk, non-streaming, alternated round by round (a
# busy or changing machine then affects every arm alike): each round runs wrk, then every arm.
#   ARMS="LLBIN=bench/out/a/llmload LLBIN=bench/out/b/llmload" bench/engine/ab.sh [ROUNDS] [SECONDS]
# An arm is one VAR=value exported for its run: LLBIN picks the binary; any other variable is
# passed to llmload's environment. Binaries from $B (default bench/out/bin): fast_server, wrk.
# Env: PIN="taskset -c 0,1" to pin everything to two cores on a bigger machine.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${B:-bench/out/bin}; R=${1:-6}; S=${2:-5}
ARMS=${ARMS:-"LLBIN=$B/llmload"}
PIN=${PIN:-}; port=18791
. bench/engine/common.sh
for r in $(seq 1 $R); do
  w=$($PIN $B/wrk -t1 -c64 -d${S}s -s $out/post.lua http://127.0.0.1:$port/v1/chat/completions 2>&1 | awk '/Requests\/sec/{print int($2)}')
  echo "wrk ${w:-0}" >> $out/all; line="round $r: wrk ${w:-?}"
  for arm in $ARMS; do
    v=$( export "$arm"; llmload_rate "${LLBIN:-$B/llmload}" )
    echo "$arm $v" >> $out/all; line="$line; $arm $v"
  done
  echo "$line"
done
python3 - $out/all <<'PY'
import sys, statistics, collections
d = collections.defaultdict(list)
for l in open(sys.argv[1]):
    k, v = l.rsplit(maxsplit=1); d[k].append(int(v))
w = statistics.median(d.pop("wrk"))
print(f"median wrk {w:.0f} req/s")
for k, v in d.items():
    m = statistics.median(v)
    print(f"  {k}: median {m:.0f} ({100*m/w:.1f} % of wrk), mean {statistics.mean(v):.0f}")
PY
