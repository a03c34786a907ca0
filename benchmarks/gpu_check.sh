#!/usr/bin/env bash
# GPU check, for a CUDA machine (about 5 min on one modern GPU): each GPU preset trained for a
# fixed number of steps in fp32 and bf16 (steps/s, peak memory), then one torchrun run over all
# visible GPUs (steps/s from its progress events).
#   bash benchmarks/gpu_check.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-300}
python benchmarks/gpu_check.py --steps "$steps" --device cuda
n=$(python -c "import torch; print(torch.cuda.device_count())")
out=$(mktemp -d)
echo
echo "torchrun on $n GPU(s), gpu-standard, $steps steps, global batch 256:"
torchrun --standalone --nproc_per_node "$n" -m dp_agent.cli train --demos demos/pusht.hdf5 \
    --preset gpu-standard --steps "$steps" --device cuda --checkpoint-every 100000 \
    --out "$out/run" --json-progress \
    | python -c '
import json, sys
events = [json.loads(line) for line in sys.stdin if line.startswith("{")]
speed = [e["samples_per_s"] for e in events if e["event"] == "step"][-1]
peak = [e["peak_memory_mb"] for e in events if e["event"] == "done"][-1]
print(f"  {speed / 256:.2f} steps/s, {speed:,.0f} samples/s, rank-0 peak memory {peak:,.0f} MiB")'
rm -rf "$out"
