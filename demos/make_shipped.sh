#!/usr/bin/env bash
# Rebuilds the shipped demonstrations (seeded scripted experts: identical files every time) and
# the pretrained policies (about 15 min for TreeDetour and 2 h for the PushT keypoints teacher on
# 2 CPU cores; its time-to-score curve is benchmarks/time_to_score.py on the snapshots).
#   bash demos/make_shipped.sh            # everything
#   bash demos/make_shipped.sh demos      # only the demonstration files
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}

dp-agent demos generate --task dp_agent/PushT-v0 --episodes 200 --seed 0 --out demos/pusht.hdf5.new
dp-agent demos generate --task dp_agent/PushT-v0 --obs-type keypoints --episodes 200 --seed 0 \
    --out demos/pusht_keypoints.hdf5.new
dp-agent demos generate --task dp_agent/TreeDetour-v0 --episodes 100 --seed 0 --out demos/tree_detour.hdf5.new
mv demos/pusht.hdf5.new demos/pusht.hdf5
mv demos/pusht_keypoints.hdf5.new demos/pusht_keypoints.hdf5
mv demos/tree_detour.hdf5.new demos/tree_detour.hdf5
[ "$what" = demos ] && exit 0

# the same diffusion runs as benchmarks/evidence.py (README "Evidence")
train() { dp-agent train --preset cpu-small --seed 0 --checkpoint-every 1000 --threads 1 --precision fp32 "$@"; }
train --demos demos/tree_detour.hdf5 --steps 2000 --out runs/evidence/tree_detour/diffusion --overwrite
# the PushT teacher: keypoint observations, 30k steps (fp32, as it was trained); --resume goes on
# after an interruption
train --demos demos/pusht_keypoints.hdf5 --steps 30000 --out runs/teacher/kp30k --resume
mkdir -p demos/pretrained
dp-agent export runs/evidence/tree_detour/diffusion/final.safetensors \
    demos/pretrained/tree_detour.safetensors --half
dp-agent export runs/teacher/kp30k/final.safetensors \
    demos/pretrained/pusht.safetensors --half --sampler ddpm --steps 100
