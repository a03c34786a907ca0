"""``dp-agent demos info|merge|split|compact|generate|import-lerobot|export-lerobot``: inspect,
combine, split, compact and generate demonstration files from the command line, and convert
LeRobot datasets. The ``generate`` command lives in ``demos_generate``, the LeRobot ones in
``demos_lerobot``.

Bad input raises DemoError (a ValueError); ``dp_agent.cli.main.main`` prints it as one
``error: ...`` line (and an ``error`` event with ``--json-progress``) and exits with code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from dp_agent.cli.demos_generate import add_generate_subcommand
from dp_agent.cli.demos_lerobot import add_lerobot_subcommands
from dp_agent.data import DemoError, DemoReader, DemoWriter, Episode
from dp_agent.data.journal import journal_dir
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
    add_generate_subcommand(sub)
    add_lerobot_subcommands(sub)
    return demos
