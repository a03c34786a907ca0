"""Evaluation wall time: the same seeded episodes stepped in the main process and in
gymnasium's AsyncVectorEnv worker processes, interleaved.

    python benchmarks/evaluation.py [--task dp_agent/PushT-v0] [--episodes 50] [--n-envs 10]
        [--rounds 2] [--threads 1]

The agent is the task's shipped policy with its default sampler; one batched ``predict`` per
step in both cases, so the results are identical and only the env stepping moves.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from report import add_results_option, write_result  # benchmarks/report.py

from dp_agent.agent import DiffusionPolicyAgent
from dp_agent.data.shipped import shipped_policy
from dp_agent.evaluate import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="dp_agent/PushT-v0")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--n-envs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    add_results_option(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    agent = DiffusionPolicyAgent.load(shipped_policy(args.task), device="cpu")
    print(
        f"{os.cpu_count()} cores {platform.machine()}, {args.threads} torch thread(s), "
        f"{time.strftime('%Y-%m-%d')}; {args.task}, {args.episodes} episodes, {args.n_envs} envs, "
        f"{agent.sampler}-{agent.num_inference_steps}, median of {args.rounds} interleaved rounds\n"
    )
    evaluate(agent, args.task, 2, 0, 2)  # warm-up: the backend's first chunk compiles it
    times: dict[str, list[float]] = {"main process": [], "worker processes": []}
    scores = {}
    for _ in range(args.rounds):
        for name, workers in (("main process", False), ("worker processes", True)):
            t = time.perf_counter()
            result = evaluate(
                agent,
                args.task,
                args.episodes,
                100_000,
                args.n_envs,
                deterministic=True,
                workers=workers,
            )
            times[name].append(time.perf_counter() - t)
            agent.reset()
            scores[name] = result.summary()["mean_max_reward"]
    base = statistics.median(times["main process"])
    lines = ["| envs stepped in | wall time (s) | vs main process | score |", "|---|---|---|---|"]
    for name, values in times.items():
        t = statistics.median(values)
        lines.append(f"| {name} | {t:.1f} | {base / t:.2f}x | {scores[name]:.3f} |")
    print("\n".join(lines))
    notes = (
        f"The shipped policy, {agent.sampler}-{agent.num_inference_steps}, seeds from 100000, "
        f"`deterministic=True`; {args.threads} torch thread(s); median of {args.rounds} "
        "interleaved rounds."
    )
    title = f"{args.task}: {args.episodes} episodes over {args.n_envs} envs"
    write_result("evaluation", title, "\n".join(lines), notes, args=args)


if __name__ == "__main__":
    main()
