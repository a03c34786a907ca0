"""Chunk latency of a checkpoint, per sampler: one chunk through ``agent.predict`` for one env
(observation encoding included: for an image policy, its ResNet on the To frames), interleaved
over the samplers, median, on the policy's default backend.

    python benchmarks/chunk_latency.py runs/image/final.safetensors \
        [--samplers ddpm:100 ddim:10 dpmsolver++:8] [--repeats 10] [--threads 1]

``benchmarks/latency.py`` breaks the denoiser call down by backend against the hardware floor;
this script times what a user's checkpoint costs end to end.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time

import torch
from report import add_results_option, write_result  # benchmarks/report.py

from dp_agent.agent import DiffusionPolicyAgent


def chunk_latency(agents, repeats: int) -> list[float]:
    """Median seconds of one chunk through ``predict`` for one env, per agent, interleaved over
    the agents (each on an observation of its own env). Each timed chunk follows an untimed one
    of the same agent, as chunks follow each other in a control loop: the first after another
    agent's reads weights evicted from the cache."""
    observations = [agent.make_env().reset(seed=0)[0] for agent in agents]
    times: list[list[float]] = [[] for _ in agents]
    for r in range(repeats + 1):
        for i, (agent, obs) in enumerate(zip(agents, observations, strict=True)):
            agent.reset(1)
            agent.predict(obs)  # untimed
            agent.reset(1)
            t0 = time.perf_counter()
            agent.predict(obs)
            if r:  # the first round builds the backends
                times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--samplers", nargs="+", default=["ddpm:100", "ddim:10", "dpmsolver++:8"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    add_results_option(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    samplers = [(s.split(":")[0], int(s.split(":")[1])) for s in args.samplers]
    agents = []
    for name, steps in samplers:  # one agent per sampler, so each keeps its own backend
        agent = DiffusionPolicyAgent.load(args.checkpoint, device="cpu")
        agent.set_sampler(name, steps)
        agents.append(agent)
    latency = chunk_latency(agents, args.repeats)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    agent = agents[0]
    n_params = sum(p.numel() for p in agent.policy.parameters())
    about = (
        f"{os.path.basename(args.checkpoint)} ({n_params / 1e6:.2f} M parameters; "
        f"{agent.obs_spec.describe()})"
    )
    print(
        f"{datetime.datetime.now().isoformat(timespec='minutes')}; {os.cpu_count()} cores; "
        f"{args.threads} torch thread(s); load average {load:.1f}; {about}\n"
    )
    lines = ["| sampler | chunk (ms) | per env step (ms) |", "|---|---|---|"]
    ta = agent.config.action_horizon
    for (name, steps), t in zip(samplers, latency, strict=True):
        ms = t * 1e3
        lines.append(f"| {name}-{steps} | {ms:.1f} | {ms / ta:.2f} |")
    print("\n".join(lines))
    notes = (
        f"{about}; {args.threads} torch thread(s), the default backend, median of "
        f"{args.repeats} chunks per sampler, interleaved; per env step: the chunk over its "
        f"Ta = {ta} queued actions."
    )
    write_result(
        "chunk_latency",
        f"{os.path.basename(args.checkpoint)}: one chunk per sampler",
        "\n".join(lines),
        notes,
        args=args,
    )


if __name__ == "__main__":
    main()
