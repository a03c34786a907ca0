"""Chunk latency of ``DiffusionPolicyAgent.predict`` on this machine: DDPM-100 vs DDIM-10 vs
DPM-Solver++-8, and the amortised cost per environment step with the action queue.

    python benchmarks/latency.py [--network cpu-small|gpu-standard|both] [--device cpu]

Uses an untrained policy of the real size (latency does not depend on the weights), PushT-sized
observations (5 values) and actions (2 values), To=2, Tp=16, Ta=8.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import gymnasium as gym
import numpy as np
import torch

from dp_agent.agent import DiffusionPolicyAgent
from dp_agent.config import make_configs
from dp_agent.policy import DiffusionPolicy

SAMPLERS = [("ddpm", 100), ("ddim", 10), ("dpmsolver++", 8)]


def make_agent(preset: str, device: str) -> DiffusionPolicyAgent:
    pc, _ = make_configs(preset, {"obs_dim": 5, "action_dim": 2})
    policy = DiffusionPolicy(pc)
    rng = np.random.default_rng(0)
    policy.fit_normalizers(rng.uniform(0, 512, (256, 5)), rng.uniform(0, 512, (256, 2)))
    obs_space = gym.spaces.Box(0, 512, (5,), np.float64)
    act_space = gym.spaces.Box(0, 512, (2,), np.float32)
    return DiffusionPolicyAgent(policy, obs_space, act_space, device=device)


def time_chunks(agent, repeats: int) -> float:
    """Median seconds of a predict call that samples a new chunk (queue emptied each time)."""
    obs = np.full(5, 200.0)
    agent.predict(obs)  # warm-up
    times = []
    for _ in range(repeats):
        agent.reset()
        t0 = time.perf_counter()
        agent.predict(obs)
        if agent.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def time_per_step(agent, steps: int) -> float:
    obs = np.full(5, 200.0)
    agent.reset()
    t0 = time.perf_counter()
    for _ in range(steps):
        agent.predict(obs)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="both", choices=["cpu-small", "gpu-standard", "both"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    presets = ["cpu-small", "gpu-standard"] if args.network == "both" else [args.network]
    cpu = platform.processor() or platform.machine()
    print(
        f"machine: {os.cpu_count()} cores ({cpu}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {args.device}"
    )
    print()
    print(
        "| network | params | sampler | chunk latency (ms) | per env step, queued (ms) "
        "| speed-up vs DDPM-100 |"
    )
    print("|---|---|---|---|---|---|")
    for preset in presets:
        agent = make_agent(preset, args.device)
        n_params = sum(p.numel() for p in agent.policy.parameters())
        base = None
        for name, steps in SAMPLERS:
            agent.set_sampler(name, steps)
            chunk = time_chunks(agent, max(3, args.repeats // (10 if name == "ddpm" else 1)))
            per_step = time_per_step(agent, 8 * max(2, args.repeats // 4))
            base = base or chunk
            print(
                f"| {preset} | {n_params / 1e6:.2f} M | {name}-{steps} | {chunk * 1e3:.1f} "
                f"| {per_step * 1e3:.2f} | {base / chunk:.1f}x |"
            )


if __name__ == "__main__":
    main()
