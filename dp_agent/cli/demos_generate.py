"""``dp-agent demos generate``: record scripted-expert demonstrations into a demo file, in
atomic batches (a kill loses at most one), skipping the seeds already in it."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dp_agent.data import GYM_ENV_TYPE, DemoError, DemoReader, DemoWriter, Episode, stack_obs


def rollout_expert(
    env: Any, expert: Any, seed: int, obs_type: str | None, max_steps: int = 10_000
) -> tuple[Episode, bool]:
    """One expert episode from ``env.reset(seed=seed)`` until terminated or truncated.
    Returns the episode (attrs: seed, success, source="expert") and whether it succeeded."""
    obs, info = env.reset(seed=seed)
    expert.reset(seed)
    observations, actions, rewards, dones = [], [], [], []
    success = False
    for _ in range(max_steps):
        action = np.asarray(expert.act(obs), dtype=np.float32)
        observations.append(obs)
        actions.append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(float(reward))
        dones.append(bool(terminated or truncated))
        success = bool(info.get("is_success", False))
        if terminated or truncated:
            break
    dones[-1] = True
    episode = Episode(
        name="",
        obs=stack_obs(observations, obs_type),
        actions=np.stack(actions),
        rewards=np.asarray(rewards, np.float32),
        dones=np.asarray(dones),
        attrs={"seed": int(seed), "success": success, "source": "expert"},
    )
    return episode, success


@dataclass
class _Tally:
    saved: int = 0
    attempts: int = 0
    successes: int = 0


def _env_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The env's keyword arguments: ``--env-kwargs`` (a JSON object) with ``--obs-type`` on top;
    they are recorded in the file's env_args."""
    kwargs: dict[str, Any] = {}
    if args.env_kwargs:
        try:
            kwargs = json.loads(args.env_kwargs)
        except ValueError as exc:
            raise DemoError(
                f"--env-kwargs: expected a JSON object, got {args.env_kwargs!r} ({exc})"
            ) from None
        if not isinstance(kwargs, dict):
            raise DemoError(f"--env-kwargs: expected a JSON object, got {args.env_kwargs!r}")
    if args.obs_type:
        kwargs["obs_type"] = args.obs_type
    return kwargs


def _generate_writer(args: argparse.Namespace) -> tuple[DemoWriter, set[int]]:
    """Check the options; returns the writer of --out and the seeds already in it (skipped)."""
    if args.episodes < 1:
        raise DemoError(f"--episodes: expected a positive number, got {args.episodes}")
    if args.batch_size < 1:
        raise DemoError(f"--batch-size: expected a positive number, got {args.batch_size}")
    out = Path(args.out)
    if out.exists() and not args.append:
        raise DemoError(f"{out}: exists; pass --append to add episodes, or choose another --out")
    env_args = {"env_name": args.task, "type": GYM_ENV_TYPE, "env_kwargs": _env_kwargs(args)}
    writer = DemoWriter(out, env_args)
    if not out.exists():
        return writer, set()
    with DemoReader(out) as reader:
        return writer, {r["seed"] for r in reader.summary() if isinstance(r["seed"], int)}


def _make_env_and_expert(args: argparse.Namespace) -> tuple[Any, Any]:
    """The env of --task and its scripted expert; one DemoError when either cannot be made."""
    import gymnasium as gym

    import dp_agent  # noqa: F401  (registers the envs)
    from dp_agent.envs.experts import make_expert

    try:
        env = gym.make(args.task, **_env_kwargs(args))
    except (gym.error.Error, TypeError, ValueError) as exc:
        raise DemoError(f"--task {args.task}: cannot make this env ({exc})") from exc
    try:
        return env, make_expert(env)
    except TypeError:  # an env without a scripted expert (make_expert names what it got)
        env.close()
        raise DemoError(
            f"--task {args.task}: no scripted expert for this env; demos generate records "
            "dp_agent/PushT-v0, dp_agent/TreeDetour-v0 and the dp_agent/Maze2D envs"
        ) from None


def _record(
    args: argparse.Namespace,
    env: Any,
    expert: Any,
    writer: DemoWriter,
    used_seeds: set[int],
    progress: Any,
    tally: _Tally,
) -> None:
    """Expert episodes from --seed on (skipping ``used_seeds``), saved in batches of --batch-size,
    until --episodes are saved or the attempts run out; ``tally`` counts as it goes."""
    max_attempts = args.episodes if args.keep_failures else 2 * args.episodes + 20
    batch: list[Episode] = []
    seed = args.seed
    while tally.saved + len(batch) < args.episodes and tally.attempts < max_attempts:
        if seed in used_seeds:
            seed += 1
            continue
        episode, success = rollout_expert(env, expert, seed, _env_kwargs(args).get("obs_type"))
        tally.attempts += 1
        tally.successes += success
        seed += 1
        if success or args.keep_failures:
            batch.append(episode)
        if len(batch) >= args.batch_size:
            writer.append_episodes(batch)
            tally.saved += len(batch)
            batch = []
        progress.update(tally.saved + len(batch), success_rate=tally.successes / tally.attempts)
    if batch:
        writer.append_episodes(batch)
        tally.saved += len(batch)


def cmd_generate(args: argparse.Namespace) -> int:
    from dp_agent.progress import Progress

    writer, used_seeds = _generate_writer(args)
    env, expert = _make_env_and_expert(args)
    out = writer.path
    progress = Progress(args.episodes, desc=f"generate {args.task}", json_lines=args.json_progress)
    progress.event("start", total_steps=args.episodes, out=str(out), task=args.task)
    t0 = time.perf_counter()
    tally = _Tally()
    try:
        _record(args, env, expert, writer, used_seeds, progress, tally)
    except KeyboardInterrupt:  # every finished batch is saved; say how many
        progress.close()
        print(f"interrupted: {tally.saved} episodes saved in {out}", file=sys.stderr)
        return 130
    finally:
        env.close()
    progress.close()
    writer.compact()  # one self-contained file (the batches went to the journal)
    if args.json_progress:
        seconds = time.perf_counter() - t0
        progress.event("done", path=str(out), episodes=tally.saved, seconds=seconds)
    print(
        f"wrote {tally.saved} episodes to {out} "
        f"(expert success {tally.successes}/{tally.attempts})",
        file=sys.stderr,
    )
    if tally.saved < args.episodes:
        # Not bad input (exit 1, not dp_agent.cli.main's 2), so reported here in the CLI's form.
        message = (
            f"only {tally.saved} of {args.episodes} episodes succeeded in {tally.attempts} "
            "attempts; pass --keep-failures to keep failed ones"
        )
        if args.json_progress:
            progress.event("error", message=message)
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0


def add_generate_subcommand(sub: argparse._SubParsersAction) -> None:
    """``demos generate``."""
    p = sub.add_parser("generate", help="record scripted-expert demonstrations")
    p.add_argument("--task", required=True, help="gymnasium id, e.g. dp_agent/PushT-v0")
    p.add_argument("--episodes", type=int, required=True, help="number of episodes to write")
    p.add_argument("--out", required=True, help="file to write")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode (then +1 each)")
    p.add_argument("--obs-type", default=None, help="observation mode passed to gym.make")
    p.add_argument(
        "--env-kwargs",
        default=None,
        help='more gym.make arguments as JSON, e.g. \'{"maze": "medium"}\'',
    )
    p.add_argument(
        "--keep-failures", action="store_true", help="also keep episodes the expert failed"
    )
    p.add_argument(
        "--append", action="store_true", help="add to an existing file (skips its seeds)"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=10,
        help="episodes per atomic write (a kill loses at most one batch)",
    )
    p.add_argument(
        "--json-progress", action="store_true", help="JSON lines on stdout instead of a bar"
    )
    p.set_defaults(func=cmd_generate)
