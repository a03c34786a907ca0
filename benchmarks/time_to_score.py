"""Time-to-score: evaluate the checkpoints a training run left behind (copies of its
``last.safetensors`` taken at each ``--checkpoint-every``) and print score against training
minutes, with 95% intervals.

    python benchmarks/time_to_score.py runs/teacher/kp30k/snapshots/*.safetensors \
        [--every 4000] [--sampler ddpm] [--episodes 50] [--json out.json]

Seeds 100000..100000+episodes-1, as everywhere in the README. Training minutes are the run's own
clock (``training.seconds`` in each checkpoint), on whatever shared the machine at the time.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from report import add_results_option, write_result  # benchmarks/report.py

from dp_agent.agent import DiffusionPolicyAgent
from dp_agent.checkpoint import read_header
from dp_agent.evaluate import evaluate


def checkpoints_by_step(paths: list[str], every: int) -> list[tuple[int, float, str]]:
    """(step, training seconds, path), one per step, keeping steps that are multiples of
    ``every`` (and the last)."""
    seen: dict[int, tuple[int, float, str]] = {}
    for path in paths:
        training = read_header(path).training
        seen[int(training.step)] = (int(training.step), float(training.seconds), path)
    rows = sorted(seen.values())
    return [r for r in rows if r[0] % every == 0 or r is rows[-1]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--sampler", default="ddpm")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the sampler's)")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--label", help="the run's name in docs/results (default: its folder)")
    add_results_option(parser)
    args = parser.parse_args()
    print(
        f"{time.strftime('%Y-%m-%d')}; sampler {args.sampler}; {args.episodes} episodes, "
        "seeds from 100000\n"
    )
    lines = [
        "| step | training min | score (mean max reward) | success | mean max coverage |",
        "|---|---|---|---|---|",
    ]
    print("\n".join(lines))
    rows = []
    for step, seconds, path in checkpoints_by_step(args.checkpoints, args.every):
        agent = DiffusionPolicyAgent.load(path, device="cpu")
        agent.set_sampler(args.sampler, args.steps)
        s = evaluate(agent, episodes=args.episodes, seed=100_000, n_envs=args.episodes).summary()
        rows.append({"step": step, "minutes": seconds / 60, **s})
        lo, hi = s["success_rate_ci"]
        cov = s.get("mean_max_coverage", float("nan"))
        lines.append(
            f"| {step} | {seconds / 60:.0f} | {s['mean_max_reward']:.3f} "
            f"({s['mean_max_reward_ci'][0]:.3f}-{s['mean_max_reward_ci'][1]:.3f}) | "
            f"{s['success_rate']:.0%} ({lo:.0%}-{hi:.0%}) | {cov:.3f} |"
        )
        print(lines[-1], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    label = args.label or os.path.commonpath([os.path.dirname(c) or "." for c in args.checkpoints])
    sampler = f"{args.sampler}-{args.steps or agent.num_inference_steps}"
    notes = (
        f"Seeds 100000-{100_000 + args.episodes - 1}, 95% intervals (bootstrap, Wilson); "
        "training minutes: the run's own clock (`training.seconds` in each checkpoint)."
    )
    write_result("time_to_score", f"{label}: {sampler}", "\n".join(lines), notes, args=args)


if __name__ == "__main__":
    main()
