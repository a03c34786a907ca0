#!/usr/bin/env bash
# Rebuilds the shipped demonstrations (seeded scripted experts: identical files every time) and
# the pretrained policies (on 2 CPU cores: about 15 min for TreeDetour, 2 h for the PushT
# keypoints teacher, 71 + 109 + 42 min for its 3-step student, 100 + 35 min for the fast student,
# 2 h 40 min + 2 h + 80 min + 95 min for the PushT image policy; the time-to-score curves are
# benchmarks/time_to_score.py on the snapshots).
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
    demos/pretrained/tree_detour.safetensors --int8
dp-agent export runs/teacher/kp30k/final.safetensors \
    demos/pretrained/pusht.safetensors --half --sampler ddpm --steps 100
# the teacher's few-step student: progressive distillation 16 -> 8 -> 4 -> 2 DDIM steps
dp-agent distill demos/pretrained/pusht.safetensors --demos demos/pusht_keypoints.hdf5 \
    --out runs/distill/pusht --teacher-steps 16 --steps 2 --threads 1 --precision fp32 --resume
# then the shipped 3-step student: trajectory distillation from that 2-step student, first on
# the teacher's 16-step DDIM path, then twice on its 32-step one (33 + 48 + 28 min; the shipped
# run started from the int8 export of the 2-step student)
dp-agent distill demos/pretrained/pusht.safetensors --demos demos/pusht_keypoints.hdf5 \
    --out runs/distill/traj3 --method trajectory --steps 3 --grid 99,49,24 \
    --init-from runs/distill/pusht/final.safetensors --steps-per-round 3000 --threads 1 --resume
dp-agent distill demos/pretrained/pusht.safetensors --demos demos/pusht_keypoints.hdf5 \
    --out runs/distill/traj3_32 --method trajectory --teacher-steps 32 --steps 3 --grid 99,49,24 \
    --init-from runs/distill/traj3/final.safetensors --steps-per-round 3000 --threads 1 --resume
dp-agent distill demos/pretrained/pusht.safetensors --demos demos/pusht_keypoints.hdf5 \
    --out runs/distill/traj3_32b --method trajectory --teacher-steps 32 --steps 3 --grid 99,49,24 \
    --init-from runs/distill/traj3_32/final.safetensors --steps-per-round 1500 --lr 1e-4 \
    --threads 1 --resume
# and last, that student moved to the grid 99, 49, 11 (a shorter last jump) on the DDIM-50 path
dp-agent distill demos/pretrained/pusht.safetensors --demos demos/pusht_keypoints.hdf5 \
    --out runs/distill/traj3_g11 --method trajectory --teacher-steps 50 --steps 3 --grid 99,49,11 \
    --init-from runs/distill/traj3_32b/final.safetensors --steps-per-round 1500 --lr 2e-4 \
    --threads 1 --resume
dp-agent export runs/distill/traj3_g11/final.safetensors demos/pretrained/pusht_distilled.safetensors --int8
# then that int8 file moved to the grid 99, 49, 5 (93 min on the AVX2 machine): the shipped one
dp-agent distill demos/pretrained/pusht.safetensors --demos demos/pusht_keypoints.hdf5 \
    --out runs/distill/traj3_g5 --method trajectory --teacher-steps 50 --steps 3 --grid 99,49,5 \
    --init-from demos/pretrained/pusht_distilled.safetensors --steps-per-round 1500 --lr 2e-4 \
    --threads 1 --resume
dp-agent export runs/distill/traj3_g5/final.safetensors demos/pretrained/pusht_distilled.safetensors --int8
# the fast student: a cpu-tiny diffusion policy (32-64-128, 1.4 M) trained on the keypoint demos
# (38 min), then taught that student's three steps (trajectory distillation at the same step
# count into the narrower network; 40 + 25 min)
dp-agent train --preset cpu-tiny --demos demos/pusht_keypoints.hdf5 --steps 16000 --seed 0 \
    --checkpoint-every 1000 --threads 1 --precision fp32 --out runs/tiny/kp16k --resume
fast() { dp-agent distill demos/pretrained/pusht_distilled.safetensors --demos demos/pusht_keypoints.hdf5 \
    --method trajectory --teacher-steps 3 --steps 3 --grid 99,49,5 --threads 1 --resume "$@"; }
fast --out runs/tiny/from_student_b --init-from runs/tiny/kp16k/final.safetensors \
    --steps-per-round 6000 --lr 5e-4
fast --out runs/tiny/from_student_b2 --init-from runs/tiny/from_student_b/final.safetensors \
    --steps-per-round 4000 --lr 2e-4 --seed 2
dp-agent export runs/tiny/from_student_b2/final.safetensors runs/tiny/from_student_b2_int8.safetensors --int8
# then two more cycles on six times the demos (1000 more expert keypoint episodes, seeds
# 200-1199, appended to a copy of the file), from that int8 file (shipped until 2026-12-04
# evening): 5000 updates at lr 2e-4, then twice 5000 at 1e-4 (11 min each on the AVX-512 machine)
if [ ! -f runs/pusht_keypoints1200.hdf5 ]; then
    cp demos/pusht_keypoints.hdf5 runs/pusht_keypoints1200.tmp.hdf5
    dp-agent demos generate --task dp_agent/PushT-v0 --obs-type keypoints --episodes 1000 --seed 200 \
        --append --out runs/pusht_keypoints1200.tmp.hdf5
    mv runs/pusht_keypoints1200.tmp.hdf5 runs/pusht_keypoints1200.hdf5
fi
fast --demos runs/pusht_keypoints1200.hdf5 --out runs/tiny/d1200 \
    --init-from runs/tiny/from_student_b2_int8.safetensors --steps-per-round 5000 --lr 2e-4 --seed 3
fast --demos runs/pusht_keypoints1200.hdf5 --out runs/tiny/d1200b \
    --init-from runs/tiny/d1200/final.safetensors --steps-per-round 5000 --lr 1e-4 --seed 4
fast --demos runs/pusht_keypoints1200.hdf5 --out runs/tiny/d1200c \
    --init-from runs/tiny/d1200b/final.safetensors --steps-per-round 5000 --lr 1e-4 --seed 5
dp-agent export runs/tiny/d1200c/final.safetensors demos/pretrained/pusht_distilled_fast.safetensors --int8
# PushT from pixels (96x96 RGB + the agent's position; demos rendered as gym-pusht draws them)
[ -f runs/pusht_pixels.hdf5 ] || dp-agent demos generate --task dp_agent/PushT-v0 --obs-type pixels \
    --episodes 200 --seed 0 --out runs/pusht_pixels.hdf5
dp-agent train --demos runs/pusht_pixels.hdf5 --preset cpu-image --steps 20000 --seed 0 \
    --checkpoint-every 1000 --threads 1 --out runs/image/pusht_cpu_image --resume
# then continued to 30k (the cosine schedule stretched), in a copy of the folder:
mkdir -p runs/image/pusht_cpu_image_30k
[ -f runs/image/pusht_cpu_image_30k/last.safetensors ] || \
    cp runs/image/pusht_cpu_image/last.safetensors runs/image/pusht_cpu_image_30k/
dp-agent train --demos runs/pusht_pixels.hdf5 --preset cpu-image --steps 30000 --seed 0 \
    --checkpoint-every 1000 --threads 1 --out runs/image/pusht_cpu_image_30k --resume
# then a second 20k-step cosine cycle (lr 1e-3 again) from that policy, seed 1 (2 h here)
dp-agent train --demos runs/pusht_pixels.hdf5 --preset cpu-image --steps 20000 --seed 1 \
    --init-from runs/image/pusht_cpu_image_30k/final.safetensors \
    --checkpoint-every 1000 --threads 1 --out runs/image/pusht_cpu_image_tune --resume
# then a third cycle, 18k steps at lr 5e-4, seed 2 (80 min on the AVX-512 machine), from the
# int8 export of the second cycle (0.779 against its fp32 0.788), as the shipped run did
dp-agent export runs/image/pusht_cpu_image_tune/final.safetensors \
    runs/image/pusht_cpu_image_tune_int8.safetensors --int8
dp-agent train --demos runs/pusht_pixels.hdf5 --preset cpu-image --steps 18000 --lr 5e-4 --seed 2 \
    --init-from runs/image/pusht_cpu_image_tune_int8.safetensors \
    --checkpoint-every 1000 --threads 1 --out runs/image/pusht_cpu_image_tune3 --resume
dp-agent export runs/image/pusht_cpu_image_tune3/final.safetensors \
    runs/image/pusht_cpu_image_tune3_int8.safetensors --int8
# then a fourth cycle on twice the demos: 200 more expert episodes (seeds 200-399) appended to a
# copy of the file, 18k steps at lr 5e-4, seed 3, from the third cycle's int8 file (92 min on
# a 2-core Intel Xeon beside a distillation)
if [ ! -f runs/pusht_pixels400.hdf5 ]; then
    cp runs/pusht_pixels.hdf5 runs/pusht_pixels400.tmp.hdf5
    dp-agent demos generate --task dp_agent/PushT-v0 --obs-type pixels --episodes 200 --seed 200 \
        --append --out runs/pusht_pixels400.tmp.hdf5
    mv runs/pusht_pixels400.tmp.hdf5 runs/pusht_pixels400.hdf5
fi
dp-agent train --demos runs/pusht_pixels400.hdf5 --preset cpu-image --steps 18000 --lr 5e-4 --seed 3 \
    --init-from runs/image/pusht_cpu_image_tune3_int8.safetensors \
    --checkpoint-every 1000 --threads 1 --out runs/image/pusht_cpu_image_tune4 --resume
dp-agent export runs/image/pusht_cpu_image_tune4/final.safetensors demos/pretrained/pusht_image.safetensors --int8
