"""``dp-agent demos info|merge|split|generate``: inspect, combine, split and generate
demonstration files from the command line."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .store import (
    GYM_ENV_TYPE,
    DemoError,
    DemoReader,
    DemoWriter,
    Episode,
    replace_durably,
    stack_obs,
    temp_path_for,
)

EXIT_BAD_INPUT = 2


def _reports_demo_errors(func: Callable[[argparse.Namespace], int]):
    """Bad input (DemoError) -> one ``error: ...`` line on stderr and exit code 2, no traceback
    (plus an ``error`` event on stdout with ``--json-progress``)."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except DemoError as exc:
            _report_error(args, str(exc))
            return EXIT_BAD_INPUT

    return wrapper


def _report_error(args: argparse.Namespace, message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    if getattr(args, "json_progress", False):
        print(json.dumps({"event": "error", "message": message}), flush=True)


# ----------------------------------------------------------------------------------------------
# info


def _format_vector(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


@_reports_demo_errors
def cmd_info(args: argparse.Namespace) -> int:
    with DemoReader(args.file) as reader:
        rows = reader.summary()
        lengths = np.array(reader.lengths)
        size_mb = reader.path.stat().st_size / 1e6
        print(f"file:      {reader.path} ({size_mb:.2f} MB)")
        print(f"env:       {reader.env_id}  (env_kwargs {reader.env_args.get('env_kwargs', {})})")
        if len(lengths):
            print(
                f"episodes:  {reader.num_episodes}, steps {reader.total_steps} (length min "
                f"{lengths.min()}, mean {lengths.mean():.1f}, max {lengths.max()})"
            )
        else:
            print("episodes:  0")
        for key in reader.obs_keys:
            print(f"obs:       {key} {reader.obs_shapes[key]} {reader.obs_dtypes[key]}")
        bounds = reader.action_bounds()
        if bounds is not None:
            print(
                f"actions:   dim {reader.action_dim}, min {_format_vector(bounds[0])}, "
                f"max {_format_vector(bounds[1])}"
            )
        known = [r["success"] for r in rows if r["success"] is not None]
        if known:
            share = sum(known) / len(known)
            note = "" if len(known) == len(rows) else f" ({len(rows) - len(known)} not recorded)"
            print(f"success:   {sum(known)}/{len(known)} ({100 * share:.1f}%){note}")
        else:
            print("success:   not recorded")
        sources = sorted({r["source"] for r in rows if r["source"] is not None})
        if sources:
            counts = ", ".join(f"{s} {sum(r['source'] == s for r in rows)}" for s in sources)
            print(f"source:    {counts}")
        masks = reader.mask_names
        if masks:
            print("masks:     " + ", ".join(f"{m} {len(reader.mask(m))}" for m in masks))
        else:
            print("masks:     none")
    return 0


# ----------------------------------------------------------------------------------------------
# merge


@_reports_demo_errors
def cmd_merge(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.force:
        raise DemoError(f"{out}: exists; pass --force to overwrite it")
    readers = [DemoReader(p) for p in args.inputs]
    try:
        first = readers[0]
        for reader in readers[1:]:
            _check_same_kind(first, reader)
        had_masks = any(r.mask_names for r in readers)

        def episodes() -> Iterator[Episode]:
            for reader in readers:
                for ep in reader:
                    ep.attrs["merged_from"] = f"{reader.path.name}:{ep.name}"
                    yield ep

        total = sum(r.num_episodes for r in readers)
        if total == 0:
            raise DemoError(f"{', '.join(args.inputs)}: data: no episodes to merge")
        # Build the result next to OUT, then rename it over OUT (inputs stay open and untouched).
        tmp = temp_path_for(out)
        try:
            DemoWriter(tmp, first.env_args).append_episodes(episodes())
            replace_durably(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        for reader in readers:
            reader.close()
    print(f"wrote {out}: {total} episodes from {len(readers)} files", file=sys.stderr)
    if had_masks:
        print(
            f"note: masks are not carried over; run `dp-agent demos split {out}`", file=sys.stderr
        )
    return 0


def _check_same_kind(first: DemoReader, other: DemoReader) -> None:
    """Merged files need one env, one set of observation keys/shapes and one action dimension."""
    field = "data attribute env_args"
    if other.env_id != first.env_id:
        raise DemoError(
            f"{other.path}: {field}: env {other.env_id!r} differs from {first.env_id!r} in "
            f"{first.path}; merge needs files of one env"
        )
    if first.num_episodes == 0 or other.num_episodes == 0:
        return
    if other.obs_shapes != first.obs_shapes:
        raise DemoError(
            f"{other.path}: data/{other.names[0]}/obs: expected observations {first.obs_shapes} "
            f"like {first.path}, got {other.obs_shapes}"
        )
    if other.action_dim != first.action_dim:
        raise DemoError(
            f"{other.path}: data/{other.names[0]}/actions: expected action dimension "
            f"{first.action_dim} like {first.path}, got {other.action_dim}"
        )


# ----------------------------------------------------------------------------------------------
# split


@_reports_demo_errors
def cmd_split(args: argparse.Namespace) -> int:
    if not 0.0 <= args.valid_fraction < 1.0:
        raise DemoError(f"--valid-fraction: expected a value in [0, 1), got {args.valid_fraction}")
    with DemoReader(args.file) as reader:
        names = list(reader.names)
    if not names:
        raise DemoError(f"{args.file}: data: no episodes to split")
    n_valid = round(len(names) * args.valid_fraction)
    if args.valid_fraction > 0 and len(names) >= 2:
        n_valid = min(max(n_valid, 1), len(names) - 1)  # both sets non-empty
    valid_idx = set(np.random.default_rng(args.seed).permutation(len(names))[:n_valid].tolist())
    valid = [n for i, n in enumerate(names) if i in valid_idx]
    train = [n for i, n in enumerate(names) if i not in valid_idx]
    DemoWriter(args.file).set_masks({"train": train, "valid": valid})
    print(
        f"{args.file}: mask/train {len(train)} episodes, mask/valid {len(valid)}", file=sys.stderr
    )
    return 0


# ----------------------------------------------------------------------------------------------
# generate


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


@_reports_demo_errors
def cmd_generate(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import dp_agent  # noqa: F401  (registers the envs)
    from dp_agent.envs.experts import make_expert
    from dp_agent.progress import Progress

    if args.episodes < 1:
        raise DemoError(f"--episodes: expected a positive number, got {args.episodes}")
    if args.batch_size < 1:
        raise DemoError(f"--batch-size: expected a positive number, got {args.batch_size}")
    out = Path(args.out)
    if out.exists() and not args.append:
        raise DemoError(f"{out}: exists; pass --append to add episodes, or choose another --out")
    env_kwargs = {"obs_type": args.obs_type} if args.obs_type else {}
    try:
        env = gym.make(args.task, **env_kwargs)
    except (gym.error.Error, TypeError, ValueError) as exc:
        raise DemoError(f"--task {args.task}: cannot make this env ({exc})") from exc
    env_args = {"env_name": args.task, "type": GYM_ENV_TYPE, "env_kwargs": env_kwargs}
    writer = DemoWriter(out, env_args)
    used_seeds: set[int] = set()
    if out.exists():
        with DemoReader(out) as reader:
            used_seeds = {r["seed"] for r in reader.summary() if isinstance(r["seed"], int)}
    expert = make_expert(env)

    max_attempts = args.episodes if args.keep_failures else 2 * args.episodes + 20
    progress = Progress(args.episodes, desc=f"generate {args.task}", json_lines=args.json_progress)
    progress.event("start", total_steps=args.episodes, out=str(out), task=args.task)
    t0 = time.perf_counter()
    batch: list[Episode] = []
    saved = attempts = successes = 0
    seed = args.seed
    try:
        while saved + len(batch) < args.episodes and attempts < max_attempts:
            if seed in used_seeds:
                seed += 1
                continue
            episode, success = rollout_expert(env, expert, seed, args.obs_type)
            attempts += 1
            successes += success
            seed += 1
            if success or args.keep_failures:
                batch.append(episode)
            if len(batch) >= args.batch_size:
                writer.append_episodes(batch)
                saved += len(batch)
                batch = []
            progress.update(saved + len(batch), success_rate=successes / attempts)
        if batch:
            writer.append_episodes(batch)
            saved += len(batch)
    except KeyboardInterrupt:
        progress.close()
        print(f"interrupted: {saved} episodes saved in {out}", file=sys.stderr)
        return 130
    finally:
        env.close()
    progress.close()
    if args.json_progress:
        seconds = time.perf_counter() - t0
        progress.event("done", path=str(out), episodes=saved, seconds=seconds)
    print(
        f"wrote {saved} episodes to {out} (expert success {successes}/{attempts})",
        file=sys.stderr,
    )
    if saved < args.episodes:
        _report_error(
            args,
            f"only {saved} of {args.episodes} episodes succeeded in {attempts} attempts; "
            "pass --keep-failures to keep failed ones",
        )
        return 1
    return 0


# ----------------------------------------------------------------------------------------------
# wiring


def add_subcommands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``demos info|merge|split|generate`` to a CLI's subparsers; each sets ``func``."""
    demos = subparsers.add_parser(
        "demos",
        help="inspect, merge, split and generate demonstration files (HDF5, robomimic layout)",
        description="Inspect, merge, split and generate demonstration files.",
    )
    sub = demos.add_subparsers(dest="demos_command", metavar="COMMAND", required=True)

    p = sub.add_parser("info", help="episodes, steps, env, observation keys, actions, masks")
    p.add_argument("file", help="demonstration file (.hdf5)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("merge", help="merge files of one env into a new file")
    p.add_argument("out", help="file to write")
    p.add_argument("inputs", nargs="+", help="files to merge, in order")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("split", help="write mask/train and mask/valid")
    p.add_argument("file", help="demonstration file (.hdf5), changed in place")
    p.add_argument(
        "--valid-fraction", type=float, default=0.1, help="share of episodes to hold out"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random split")
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("generate", help="record scripted-expert demonstrations")
    p.add_argument("--task", required=True, help="gymnasium id, e.g. dp_agent/PushT-v0")
    p.add_argument("--episodes", type=int, required=True, help="number of episodes to write")
    p.add_argument("--out", required=True, help="file to write")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode (then +1 each)")
    p.add_argument("--obs-type", default=None, help="observation mode passed to gym.make")
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
    return demos


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry: ``python -m dp_agent.demos.cli demos info FILE``."""
    parser = argparse.ArgumentParser(prog="dp-agent")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_subcommands(subparsers)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
