"""Teacher against its distilled students: score on the 50 evaluation seeds, chunk latency, and
(TreeDetour) the share of each route from one start state.

    python benchmarks/distilled.py --task pusht --teacher demos/pretrained/pusht.safetensors \
        --students runs/distill/pusht/steps8.safetensors runs/distill/pusht/steps2.safetensors
    python benchmarks/distilled.py --task tree_detour \
        --teacher demos/pretrained/tree_detour.safetensors --students runs/distill/tree_detour/*.sa*

Rows: the teacher with DDPM-100, with its own default sampler, and with DDIM on the students'
trailing grid at the fewest steps (what distillation fixes), then every student with its own
default sampler. Scores: seeds 100000-100049, ``deterministic=True`` (each env's own noise
stream from the agent's seed, so a row is what ``dp-agent eval --deterministic`` gives and does
not depend on the rows before it), 95% intervals (bootstrap, Wilson). Latency: one
chunk through ``agent.predict`` for one env (the default backend), interleaved over the rows,
median, one torch thread. Routes: 100 rollouts from one start state, the agent right below the
tree and the goal right above it (the state where the teacher's two routes are most even), each
rollout with its own noise.
"""

from __future__ import annotations

import argparse
import datetime
import os

import gymnasium as gym
import numpy as np
import torch
from chunk_latency import chunk_latency  # benchmarks/chunk_latency.py
from report import add_results_option, write_result  # benchmarks/report.py

from dp_agent.agent import DiffusionPolicyAgent
from dp_agent.evaluate import evaluate

START_SEED = 100_000
SAME_START = [256.0, 450.0, 256.0, 64.0]  # TreeDetour: agent (x, y), goal (x, y), on the axis


def rows_for(teacher: str, students: list[str]) -> list[tuple[str, DiffusionPolicyAgent]]:
    """(label, agent) per row, the agents set to the sampler the row names."""
    rows = []
    ddpm = DiffusionPolicyAgent.load(teacher, device="cpu")
    ddpm.set_sampler("ddpm", 100)
    rows.append(("teacher, DDPM-100", ddpm))
    own = DiffusionPolicyAgent.load(teacher, device="cpu")
    rows.append((f"teacher, {own.sampler}-{own.num_inference_steps} (its default)", own))
    fewest = min(DiffusionPolicyAgent.load(s).num_inference_steps for s in students)
    raw = DiffusionPolicyAgent.load(teacher, device="cpu")
    raw.policy.config.timestep_spacing = "trailing"  # the students' grid, not distilled
    raw.set_sampler("ddim", fewest)
    rows.append((f"teacher, ddim-{fewest} on the trailing grid (no distillation)", raw))
    for path in sorted(students, key=lambda p: -DiffusionPolicyAgent.load(p).num_inference_steps):
        agent = DiffusionPolicyAgent.load(path, device="cpu")
        rows.append(
            (f"student, ddim-{agent.num_inference_steps} ({os.path.basename(path)})", agent)
        )
    return rows


def same_start_routes(agent, n: int) -> tuple[float, float, float]:
    """(left, right, success) shares of n rollouts that all start from ``SAME_START``."""
    venv = gym.vector.SyncVectorEnv([agent.make_env for _ in range(n)])
    obs, _ = venv.reset(seed=START_SEED, options={"reset_to_state": SAME_START})
    agent.reset(n)
    side, success = [None] * n, np.zeros(n, bool)
    active, start = np.ones(n, bool), np.ones(n, bool)
    while active.any():
        actions, _ = agent.predict(obs, episode_start=start)
        start[:] = False
        obs, _, terminated, truncated, infos = venv.step(actions)
        for i in np.flatnonzero(active):
            if infos.get("_side", np.zeros(n, bool))[i] and infos["side"][i] is not None:
                side[i] = infos["side"][i]
            success[i] |= bool(infos.get("is_success", np.zeros(n, bool))[i])
        active &= ~(terminated | truncated)
    venv.close()
    return side.count("left") / n, side.count("right") / n, float(success.mean())


def row_cells(agent, label: str, t: float | None, tree: bool, episodes: int) -> list[str]:
    """One row's cells: the label, network calls, latency (if timed), then the scores."""
    s = evaluate(
        agent, episodes=episodes, seed=START_SEED, n_envs=episodes, deterministic=True
    ).summary()
    lo, hi = s["success_rate_ci"]
    cells = [label, str(agent.num_inference_steps)]
    if t is not None:
        cells += [f"{t * 1e3:.1f}", f"{t * 1e3 / agent.config.action_horizon:.2f}"]
    success = f"{s['success_rate']:.0%} ({lo:.0%}-{hi:.0%})"
    if tree:
        left, right, _ = same_start_routes(agent, 100)
        return cells + [
            success,
            f"{s.get('left_share', 0):.0%}",
            f"{s.get('right_share', 0):.0%}",
            f"{left:.0%} / {right:.0%}",
        ]
    r_lo, r_hi = s["mean_max_reward_ci"]
    return cells + [
        f"{s['mean_max_reward']:.3f} ({r_lo:.3f}-{r_hi:.3f})",
        success,
        f"{s.get('mean_max_coverage', float('nan')):.3f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["pusht", "tree_detour"], required=True)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--students", nargs="+", required=True)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument(
        "--repeats", type=int, default=20, help="chunks timed per row (0: no latency columns)"
    )
    add_results_option(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    students = [s for s in args.students if "last" not in s]
    rows = rows_for(args.teacher, students)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{datetime.date.today()}; {os.cpu_count()} cores; one torch thread; {args.episodes} "
        f"episodes from seed {START_SEED}; load average {load:.1f}\n"
    )
    latency = (
        chunk_latency([a for _, a in rows], args.repeats) if args.repeats else [None] * len(rows)
    )
    tree = args.task == "tree_detour"
    head = "| policy | network calls | " + (
        "chunk (ms) | per env step (ms) | " * bool(args.repeats)
    )
    head += (
        "success | left | right | same start: left / right (100) |"
        if tree
        else ("score (mean max reward) | success | mean max coverage |")
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    print("\n".join(lines))
    for (label, agent), t in zip(rows, latency, strict=True):
        lines.append("| " + " | ".join(row_cells(agent, label, t, tree, args.episodes)) + " |")
        print(lines[-1], flush=True)
    title = (
        f"{'TreeDetour' if tree else 'PushT'}: {os.path.basename(args.teacher)} against "
        f"{', '.join(os.path.basename(s) for s in students)}"
    )
    notes = (
        f"Seeds {START_SEED}-{START_SEED + args.episodes - 1}, `deterministic=True`, 95% intervals."
    )
    if args.repeats:
        notes += (
            " Chunk: one chunk through `agent.predict` for one env (one torch thread, the "
            f"default backend), median of {args.repeats} interleaved over the rows."
        )
    write_result("distilled", title, "\n".join(lines), notes, args=args)


if __name__ == "__main__":
    main()
