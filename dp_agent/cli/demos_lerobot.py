"""``dp-agent demos import-lerobot`` and ``export-lerobot``: convert between LeRobot dataset
folders and demo files (the [lerobot] extra: pyarrow, av)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dp_agent.data import DemoError, DemoReader


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
    from dp_agent.data.lerobot_import import LeRobotSource

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
    from dp_agent.data.lerobot_export import export_lerobot
    from dp_agent.data.lerobot_format import lerobot_libs

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


def add_lerobot_subcommands(sub: argparse._SubParsersAction) -> None:
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
