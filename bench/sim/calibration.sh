#!/usr/bin/env bash
# Prints the simulator's calibration tables: the step-time model at every H100 calibration point,
# and the simulated server against real vLLM 0.25.0 (closed loop 1/8/32/128 streams; FP8 open
# loop; rising load). Virtual time: takes seconds, deterministic.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test -p llmload-sim --lib model::tests::decode_and_prefill_points_within_5_percent -- --nocapture 2>/dev/null | grep '^|'
echo
cargo test -p llmload-sim --test calibration -- --nocapture --test-threads 1 2>/dev/null | grep -E '^\||^fp8|^rate|^VL|^8 streams'
