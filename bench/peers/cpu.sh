#!/usr/bin/env bash
# Client CPU-seconds per 1,000 streamed requests of 64 output tokens: llmload and GuideLLM
# (and aiperf when installed) against the same minimal server, in the same run, back to back.
#
#   bench/peers/cpu.sh                     # 3 rounds, 5,000 and 500 requests, concurrency 64
#   ROUNDS=1 N=2000 N0=200 bench/peers/cpu.sh
#   TOOLS="llmload guidellm" bench/peers/cpu.sh   # choose the clients (default: all installed)
#
# Each client runs as its own process tree under `perf stat -e task-clock` (CPU time of the
# process and of every descendant, whether or not it was waited for: GuideLLM's and aiperf's
# worker processes included) inside /usr/bin/time (user + sys of the process and of the
# children it reaped: a cross-check). Without perf, user + sys is used. Start-up is removed by
# difference: every round runs each client twice, with N0 and with N requests, and
#     marginal CPU per 1,000 requests = (cpu(N) - cpu(N0)) / (N - N0) * 1000
# which cancels start-up and shut-down (interpreter and library imports, tokenizer loading,
# process pools) as long as they do not depend on the request count. Whole-process CPU per
# 1,000 requests (cpu(N) / N * 1000) is printed too.
#
# The server (crates/llmload-client/examples/fast_server, --tokens 64 --threads 1) answers every
# request at once with 64 one-token SSE events, usage and [DONE]; its own CPU per phase is
# printed as a check that both clients asked the same of it.
#
# Needs: cargo, python3 (3.10+) with venv, /usr/bin/time, network access to PyPI on the first
# run only (GuideLLM goes into bench/out/venv, which is git-ignored). No model download: the
# tokenizer GuideLLM needs is built offline from tiktoken-rs's cl100k_base ranks (the tokenizer
# llmload counts with), see make_tokenizer.py.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$ROOT/bench/out/peers}
ROUNDS=${ROUNDS:-3}
N=${N:-5000}
N0=${N0:-500}
CONC=${CONC:-64}
TOKENS=64
PROMPT=${PROMPT:-64}
PORT=${PORT:-18093}
VENV=${VENV:-$ROOT/bench/out/venv}
AIPERF_VENV=${AIPERF_VENV:-$ROOT/bench/out/venv-aiperf}
TOK_DIR=${TOK_DIR:-$ROOT/bench/out/tokenizer-cl100k}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
# aiperf counts with tiktoken's cl100k_base; tiktoken reads it from this cache (filled below
# from the same ranks file), never from the network.
export TIKTOKEN_CACHE_DIR=${TIKTOKEN_CACHE_DIR:-$ROOT/bench/out/tiktoken-cache}
mkdir -p "$OUT"

# --- binaries -------------------------------------------------------------------------------
LLMLOAD=${LLMLOAD_BIN:-$CARGO_TARGET_DIR/release/llmload}
FAST=${FAST_SERVER_BIN:-$CARGO_TARGET_DIR/release/examples/fast_server}
if [[ -z "${LLMLOAD_BIN:-}" || -z "${FAST_SERVER_BIN:-}" ]]; then
  (cd "$ROOT" && cargo build --release -p llmload --bin llmload)
  (cd "$ROOT" && cargo build --release -p llmload-client --features testkit --example fast_server)
fi

# --- GuideLLM in a venv, and an offline tokenizer -----------------------------------------------
if [[ ! -x "$VENV/bin/guidellm" ]]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q guidellm tiktoken
fi
ranks=$(ls -1d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/tiktoken-rs-*/assets/cl100k_base.tiktoken 2>/dev/null | tail -1)
[[ -n "$ranks" ]] || { echo "cl100k_base.tiktoken not found in the cargo registry (build llmload first)" >&2; exit 1; }
if [[ ! -f "$TOK_DIR/tokenizer.json" ]]; then
  "$VENV/bin/python" "$ROOT/bench/peers/make_tokenizer.py" "$ranks" "$TOK_DIR"
fi
mkdir -p "$TIKTOKEN_CACHE_DIR"
# tiktoken's cache file name: sha1 of the encoding's download URL.
cp "$ranks" "$TIKTOKEN_CACHE_DIR/$(printf %s https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken | sha1sum | cut -d' ' -f1)"
HAVE_AIPERF=0
[[ -x "$AIPERF_VENV/bin/aiperf" ]] && HAVE_AIPERF=1

# --- server ---------------------------------------------------------------------------------
"$FAST" --port "$PORT" --tokens "$TOKENS" --threads 1 > "$OUT/fast_server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -sf "http://127.0.0.1:$PORT/v1/models" > /dev/null && break
  sleep 0.1
done
TICK=$(getconf CLK_TCK)
PERF=()
if perf stat -x, -e task-clock -o /dev/null -- true 2>/dev/null; then
  PERF=(perf stat -x, -e task-clock -o)
fi
server_cpu() { awk -v t="$TICK" '{printf "%.3f", ($14 + $15) / t}' "/proc/$SERVER/stat"; }

# --- one measured client run ----------------------------------------------------------------
# usage: measure TOOL N ROUND -> appends a line to $OUT/runs.tsv
measure() {
  local tool=$1 n=$2 round=$3 dir="$OUT/r$3-$1-$2"
  rm -rf "$dir"; mkdir -p "$dir"
  local s0 load; s0=$(server_cpu); load=$(cut -d' ' -f1 /proc/loadavg)
  case $tool in
    llmload)
      /usr/bin/time -f "%U %S %e" -o "$dir/time" \
        ${PERF[@]:+"${PERF[@]}" "$dir/perf" --} "$LLMLOAD" run --target "http://127.0.0.1:$PORT" --model fast-model \
          --profile concurrent --concurrency "$CONC" --max-requests "$n" \
          --prompt-tokens "$PROMPT" --output-tokens "$TOKENS" --out "$dir" \
          > "$dir/log.txt" 2>&1 ;;
    guidellm)
      (cd "$dir" && /usr/bin/time -f "%U %S %e" -o "$dir/time" \
        ${PERF[@]:+"${PERF[@]}" "$dir/perf" --} "$VENV/bin/guidellm" run \
          --backend "kind=openai_http,target=http://127.0.0.1:$PORT,model=fast-model" \
          --profile "kind=concurrent,streams=$CONC" \
          --constraint "kind=max_requests,count=$n" \
          --tokenizer "kind=huggingface_auto,model=$TOK_DIR" \
          --data "kind=synthetic_text,prompt_tokens=$PROMPT,output_tokens=$TOKENS" \
          --output "kind=json,path=$dir/guidellm.json" \
          --disable-console-interactive > "$dir/log.txt" 2>&1) ;;
    aiperf)
      (cd "$dir" && /usr/bin/time -f "%U %S %e" -o "$dir/time" \
        ${PERF[@]:+"${PERF[@]}" "$dir/perf" --} "$AIPERF_VENV/bin/aiperf" profile --url "http://127.0.0.1:$PORT" -m fast-model \
          --endpoint-type chat --streaming --concurrency "$CONC" --request-count "$n" \
          --synthetic-input-tokens-mean "$PROMPT" --output-tokens-mean "$TOKENS" \
          --use-server-token-count --tokenizer cl100k_base --artifact-dir "$dir/artifacts" --ui-type none \
          > "$dir/log.txt" 2>&1) ;;
  esac
  local rc=$? s1; s1=$(server_cpu)
  read -r user sys wall < <(tail -1 "$dir/time")
  local task=""
  [[ -f "$dir/perf" ]] && task=$(awk -F, '/task-clock/{printf "%.3f", $1 / 1000}' "$dir/perf")
  [[ -n "$task" ]] || task=$(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.3f", u + s}')
  printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$round" "$tool" "$n" "$task" "$user" "$sys" "$wall" \
    "$(awk -v a="$s0" -v b="$s1" 'BEGIN{printf "%.3f", b-a}')" "$load" >> "$OUT/runs.tsv"
  [[ $rc -eq 0 ]] || echo "warning: $tool exited with $rc (see $dir/log.txt)" >&2
}

if [[ -n "${TOOLS:-}" ]]; then
  read -r -a TOOLS <<< "$TOOLS"            # e.g. TOOLS="llmload guidellm"
else
  TOOLS=(llmload guidellm)
  [[ $HAVE_AIPERF -eq 1 ]] && TOOLS+=(aiperf)
fi
printf "round\ttool\trequests\tcpu_s\tuser_s\tsys_s\twall_s\tserver_cpu_s\tload1\n" > "$OUT/runs.tsv"
echo "machine: $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "llmload: $("$LLMLOAD" --version 2>/dev/null || echo '?')"
echo "guidellm: $("$VENV/bin/guidellm" --version 2>/dev/null | tail -1)"
[[ $HAVE_AIPERF -eq 1 ]] && echo "aiperf: $("$AIPERF_VENV/bin/pip" show aiperf 2>/dev/null | awk '/^Version/{print $2}')"
for r in $(seq "$ROUNDS"); do
  for tool in "${TOOLS[@]}"; do
    measure "$tool" "$N0" "$r" || true
    measure "$tool" "$N" "$r" || true
  done
done

# --- report ---------------------------------------------------------------------------------
python3 - "$OUT/runs.tsv" "$N" "$N0" <<'EOF' | tee "$OUT/summary.txt"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
n, n0 = int(sys.argv[2]), int(sys.argv[3])
cpu = {}
for r in rows:
    cpu[(r["round"], r["tool"], int(r["requests"]))] = (float(r["cpu_s"]), r)
print("\nruns (cpu = task-clock of the client's whole process tree (perf stat), user/sys = /usr/bin/time;")
print("      server = fast_server's CPU meanwhile; load = 1-minute load average at the start):")
print(f"{'round':>5} {'tool':>9} {'requests':>8} {'cpu s':>7} {'user s':>7} {'sys s':>6} {'wall s':>7} {'server s':>8} {'load':>5}")
for r in rows:
    print(f"{r['round']:>5} {r['tool']:>9} {r['requests']:>8} {r['cpu_s']:>7} {r['user_s']:>7} {r['sys_s']:>6} {r['wall_s']:>7} {r['server_cpu_s']:>8} {r['load1']:>5}")
print(f"\nCPU-seconds per 1,000 requests (marginal = (cpu({n}) - cpu({n0})) / {n - n0} * 1000; whole = cpu({n}) / {n} * 1000):")
rounds = sorted({r["round"] for r in rows}, key=int)
tools = [t for t in ("llmload", "guidellm", "aiperf") if any(r["tool"] == t for r in rows)]
for rd in rounds:
    line, marg = [], {}
    for t in tools:
        if (rd, t, n) in cpu and (rd, t, n0) in cpu:
            m = (cpu[(rd, t, n)][0] - cpu[(rd, t, n0)][0]) / (n - n0) * 1000
            w = cpu[(rd, t, n)][0] / n * 1000
            marg[t] = m
            line.append(f"{t} marginal {m:.3f} / whole {w:.3f}")
    for t in tools[1:]:
        if t in marg and "llmload" in marg and marg["llmload"] > 0:
            line.append(f"{t}/llmload = {marg[t] / marg['llmload']:.1f}x")
    print(f"  round {rd}: " + "; ".join(line))
EOF

# Metric comparison on the last round's large runs.
last="$OUT/r$ROUNDS"
if [[ -f "$last-guidellm-$N/guidellm.json" && -f "$last-llmload-$N/results.json" ]]; then
  python3 "$ROOT/bench/peers/compare.py" "$last-guidellm-$N/guidellm.json" "$last-llmload-$N" | tee "$OUT/compare.txt"
fi
