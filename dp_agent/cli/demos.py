"""``dp-agent demos info|merge|split|compact|generate|import-lerobot|export-lerobot``: inspect,
combine, split, compact and generate demonstration files from the command line, and convert
LeRobot datasets.

Bad input raises DemoError (a ValueError); ``dp_agent.cli.main.main`` prints it as one
``error: ...`` line (and an ``error`` event with ``--json-progress``) and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dp_agent.data.store import (
    GYM_ENV_TYPE,
    DemoError,
    DemoReader,
    DemoWriter,
    Episode,
    journal_dir,
    stack_obs,
)
from dp_agent.files import atomic_path
from dp_agent.observations import is_image

# ----------------------------------------------------------------------------------------------
# info


def _format_vector(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def cmd_info(args: argparse.Namespace) -> int:
    with DemoReader(args.file) as reader:
        rows = reader.summary()
        lengths = np.array(reader.lengths)
        size_mb = reader.path.stat().st_size / 1e6
        print(f"file:      {reader.path} ({size_mb:.2f} MB)")
        _print_journal(reader)
        print(f"env:       {reader.env_id}  (env_kwargs {reader.env_args.get('env_kwargs', {})})")
        if len(lengths):
            print(
                f"episodes:  {reader.num_episodes}, steps {reader.total_steps} (length min "
                f"{lengths.min()}, mean {lengths.mean():.1f}, max {lengths.max()})"
            )
        else:
            print("episodes:  0")
        for key in reader.obs_keys:
            shape, dtype = reader.obs_shapes[key], reader.obs_dtypes[key]
            kind = "image" if is_image(shape, dtype) else "vector"
            per_frame = int(np.prod(shape)) * np.dtype(dtype).itemsize
            print(f"obs:       {key} {kind} {shape} {dtype}, {per_frame:,} bytes per frame")
        bounds = reader.action_bounds()
        if bounds is not None:
            print(
                f"actions:   dim {reader.action_dim}, min {_format_vector(bounds[0])}, "
                f"max {_format_vector(bounds[1])}"
            )
        _print_success_and_sources(rows)
        masks = reader.mask_names
        if masks:
            print("masks:     " + ", ".join(f"{m} {len(reader.mask(m))}" for m in masks))
        else:
            print("masks:     none")
    return 0


def _print_journal(reader: DemoReader) -> None:
    """The journal's pending episodes (appended, not yet folded into the file), if any."""
    files, ignored = reader.journal_files, reader.ignored_journal_files
    if files:
        size_mb = sum(p.stat().st_size for p in files) / 1e6
        print(
            f"journal:   {len(reader.pending_names)} episodes pending in {journal_dir(reader.path)}"
            f" ({len(files)} files, {size_mb:.2f} MB); `dp-agent demos compact {reader.path}` "
            "folds them into the file"
        )
    if ignored:
        print(f"journal:   {len(ignored)} files of another (replaced) file ignored: {ignored[0]}")


def _print_success_and_sources(rows: list[dict[str, Any]]) -> None:
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


# ----------------------------------------------------------------------------------------------
# merge


def cmd_merge(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.force:
        raise DemoError(f"{out}: exists; pass --force to overwrite it")
    with ExitStack() as stack:  # every input stays open (and untouched) until OUT is written
        readers = [stack.enter_context(DemoReader(p)) for p in args.inputs]
        first = readers[0]
        for reader in readers[1:]:
            first.require_same_kind(reader)
        total = sum(r.num_episodes for r in readers)
        if total == 0:
            raise DemoError(f"{', '.join(args.inputs)}: data: no episodes to merge")
        with atomic_path(out) as tmp:  # OUT appears whole or not at all
            DemoWriter(tmp, first.env_args).append_episodes(_merged_episodes(readers))
        had_masks = any(r.mask_names for r in readers)
    print(f"wrote {out}: {total} episodes from {len(readers)} files", file=sys.stderr)
    if had_masks:
        print(
            f"note: masks are not carried over; run `dp-agent demos split {out}`", file=sys.stderr
        )
    return 0


def _merged_episodes(readers: list[DemoReader]) -> Iterator[Episode]:
    for reader in readers:
        for ep in reader:
            ep.attrs["merged_from"] = f"{reader.path.name}:{ep.name}"
            yield ep


# ----------------------------------------------------------------------------------------------
# split


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
# compact


def cmd_compact(args: argparse.Namespace) -> int:
    folded = DemoWriter(args.file).compact()
    if folded:
        print(f"{args.file}: folded {folded} pending episodes into the file", file=sys.stderr)
    else:
        print(f"{args.file}: no pending episodes, nothing to do", file=sys.stderr)
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


def _make_env(args: argparse.Namespace) -> Any:
    import gymnasium as gym

    import dp_agent  # noqa: F401  (registers the envs)

    try:
        return gym.make(args.task, **_env_kwargs(args))
    except (gym.error.Error, TypeError, ValueError) as exc:
        raise DemoError(f"--task {args.task}: cannot make this env ({exc})") from exc


def _record(
    args: argparse.Namespace,
    env: Any,
    writer: DemoWriter,
    used_seeds: set[int],
    progress: Any,
    tally: _Tally,
) -> None:
    """Expert episodes from --seed on (skipping ``used_seeds``), saved in batches of --batch-size,
    until --episodes are saved or the attempts run out; ``tally`` counts as it goes."""
    from dp_agent.envs.experts import make_expert

    expert = make_expert(env)
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
    env = _make_env(args)
    out = writer.path
    progress = Progress(args.episodes, desc=f"generate {args.task}", json_lines=args.json_progress)
    progress.event("start", total_steps=args.episodes, out=str(out), task=args.task)
    t0 = time.perf_counter()
    tally = _Tally()
    try:
        _record(args, env, writer, used_seeds, progress, tally)
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


# ----------------------------------------------------------------------------------------------
# LeRobot datasets (the [lerobot] extra: pyarrow, av)


def _with_progress(
    args: argparse.Namespace, total: int, desc: str, work: Callable[[Any], dict], **start: Any
) -> dict[str, Any]:
    """``work(progress)`` under a bar, or JSON lines with --json-progress (a start event, steps,
    then a done event with ``work``'s summary and the seconds it took); returns the summary."""
    from dp_agent.progress import Progress

    progress = Progress(total, desc=desc, json_lines=args.json_progress)
    progress.event("start", total_steps=total, **start)
    t0 = time.perf_counter()
    try:
        summary = work(progress)
    finally:
        progress.close()
    if args.json_progress:
        progress.event("done", **summary, seconds=time.perf_counter() - t0)
    return summary


def cmd_import_lerobot(args: argparse.Namespace) -> int:
    from dp_agent.data.lerobot import LeRobotSource

    out = Path(args.out)
    if out.exists() and not args.force:
        raise DemoError(f"{out}: exists; pass --force to overwrite it")
    image_keys = [] if args.no_images else args.image_key
    source = LeRobotSource(args.dir, args.state_key, image_keys, args.action_key)
    summary = _with_progress(
        args,
        source.num_episodes,
        "import-lerobot",
        lambda progress: source.write_demos(out, args.env_id, progress),
        out=str(out),
        source=str(source.root),
    )
    print(
        f"wrote {out}: {summary['episodes']} episodes, {summary['steps']} steps from LeRobot "
        f"{source.version} dataset {source.root} (obs {', '.join(source.obs_keys)})",
        file=sys.stderr,
    )
    return 0


def cmd_export_lerobot(args: argparse.Namespace) -> int:
    from dp_agent.data.lerobot import export_lerobot, lerobot_libs

    lerobot_libs()  # a missing extra is said before anything is read
    with DemoReader(args.file) as reader:
        summary = _with_progress(
            args,
            reader.num_episodes,
            "export-lerobot",
            lambda progress: export_lerobot(
                reader, args.dir, args.fps, args.repo_id, args.force, progress
            ),
            out=str(args.dir),
            source=str(reader.path),
        )
    videos = ", ".join(summary["videos"]) or "none"
    print(
        f"wrote {args.dir}: {summary['episodes']} episodes, {summary['frames']} frames at "
        f"{summary['fps']} fps (videos: {videos}); load it with "
        f"LeRobotDataset({summary['repo_id']!r}, root={str(args.dir)!r})",
        file=sys.stderr,
    )
    return 0


def _add_conversion_flags(p: argparse.ArgumentParser, force_help: str, func: Callable) -> None:
    """--force and --json-progress, and the command's function."""
    p.add_argument("--force", action="store_true", help=force_help)
    p.add_argument("--json-progress", action="store_true", help="JSON lines on stdout")
    p.set_defaults(func=func)


def _add_lerobot_subcommands(sub: argparse._SubParsersAction) -> None:
    """``demos import-lerobot`` and ``demos export-lerobot``."""
    p = sub.add_parser("import-lerobot", help="convert a LeRobot dataset folder to a demo file")
    p.add_argument("dir", help="LeRobotDataset folder (meta/info.json; v3.0, v2.1 or v2.0)")
    p.add_argument("--out", required=True, help="demonstration file to write (.hdf5)")
    p.add_argument(
        "--state-key", nargs="+", help="vector features to keep (default: observation.state)"
    )
    p.add_argument("--image-key", nargs="+", help="camera features to keep (default: all)")
    p.add_argument("--no-images", action="store_true", help="keep no camera features")
    p.add_argument("--action-key", default="action", help="the action feature")
    p.add_argument("--env-id", help="env_name to record (default: lerobot/<folder name>)")
    _add_conversion_flags(p, "overwrite OUT if it exists", cmd_import_lerobot)

    p = sub.add_parser("export-lerobot", help="write a demo file as a LeRobot v3.0 dataset")
    p.add_argument("file", help="demonstration file (.hdf5)")
    p.add_argument("dir", help="dataset folder to create")
    p.add_argument(
        "--fps", type=int, help="frames per second (default: the imported one's, else 10)"
    )
    p.add_argument("--repo-id", help="the dataset's name, owner/name (default: local/<DIR name>)")
    _add_conversion_flags(p, "replace DIR if it exists", cmd_export_lerobot)


# ----------------------------------------------------------------------------------------------
# wiring


def _add_file_subcommands(sub: argparse._SubParsersAction) -> None:
    """``demos merge``, ``demos split`` and ``demos compact``."""
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

    p = sub.add_parser("compact", help="fold the journal's pending episodes into the file")
    p.add_argument("file", help="demonstration file (.hdf5), changed in place")
    p.set_defaults(func=cmd_compact)


def add_subcommands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``demos info|merge|split|compact|generate|import-lerobot|export-lerobot`` to a CLI's
    subparsers; each sets ``func``."""
    demos = subparsers.add_parser(
        "demos",
        help="inspect, merge, split, compact, generate and convert demonstration files (HDF5)",
        description="Inspect, merge, split, compact, generate and convert (LeRobot) demonstration "
        "files.",
    )
    sub = demos.add_subparsers(dest="demos_command", metavar="COMMAND", required=True)

    p = sub.add_parser("info", help="episodes, steps, env, observation keys, actions, masks")
    p.add_argument("file", help="demonstration file (.hdf5)")
    p.set_defaults(func=cmd_info)

    _add_file_subcommands(sub)

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
    _add_lerobot_subcommands(sub)
    return demos
