#!/usr/bin/env bash
# Parser throughput benchmark of llmload-prom (see docs/performance/prom.md).
# Usage: bench/prom/run.sh            build and run with cargo
#        bench/prom/run.sh --copy     also copy the built binary to bench/prom/bin/parse, to run
#                                     it on another machine:
#        LLMLOAD_PROM_BENCH_DATA=crates/llmload-prom/tests/data bench/prom/bin/parse
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(cargo bench -p llmload-prom --bench parse --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4)
if [[ "${1:-}" == "--copy" ]]; then
  mkdir -p bench/prom/bin && cp "$out" bench/prom/bin/parse
fi
"$out"
