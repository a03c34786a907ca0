"""The headless quickstart: train on a task's shipped demos, evaluate against the shipped
pretrained policy, and write a picture of the denoising (for machines with no display)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def run(env_id: str, steps: int, episodes: int, out: Path, samples: int = 16) -> int:
    from dp_agent.agent import DiffusionPolicyAgent
    from dp_agent.cli.picture import denoising_strip, save_png
    from dp_agent.config import make_configs
    from dp_agent.data.shipped import shipped_demos, shipped_policy
    from dp_agent.evaluate import evaluate
    from dp_agent.training.train import train

    demos = shipped_demos(env_id)
    if demos is None:
        raise FileNotFoundError(f"no shipped demonstrations for {env_id}")
    print(f"1/3 training on {demos.name} for {steps} steps (preset cpu-small)", file=sys.stderr)
    pc, tc = make_configs(
        "cpu-small", train_overrides={"num_steps": steps, "checkpoint_every": steps}
    )
    final = train(demos, out, pc, tc)

    print(f"2/3 evaluating over {episodes} seeded episodes", file=sys.stderr)
    rows = [("trained now", DiffusionPolicyAgent.load(final))]
    pretrained = shipped_policy(env_id)
    if pretrained is not None:
        rows.append(("shipped pretrained", DiffusionPolicyAgent.load(pretrained)))
    print(f"\n{'policy':<20} {'score':>7} {'success':>8} {'left/right':>11}")
    for name, agent in rows:
        s = evaluate(agent, episodes=episodes, seed=100_000).summary()
        sides = f"{s['left_share']:.0%}/{s['right_share']:.0%}" if "left_share" in s else "-"
        print(f"{name:<20} {s['mean_max_reward']:>7.3f} {s['success_rate']:>8.0%} {sides:>11}")

    print(f"\n3/3 drawing {samples} sampled plans as they are denoised", file=sys.stderr)
    agent = rows[0][1]  # the policy trained just now
    env = agent.make_env()
    obs, _ = env.reset(seed=100_000)
    history = np.repeat(np.asarray(obs, np.float32)[None], agent.config.obs_horizon, axis=0)
    agent.set_sampler("ddpm", agent.config.num_train_steps)
    traj = agent.sample(history, samples, seed=0, return_trajectory=True)
    image = denoising_strip(env.unwrapped.render_frame(512), traj, env.unwrapped.world_size)
    path = save_png(image, out / "denoising.png")
    print(f"wrote {final} and {path}")
    return 0


def add_subcommand(sub) -> None:
    p = sub.add_parser("quickstart", help="headless demo: train, evaluate, draw the denoising")
    p.add_argument("--task", default="dp_agent/TreeDetour-v0")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--out", type=Path, default=Path("runs/quickstart"))
    p.set_defaults(func=lambda a: run(a.task, a.steps, a.episodes, a.out))
