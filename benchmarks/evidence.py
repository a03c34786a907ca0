"""Evidence that the method works: a diffusion policy and an MSE behaviour-cloning baseline with
the same backbone, trained on the same shipped demos with the same budget, evaluated over the
same 50 seeds.

    python benchmarks/evidence.py --task tree_detour --steps 2000
    python benchmarks/evidence.py --task pusht --steps 6000 --continue-to 12000 \
        --samplers ddim:10 dpmsolver++:8 ddpm:100
    python benchmarks/evidence.py --task pusht --steps 50000 --preset gpu-standard --device cuda

``--continue-to N`` then resumes both runs to N steps (a second cosine cycle) and adds those
rows. Checkpoints go to runs/evidence/<task>/{diffusion,mse}/, and each objective's checkpoint at
--steps is kept as <objective>_<steps>.safetensors; the table is printed at the end. With
--skip-train the checkpoints already there are evaluated.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from report import add_results_option, write_result  # benchmarks/report.py

from dp_agent.agent import DiffusionPolicyAgent
from dp_agent.data.shipped import SHIPPED_TASKS, shipped_demos
from dp_agent.evaluate import evaluate

TASKS = {name: env_id for env_id, name in SHIPPED_TASKS.items()}


def train(demos: Path, out: Path, objective: str, steps: int, args, resume=False) -> None:
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
        str(steps),
        "--objective",
        objective,
        "--device",
        args.device,
        "--seed",
        str(args.seed),
        "--checkpoint-every",
        "1000",
        "--resume" if resume else "--overwrite",
    ]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    subprocess.run(cmd, check=True)


def score(name: str, checkpoint: Path, args, sampler: str | None = None) -> dict:
    agent = DiffusionPolicyAgent.load(checkpoint)
    if sampler:
        kind, steps = sampler.split(":")
        agent.set_sampler(kind, int(steps))
        name = f"{name}, {kind}-{steps}"
    t0 = time.perf_counter()
    s = evaluate(agent, episodes=args.episodes, seed=args.eval_seed).summary()
    s |= {
        "policy": name,
        "steps": agent.training.step,
        "train_s": agent.training.seconds,
        "eval_s": time.perf_counter() - t0,
    }
    print(json.dumps(s), file=sys.stderr)
    return s


def table(rows: list[dict], tree: bool) -> list[str]:
    """The Markdown table's lines: TreeDetour's routes, or PushT's coverage and score."""
    if tree:
        lines = [
            "| policy | steps | success | left | right | train time |",
            "|---|---|---|---|---|---|",
        ]
        return lines + [
            f"| {r['policy']} | {r['steps']} | {r['success_rate']:.0%} "
            f"| {r.get('left_share', 0):.0%} | {r.get('right_share', 0):.0%} "
            f"| {r['train_s'] / 60:.0f} min |"
            for r in rows
        ]
    lines = [
        "| policy | steps | mean max coverage | score (mean max reward) | success | train time |",
        "|---|---|---|---|---|---|",
    ]
    return lines + [
        f"| {r['policy']} | {r['steps']} | {r['mean_max_coverage']:.3f} "
        f"| {r['mean_max_reward']:.3f} | {r['success_rate']:.0%} "
        f"| {r['train_s'] / 60:.0f} min |"
        for r in rows
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--steps", type=int, default=2000, help="budget for both objectives")
    parser.add_argument("--continue-to", type=int, help="then resume the diffusion run to N")
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--eval-seed", type=int, default=100_000)
    parser.add_argument(
        "--samplers", nargs="+", default=["ddim:10"], help="sampler:steps to evaluate with"
    )
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("runs/evidence"))
    add_results_option(parser)
    args = parser.parse_args()

    env_id = TASKS[args.task]
    demos = shipped_demos(env_id)
    base = args.out / args.task
    budgets = [args.steps] + ([args.continue_to] if args.continue_to else [])
    if not args.skip_train:
        for budget in budgets:
            for objective in ("diffusion", "mse"):
                out = base / objective
                train(demos, out, objective, budget, args, resume=budget != args.steps)
                shutil.copyfile(
                    out / "final.safetensors", base / f"{objective}_{budget}.safetensors"
                )
    rows = []
    for budget in budgets:
        rows += [
            score("diffusion", base / f"diffusion_{budget}.safetensors", args, s)
            for s in args.samplers
        ]
        rows.append(score("MSE baseline", base / f"mse_{budget}.safetensors", args))

    print(
        f"\n{env_id}: {args.episodes} episodes (seeds {args.eval_seed}..), preset {args.preset}; "
        f"{os.cpu_count()} cores {platform.machine()}, {time.strftime('%Y-%m-%d')}\n"
    )
    lines = table(rows, args.task == "tree_detour")
    print("\n".join(lines))
    notes = (
        f"{args.episodes} episodes, seeds {args.eval_seed}.., the same for both policies; "
        f"preset {args.preset}, seed {args.seed}, device {args.device}; train time: the "
        "run's own clock."
    )
    title = f"{env_id}, {args.preset}: diffusion against an MSE baseline"
    write_result("evidence", title, "\n".join(lines), notes, args=args)


if __name__ == "__main__":
    main()
