#!/bin/bash
# Real-GPU checks of llmload-gpu (used for docs/gpu.md and docs/performance/gpu.md).
#
# Build here (the GPU machine needs no Rust):
#   cargo build --release -p llmload-gpu --example gpu_probe
#   cargo bench -p llmload-gpu --no-run        # prints the sampler_cost binary's path
# copy both binaries into one folder DIR, then on the GPU machine:
#   bash bench/gpu/run-on-gpu.sh DIR OUTDIR
# It needs python3 with torch (CUDA) for the load phase; without it the probe reads an idle GPU.
set -u
D=${1:?folder with gpu_probe and sampler_cost}
OUT=${2:-/tmp/llmload-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name,driver_version,utilization.gpu,memory.used,power.draw --format=csv
# A bf16 matmul load, starting ~2 s into a 20 s sampler window and lasting 8 s.
timeout 40 python3 - > "$OUT/load.txt" 2>&1 <<'PY' &
import torch, time
a = torch.randn(8192, 8192, device='cuda', dtype=torch.bfloat16); b = torch.randn_like(a)
torch.cuda.synchronize()
print("ready", flush=True)
time.sleep(2)
t = time.time(); n = 0
while time.time() - t < 8:
    for _ in range(20): c = a @ b
    torch.cuda.synchronize(); n += 20
print("matmuls", n, "seconds", time.time() - t, "TFLOP/s", n * 2 * 8192**3 / (time.time() - t) / 1e12)
PY
LOADPID=$!
# Wait until torch is ready, so the window sees idle -> busy -> idle.
for _ in $(seq 1 60); do grep -q ready "$OUT/load.txt" 2>/dev/null && break; sleep 0.5; done
timeout 60 "$D/gpu_probe" 14 100 --series > "$OUT/probe_series.txt" 2>&1; echo "probe_series rc=$?"
wait $LOADPID
cat "$OUT/load.txt"
timeout 30 "$D/gpu_probe" 2 100 > "$OUT/probe.txt" 2>&1; echo "probe rc=$?"
timeout 60 "$D/gpu_probe" --nvml-timing > "$OUT/timing.txt" 2>&1; cat "$OUT/timing.txt"
echo "== cost nvml"; timeout 120 "$D/sampler_cost" nvml 30 100 > "$OUT/cost_nvml.txt" 2>&1; cat "$OUT/cost_nvml.txt"
echo "== cost fake"; timeout 120 "$D/sampler_cost" fake 30 100 > "$OUT/cost_fake.txt" 2>&1; cat "$OUT/cost_fake.txt"
