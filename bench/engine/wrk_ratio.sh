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
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; ${R} rounds of ${S}s"
for r in $(seq 1 $R); do
  w=$($PIN $B/wrk -t1 -c64 -d${S}s -s $out/post.lua http://127.0.0.1:$port/v1/chat/completions 2>&1 | awk '/Requests\/sec/{print int($2)}')
  ws=$($PIN $B/wrk -t1 -c64 -d${S}s -s $out/same.lua http://127.0.0.1:$port/v1/chat/completions 2>&1 | awk '/Requests\/sec/{print int($2)}')
  echo "wrk $w" >> $out/all
  echo "wrksame $ws" >> $out/all
  line="round $r: wrk -t1 -c64 $w req/s, with llmload's request $ws"
  for t in $THREADS; do
    targ="--threads $t"; [ "$t" = default ] && targ=
    v=$(llmload_rate $B/llmload $targ)
    echo "$t $v" >> $out/all
    line="$line; llmload ${targ:-(default threads)} $v ($(( 100 * v / w )) % / $(( 100 * v / ws )) %)"
  done
  echo "$line"
done
# Summary. Each round's ratio pairs llmload with the wrk runs just before it (the machine's
# speed drifts between rounds: the paired ratio is the fair one); the medians of each tool
# over all rounds are printed too.
python3 - $out/all <<'PY'
import sys,statistics,collections
d=collections.defaultdict(list)
for l in open(sys.argv[1]):
    k,v=l.split(); d[k].append(int(v))
w=d.pop('wrk'); ws=d.pop('wrksame')
med=statistics.median
print(f"median: wrk {med(w):.0f} req/s, with llmload's request {med(ws):.0f}" + "".join(f"; llmload {'--threads '+k if k!='default' else '(default threads)'} {med(v):.0f}" for k,v in d.items()))
for k,v in d.items():
    r=[a/b for a,b in zip(v,w)]; rs=[a/b for a,b in zip(v,ws)]
    print(f"llmload {'--threads '+k if k!='default' else '(default threads)'} as a fraction of wrk / of wrk with llmload's request, per round: median {100*med(r):.1f} % / {100*med(rs):.1f} %, mean {100*statistics.mean(r):.1f} % / {100*statistics.mean(rs):.1f} %, rounds {100*min(r):.0f}-{100*max(r):.0f} %")
PY
