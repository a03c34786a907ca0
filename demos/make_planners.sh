#!/usr/bin/env bash
# Rebuilds the shipped Maze2D planners: seeded expert demos (identical files every time), a
# Diffuser-style trajectory planner per layout (dp_agent.planning.planner, about 30 min each on one CPU
# core; both run side by side), a learned value network each, and the fp16 planner files.
#   bash demos/make_planners.sh            # everything
#   bash demos/make_planners.sh demos      # only the demonstration files
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
plan() { dp-agent "$@"; }

dp-agent demos generate --task dp_agent/Maze2D-umaze-v0 --episodes 1000 --seed 0 \
    --out demos/maze2d_umaze.hdf5.new
dp-agent demos generate --task dp_agent/Maze2D-medium-v0 --episodes 1000 --seed 0 \
    --out demos/maze2d_medium.hdf5.new
mv demos/maze2d_umaze.hdf5.new demos/maze2d_umaze.hdf5
mv demos/maze2d_medium.hdf5.new demos/maze2d_medium.hdf5
[ "$what" = demos ] && exit 0
mkdir -p runs/planners

# H = 48 (umaze) and 96 (medium) steps; 8000 and 4000 optimiser steps took 27 and 36 min on
# a shared 2-core machine; --resume goes on after an interruption
plan plan-train --preset maze2d-umaze --demos demos/maze2d_umaze.hdf5 --steps 8000 \
    --threads 1 --checkpoint-every 500 --out runs/planners/umaze --resume --json-progress \
    > runs/planners/umaze.log 2>&1 &
plan plan-train --preset maze2d-medium --demos demos/maze2d_medium.hdf5 --steps 4000 \
    --threads 1 --checkpoint-every 500 --out runs/planners/medium --resume --json-progress \
    > runs/planners/medium.log 2>&1 &
wait
mkdir -p demos/pretrained
for maze in umaze medium; do
    plan plan-export runs/planners/$maze/final.safetensors demos/pretrained/maze2d_$maze.safetensors \
        --half --value-demos demos/maze2d_$maze.hdf5 --value-steps 2000
done
