#!/usr/bin/env bash
# Rebuilds the shipped demonstrations and pretrained policies from the scripted experts.
# The demos are deterministic (seeded); training takes about PUSHT_MIN + TREE_MIN minutes on 2 CPU cores.
#   bash demos/make_shipped.sh            # everything
#   bash demos/make_shipped.sh demos      # only the demonstration files
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
PUSHT_STEPS=${PUSHT_STEPS:-8000}
TREE_STEPS=${TREE_STEPS:-2000}

dp-agent demos generate --task dp_agent/PushT-v0 --episodes 200 --seed 0 --out demos/pusht.hdf5.new
dp-agent demos generate --task dp_agent/TreeDetour-v0 --episodes 100 --seed 0 --out demos/tree_detour.hdf5.new
mv demos/pusht.hdf5.new demos/pusht.hdf5
mv demos/tree_detour.hdf5.new demos/tree_detour.hdf5
[ "$what" = demos ] && exit 0

mkdir -p demos/pretrained
dp-agent train --demos demos/tree_detour.hdf5 --preset cpu-small --steps "$TREE_STEPS" --out runs/shipped/tree_detour
dp-agent export runs/shipped/tree_detour/final.safetensors demos/pretrained/tree_detour.safetensors --half
dp-agent train --demos demos/pusht.hdf5 --preset cpu-small --steps "$PUSHT_STEPS" --out runs/shipped/pusht
dp-agent export runs/shipped/pusht/final.safetensors demos/pretrained/pusht.safetensors --half
