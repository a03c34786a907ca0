"""Teacher against students on the same episode seeds, over several noise streams.

    python benchmarks/paired_score.py --teacher demos/pretrained/pusht.safetensors \
        --teacher-sampler ddpm:100 --students demos/pretrained/pusht_distilled.safetensors \
        [--episodes 50] [--seed 100000] [--noise-seeds 4]

One evaluation of 50 seeds with one noise stream per episode (``dp-agent eval
--deterministic``) scores each start once; on PushT a start from which the teacher succeeds in
one draw of four moves the 50-seed mean by 0.02 either way. Here every policy runs the same
episode seeds with noise seeds 0..N-1 (``--noise-seed``, ``deterministic=True``), and the
comparison is paired: per episode seed, the mean max reward over the N draws, then the mean
difference student - teacher with a 95% bootstrap interval over the episode seeds. Also
printed: each noise seed's mean, and the starts where any policy's per-seed mean is below 0.9.
"""

from __future__ import annotations

import argparse
import datetime
import os

import numpy as np
import torch
from report import add_results_option, write_result  # benchmarks/report.py

from dp_agent.agent import DiffusionPolicyAgent
from dp_agent.evaluate import bootstrap_interval, evaluate


def scores(path: str, sampler: str | None, episodes: int, seed: int, noise_seeds: int):
    """(noise seeds, episodes) max rewards of one checkpoint."""
    out = []
    for noise_seed in range(noise_seeds):
        agent = DiffusionPolicyAgent.load(path, device="cpu", seed=noise_seed)
        if sampler:
            name, steps = sampler.split(":")
            agent.set_sampler(name, int(steps))
        result = evaluate(agent, episodes=episodes, seed=seed, n_envs=episodes, deterministic=True)
        out.append(result.max_rewards)
    return np.asarray(out)


def paired_difference(student: np.ndarray, teacher: np.ndarray):
    """Mean over episode seeds of (student - teacher) per-seed means, and its 95% interval
    (bootstrap over the episode seeds, each seed's pair kept together)."""
    diff = student.mean(axis=0) - teacher.mean(axis=0)
    return float(diff.mean()), bootstrap_interval(diff)


def table(rows: dict[str, np.ndarray], n: int) -> list[str]:
    """Each policy's mean per noise seed and over all draws (95% interval over the seeds)."""
    lines = [
        "| policy | " + " | ".join(f"noise seed {i}" for i in range(n)) + " | all draws |",
        "|---" * (n + 2) + "|",
    ]
    for label, r in rows.items():
        per_seed = r.mean(axis=0)
        lo, hi = bootstrap_interval(per_seed)
        cells = " | ".join(f"{m:.3f}" for m in r.mean(axis=1))
        lines.append(f"| {label} | {cells} | {per_seed.mean():.3f} ({lo:.3f}-{hi:.3f}) |")
    return lines


def differences(rows: dict[str, np.ndarray], first_seed: int) -> list[str]:
    """Each student minus the teacher, paired by seed; then the starts below 0.9."""
    teacher = next(iter(rows.values()))
    lines = []
    for label, r in list(rows.items())[1:]:
        d, (lo, hi) = paired_difference(r, teacher)
        lines.append(
            f"{label} - teacher: {d:+.3f} (95% interval {lo:+.3f} to {hi:+.3f}), paired by seed"
        )
    hard = sorted({i for r in rows.values() for i in np.flatnonzero(r.mean(axis=0) < 0.9)})
    if hard:
        lines += ["", "Starts below 0.9 for some policy (per-seed mean over the draws):"]
        for i in hard:
            per = ", ".join(f"{label} {r[:, i].mean():.2f}" for label, r in rows.items())
            lines.append(f"- seed {first_seed + i}: {per}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--teacher-sampler", default="ddpm:100", help="name:steps")
    parser.add_argument("--students", nargs="+", required=True)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=100_000, help="first episode seed")
    parser.add_argument("--noise-seeds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    add_results_option(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n, seeds = args.noise_seeds, args.episodes
    rows = {
        f"teacher, {args.teacher_sampler}": scores(
            args.teacher, args.teacher_sampler, seeds, args.seed, n
        )
    }
    for path in args.students:
        rows[f"student {os.path.basename(path)}"] = scores(path, None, seeds, args.seed, n)
    about = (
        f"episode seeds {args.seed}-{args.seed + seeds - 1}; noise seeds 0-{n - 1}; "
        "deterministic=True"
    )
    print(
        f"{datetime.datetime.now().isoformat(timespec='minutes')}; {os.cpu_count()} cores; "
        f"{about}\n"
    )
    lines, notes = table(rows, n), differences(rows, args.seed)
    print("\n".join(lines) + "\n\n" + "\n".join(notes))
    title = (
        f"{os.path.basename(args.teacher)} ({args.teacher_sampler}) against "
        f"{', '.join(os.path.basename(p) for p in args.students)}, {about}"
    )
    write_result("paired_score", title, "\n".join(lines), "\n".join(notes), args=args)


if __name__ == "__main__":
    main()
