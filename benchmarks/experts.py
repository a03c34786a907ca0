"""How well and how fast the scripted experts solve their tasks: a markdown table per task.

    OMP_NUM_THREADS=1 python benchmarks/experts.py --episodes 50 [--task pusht|tree_detour|all]

Seeds 0..N-1 (the reference PushT evaluation uses 50 fixed initial states).
"""

from __future__ import annotations

import argparse
import platform
import time

import gymnasium as gym
import numpy as np
from report import add_results_option, write_result  # benchmarks/report.py

import dp_agent  # noqa: F401  (registers the envs)
from dp_agent.envs import PUSHT_ID, TREE_DETOUR_ID
from dp_agent.envs.experts import make_expert


def run(env_id: str, episodes: int, verbose: bool) -> list[dict]:
    env = gym.make(env_id)
    expert = make_expert(env)
    results = []
    for seed in range(episodes):
        start = time.perf_counter()
        obs, info = env.reset(seed=seed)
        expert.reset(seed)
        max_coverage, success, length = info.get("coverage", 0.0), False, 0
        while True:
            obs, reward, terminated, truncated, info = env.step(expert.act(obs))
            length += 1
            max_coverage = max(max_coverage, info.get("coverage", 0.0))
            success = success or info["is_success"]
            if terminated or truncated:
                break
        seconds = time.perf_counter() - start
        r = {
            "seed": seed,
            "max_coverage": max_coverage,
            "success": success,
            "length": length,
            "seconds": seconds,
            "side": info.get("side"),
            "hit_tree": info.get("hit_tree", False),
        }
        results.append(r)
        if verbose:
            extra = f"side={r['side']}" if env_id == TREE_DETOUR_ID else f"cov={max_coverage:.3f}"
            print(
                f"  seed {seed:3d}: success={success!s:5} len={length:3d} {extra} {seconds:.2f} s"
            )
    return results


def pusht_table(res: list[dict]) -> list[str]:
    secs = np.array([r["seconds"] for r in res])
    return [
        "| mean max coverage | success (coverage > 0.95) | mean episode length "
        "| seconds per episode (mean / max) |",
        "| --- | --- | --- | --- |",
        f"| {np.mean([r['max_coverage'] for r in res]):.3f} "
        f"| {np.mean([r['success'] for r in res]):.0%} "
        f"| {np.mean([r['length'] for r in res]):.1f} "
        f"| {secs.mean():.2f} / {secs.max():.2f} |",
    ]


def tree_detour_table(res: list[dict]) -> list[str]:
    n = len(res)
    return [
        "| success | hit the tree | left | right | mean episode length | s per episode |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {sum(r['success'] for r in res) / n:.0%} "
        f"| {sum(r['hit_tree'] for r in res) / n:.0%} "
        f"| {sum(r['side'] == 'left' for r in res) / n:.0%} "
        f"| {sum(r['side'] == 'right' for r in res) / n:.0%} "
        f"| {np.mean([r['length'] for r in res]):.1f} "
        f"| {np.mean([r['seconds'] for r in res]):.3f} |",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--episodes", type=int, default=50, help="seeds 0..N-1 (default 50)")
    p.add_argument("--task", choices=["pusht", "tree_detour", "all"], default="all")
    p.add_argument("--quiet", action="store_true", help="only the tables, no per-episode lines")
    add_results_option(p)
    args = p.parse_args()

    print(
        f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    tasks = [
        ("pusht", "PushT", PUSHT_ID, pusht_table),
        ("tree_detour", "TreeDetour", TREE_DETOUR_ID, tree_detour_table),
    ]
    for key, name, env_id, table in tasks:
        if args.task not in (key, "all"):
            continue
        title = f"{name} expert, {args.episodes} episodes (seeds 0..{args.episodes - 1})"
        print(f"\n### {title}")
        lines = table(run(env_id, args.episodes, not args.quiet))
        print("\n" + "\n".join(lines))
        write_result("experts", title, "\n".join(lines), args=args)


if __name__ == "__main__":
    main()
