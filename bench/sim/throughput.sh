#!/usr/bin/env bash
# Streamed tokens/s over many concurrent SSE streams, and the engine clock's lateness.
# Usage: bench/sim/throughput.sh [streams] [tokens_per_stream] [speedup]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo bench -p llmload-sim --bench stream_throughput -- "${1:-10000}" "${2:-200}" "${3:-60}"
