"""Diffuser-style planning on Maze2D: success, path length and time to goal over seeded start/goal
pairs, with and without re-planning, with tracking or open-loop actions, warm starts, keep-out
guidance and value guidance; and plan latency per sampler.

    python benchmarks/planning.py [--layouts umaze medium] [--pairs 50] [--threads 1]
        [--rows basic keepout value latency]

Planners: ``demos/pretrained/maze2d_<layout>.safetensors``. The 50 pairs are ``env.reset(seed=
100_000 + i)``; all envs of a row step in lock-step, planning in one batched call per step at
which any of them re-plans. Path length is the distance the agent travelled over the length of
the shortest cell route's polyline (start, the centres of the cells between, goal) less the goal
radius 0.5, successes only.
Keep-out: a circle on the middle cell of the shortest route (``keep_out_zone``: "detour",
r = 0.45 where another route at most 4 cells longer exists; "corridor", r = 0.25 on the cell
centre); rows count only the pairs that have one; "entered" counts plans whose positions enter
it (the zone's own radius; the guide adds a margin of 0.15).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from report import add_results_option, write_result  # benchmarks/report.py

import dp_agent  # noqa: F401  (registers the envs)
from dp_agent.envs.maze2d import GOAL_RADIUS
from dp_agent.guides import GoalDistance, KeepOut, PerEnv
from dp_agent.planning.agent import DiffuserAgent
from dp_agent.planning.planner import Planner

ROOT = Path(__file__).resolve().parents[1]
SEED = 100_000


def make_envs(layout: str, pairs, seeds=None):
    """Envs reset with seeds SEED + i for i in range(pairs) (or in ``seeds``)."""
    seeds = list(range(pairs)) if seeds is None else seeds
    envs = [gym.make(f"dp_agent/Maze2D-{layout}-v0") for _ in seeds]
    obs = [env.reset(seed=SEED + i)[0] for i, env in zip(seeds, envs, strict=True)]
    return envs, obs


def reference_length(maze, start, goal) -> float:
    """The shortest cell route's polyline length (start, inner cell centres, goal), less the
    goal radius: where the episode ends at the earliest."""
    cells = maze.shortest_path(maze.cell_of(*start), maze.cell_of(*goal))
    points = [start, *[maze.cell_center(*c) for c in cells[1:-1]], goal]
    length = sum(np.hypot(*(b - a)) for a, b in zip(points[:-1], points[1:], strict=True))
    return float(max(length - GOAL_RADIUS, 0.1))


def keep_out_zone(maze, start, goal, kind: str):
    """(x, y, r) on the middle cell of the shortest route, or None. "corridor": r = 0.25 on the
    cell centre, to be passed beside it (routes of at least 3 cells); "detour": r = 0.45, most
    of the cell, where the maze without that cell still joins start and goal by a route at most
    4 cells longer (so avoiding it means taking another route)."""
    cells = maze.shortest_path(maze.cell_of(*start), maze.cell_of(*goal))
    if len(cells) < 3:
        return None
    r, c = cells[len(cells) // 2]
    x, y = maze.cell_center(r, c)
    if kind == "corridor":
        return (float(x), float(y), 0.25)
    rows = [list(row) for row in maze.rows]
    rows[r][c] = "#"
    other = type(maze)(["".join(row) for row in rows]).shortest_path(cells[0], cells[-1])
    if other is None or len(other) > len(cells) + 4:
        return None
    return (float(x), float(y), 0.45)


def run_row(planner: Planner, layout: str, pairs, zones=None, seeds=None, **agent_kwargs):
    """Step ``pairs`` envs (or those of ``seeds``) in lock-step with one DiffuserAgent; -> the
    row's measurements."""
    envs, obs = make_envs(layout, pairs, seeds)
    pairs = len(envs)
    agent = DiffuserAgent(planner, **agent_kwargs)
    start = [o["achieved_goal"].copy() for o in obs]
    goal = [o["desired_goal"].copy() for o in obs]
    travelled, steps = np.zeros(pairs), np.full(pairs, -1)
    active = np.ones(pairs, bool)
    plans, entered = 0, 0
    batch = {k: np.stack([o[k] for o in obs]) for k in obs[0]}
    limit = envs[0].spec.max_episode_steps
    for t in range(limit):
        actions, _ = agent.predict(batch, deterministic=True)
        for i in np.flatnonzero(active & (agent._since == 1)):  # envs that just planned
            if zones is None or zones[i] is not None:
                plans += 1
            if zones is not None and zones[i] is not None:
                states = torch.as_tensor(agent.last_plan(i).states)
                entered += int(KeepOut(circles=[zones[i]]).entered(states)[0])
        for i in np.flatnonzero(active):
            o, _, term, trunc, info = envs[i].step(actions[i])
            travelled[i] += float(np.hypot(*(o["achieved_goal"] - batch["achieved_goal"][i])))
            for k in o:
                batch[k][i] = o[k]
            if info["is_success"]:
                steps[i] = t + 1
            if term or trunc:
                active[i] = False
        if not active.any():
            break
    maze = envs[0].unwrapped.maze
    ref = np.array([reference_length(maze, s, g) for s, g in zip(start, goal, strict=True)])
    ok = steps > 0
    return {
        "success": ok.mean(),
        "path": float(np.mean(travelled[ok] / ref[ok])) if ok.any() else 0.0,
        "steps": float(np.mean(steps[ok])) if ok.any() else 0.0,
        "plans": plans,
        "entered": entered,
        "calls": agent.num_plans,
    }


def basic_rows(planner, layout, pairs) -> list[tuple[str, dict]]:
    h = planner.horizon
    return [
        ("re-plan every 8, track", run_row(planner, layout, pairs, replan_every=8)),
        (f"no re-plan (every {h - 1}), track", run_row(planner, layout, pairs, replan_every=h - 1)),
        ("re-plan every 8, planned actions", run_row(planner, layout, pairs, execute="actions")),
        ("re-plan every 8, track, warm start 5/10", run_row(planner, layout, pairs, warm_step=5)),
    ]


def keepout_rows(planner, layout, pairs, scale: float, steps: int, best: int, kind: str):
    envs, obs = make_envs(layout, pairs)
    maze = envs[0].unwrapped.maze
    zones = [keep_out_zone(maze, o["achieved_goal"], o["desired_goal"], kind) for o in obs]
    seeds = [i for i, z in enumerate(zones) if z is not None]  # only the pairs with a zone
    zones = [zones[i] for i in seeds]
    print(f"  {len(seeds)} pairs with a {kind} zone", flush=True)
    first = f"keep-out zone ({len(seeds)} pairs with one), no guidance"
    rows = [(first, run_row(planner, layout, pairs, zones, seeds))]
    for label, kwargs in [
        (f"keep-out guidance α={scale:g}", dict(guide_scale=scale, guide_steps=steps)),
        (f"keep-out best of {best}, no gradient", dict(guide_scale=0.0, num_samples=best)),
        (
            f"keep-out guidance α={scale:g}, best of {best}",
            dict(guide_scale=scale, guide_steps=steps, num_samples=best),
        ),
    ]:
        rows.append((label, run_zone_row(planner, layout, pairs, zones, seeds, **kwargs)))
    return rows


def run_zone_row(planner, layout, pairs, zones, seeds, **kwargs) -> dict:
    """A guided row, each env steered away from its own zone (``PerEnv``)."""
    guide = PerEnv([None if z is None else KeepOut(circles=[z], margin=0.15) for z in zones])
    return run_row(planner, layout, pairs, zones, seeds, guides=[guide], **kwargs)


def value_rows(planner, layout, pairs, scale: float) -> list[tuple[str, dict]]:
    rows = [("no guidance", run_row(planner, layout, pairs))]
    _, obs = make_envs(layout, pairs)
    goals = PerEnv([GoalDistance(o["desired_goal"], weight=planner.horizon) for o in obs])
    rows.append(
        (
            f"goal-distance guidance α={scale:g}",
            run_row(planner, layout, pairs, guides=[goals], guide_scale=scale),
        )
    )
    if planner.value_net is not None:
        value = planner.value_guide()
        guided = run_row(planner, layout, pairs, guides=[value], guide_scale=scale)
        rows.append((f"value guidance α={scale:g}", guided))
    return rows


def tree_detour_lines(episodes: int, scale: float) -> list[str]:
    """Guides on the ordinary action-chunk policy: the shipped TreeDetour policy (its actions
    are positions) with a KeepOut box over the right-hand detour, predict-time guidance."""
    from dp_agent.agent import DiffusionPolicyAgent
    from dp_agent.evaluate import evaluate

    agent = DiffusionPolicyAgent.load(
        ROOT / "demos" / "pretrained" / "tree_detour.safetensors", device="cpu"
    )
    right = KeepOut(boxes=[(300.0, 100.0, 512.0, 440.0)])
    lines = ["| TreeDetour | success | left / right |", "|---|---|---|"]
    rows = [
        ("no guidance", (), 0.0, 1),
        (f"KeepOut right, α={scale:g}", [right], scale, 1),
        ("KeepOut right, best of 8", [right], 0.0, 8),
        (f"KeepOut right, α={scale:g}, best of 8", [right], scale, 8),
    ]
    for label, guides, alpha, n in rows:
        agent.set_guidance(guides, scale=alpha, best_of=n)
        s = evaluate(agent, episodes=episodes, seed=SEED, deterministic=True).summary()
        lines.append(
            f"| {label} | {s['success_rate']:.0%} | "
            f"{s['left_share']:.0%} / {s['right_share']:.0%} |"
        )
    return lines


def latency_rows(planner) -> list[str]:
    obs = np.zeros((1, planner.state_dim), np.float32)
    goal = np.ones((1, 2), np.float32)
    lines = ["| sampler | one plan, batch 1 (ms, median of 10) |", "|---|---|"]
    for name, steps in [("ddim", 10), ("dpmsolver++", 10), ("ddpm", 100)]:
        times = []
        for i in range(12):
            t0 = time.perf_counter()
            planner.plan(obs, goal, sampler=name, num_inference_steps=steps)
            if i >= 2:  # the first calls build the backend
                times.append(time.perf_counter() - t0)
        lines.append(f"| {name}-{steps} | {1000 * statistics.median(times):.1f} |")
    return lines


def rows_table(rows) -> list[str]:
    lines = [
        "| row | success | path / shortest | steps to goal | planning calls | plans entering "
        "the zone |",
        "|---|---|---|---|---|---|",
    ]
    for label, r in rows:
        entered = f"{r['entered']} / {r['plans']}" if r["entered"] or "keep" in label else "-"
        lines.append(
            f"| {label} | {r['success']:.0%} | {r['path']:.2f} | {r['steps']:.1f} "
            f"| {r['calls']} | {entered} |"
        )
    return lines


def record(args, title: str, lines: list[str]) -> None:
    """Print a table and write it to docs/results/planning.md under ``title``."""
    print(f"\n{title}\n\n" + "\n".join(lines), flush=True)
    notes = (
        f"{args.pairs} seeded start/goal pairs (`reset(seed={SEED}+i)`), DDIM-10, "
        f"{args.threads} torch thread(s)."
    )
    write_result("planning", title, "\n".join(lines), notes, args=args)


def run_layout(args, layout: str) -> None:
    planner = Planner.load(args.planners / f"maze2d_{layout}.safetensors")
    name = f"{layout} (H = {planner.horizon})"
    if "basic" in args.rows:
        record(
            args,
            f"{name}: execution and re-planning",
            rows_table(basic_rows(planner, layout, args.pairs)),
        )
    if "keepout" in args.rows:
        rows = keepout_rows(
            planner,
            layout,
            args.pairs,
            args.keepout_scale,
            args.keepout_steps,
            args.keepout_best,
            args.zone,
        )
        record(
            args,
            f"{name}: {args.zone} keep-out zone, α = {args.keepout_scale:g}, "
            f"{args.keepout_steps} gradient steps, best of {args.keepout_best}",
            rows_table(rows),
        )
    if "value" in args.rows:
        record(
            args,
            f"{name}: value guidance α = {args.value_scale:g}",
            rows_table(value_rows(planner, layout, args.pairs, args.value_scale)),
        )
    if "latency" in args.rows:
        record(args, f"{name}: plan latency", latency_rows(planner))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", nargs="*", default=["umaze", "medium"])
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--rows", nargs="+", default=["basic", "keepout", "value", "latency", "treedetour"]
    )
    parser.add_argument("--keepout-scale", type=float, default=30.0)
    parser.add_argument("--keepout-steps", type=int, default=4, help="gradient steps per step")
    parser.add_argument("--keepout-best", type=int, default=16, help="best of N plans")
    parser.add_argument("--zone", choices=["detour", "corridor"], default="detour")
    parser.add_argument("--value-scale", type=float, default=1.0)
    parser.add_argument("--tree-scale", type=float, default=1e5)
    parser.add_argument("--planners", type=Path, default=ROOT / "demos" / "pretrained")
    add_results_option(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"{os.cpu_count()} cores {platform.machine()}, {args.threads} torch thread(s), "
        f"{time.strftime('%Y-%m-%d')}; {args.pairs} pairs (seeds {SEED}..), DDIM-10"
    )
    if "treedetour" in args.rows:
        record(
            args,
            f"TreeDetour action chunks: KeepOut over the right-hand detour, α = "
            f"{args.tree_scale:g}",
            tree_detour_lines(args.pairs, args.tree_scale),
        )
    for layout in args.layouts:
        run_layout(args, layout)


if __name__ == "__main__":
    main()
