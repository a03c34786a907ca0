"""Evidence that the method works: a diffusion policy and an MSE behaviour-cloning baseline with
the same backbone, trained on the same shipped demos with the same budget, evaluated over the
same 50 seeds.

    python benchmarks/evidence.py --task tree_detour --steps 3000
    python benchmarks/evidence.py --task pusht --steps 20000 --device cuda   # the GPU recipe

Checkpoints go to runs/evidence/<task>/{diffusion,mse}/; the table is printed at the end.
Pass --skip-train to evaluate checkpoints that are already there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from dp_agent.agent import DiffusionPolicyAgent
from dp_agent.evaluate import evaluate
from dp_agent.shipped import SHIPPED_TASKS, shipped_demos

TASKS = {name: env_id for env_id, name in SHIPPED_TASKS.items()}


def train(demos: Path, out: Path, objective: str, args) -> float:
    cmd = [
        sys.executable,
        "-m",
        "dp_agent.cli",
        "train",
        "--demos",
        str(demos),
        "--out",
        str(out),
        "--preset",
        args.preset,
        "--steps",
        str(args.steps),
        "--objective",
        objective,
        "--device",
        args.device,
        "--seed",
        str(args.seed),
        "--checkpoint-every",
        "1000",
    ]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--eval-seed", type=int, default=100_000)
    parser.add_argument("--objectives", nargs="+", default=["diffusion", "mse"])
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("runs/evidence"))
    args = parser.parse_args()

    env_id = TASKS[args.task]
    demos = shipped_demos(env_id)
    rows = []
    for objective in args.objectives:
        out = args.out / args.task / objective
        seconds = None if args.skip_train else train(demos, out, objective, args)
        agent = DiffusionPolicyAgent.load(out / "final.safetensors")
        t0 = time.perf_counter()
        s = evaluate(agent, episodes=args.episodes, seed=args.eval_seed).summary()
        s |= {
            "objective": objective,
            "train_s": seconds or agent.training.get("seconds"),
            "eval_s": time.perf_counter() - t0,
        }
        rows.append(s)
        print(json.dumps(s), file=sys.stderr)

    print(
        f"\n{env_id}: {args.episodes} episodes (seeds {args.eval_seed}..), preset {args.preset}, "
        f"{args.steps} steps; {os.cpu_count()} cores {platform.machine()}, "
        f"{time.strftime('%Y-%m-%d')}"
    )
    if args.task == "tree_detour":
        print("\n| policy | success | left | right | hit tree or timed out | train time |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['objective']} | {r['success_rate']:.0%} | {r['left_share']:.0%} "
                f"| {r['right_share']:.0%} | {1 - r['success_rate']:.0%} "
                f"| {r['train_s'] / 60:.1f} min |"
            )
    else:
        print("\n| policy | mean max coverage | success (coverage > 0.95) | train time |")
        print("|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['objective']} | {r['mean_max_reward']:.3f} | {r['success_rate']:.0%} "
                f"| {r['train_s'] / 60:.1f} min |"
            )


if __name__ == "__main__":
    main()
