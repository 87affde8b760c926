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
  w=$(wrk_rate $out/post.lua)
  echo "wrk ${w:-0}" >> $out/all; line="round $r: wrk ${w:-?}"
  for arm in $ARMS; do
    v=$( export "$arm"; llmload_rate "${LLBIN:-$B/llmload}" )
    echo "$arm $v" >> $out/all; line="$line; $arm $v"
  done
  echo "$line"
done
summarize $out/all
