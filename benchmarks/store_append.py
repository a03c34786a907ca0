"""Demo store: the time of one append against the size of the file, with the journal (an append
writes one small file beside the demo file) and with a full rewrite of the file per append (the
store's old way, and still the cost of ``DemoWriter.compact``).

    python benchmarks/store_append.py [--sizes-mb 10 100 1000] [--appends 7] [--rewrites 3]

Episodes of 150 frames of 96x96x3 uint8 noise (incompressible: 4.1 MB each, stored as they come),
as the PushT pixel task records them. Each file is built in one batch (one pass, no journal),
flushed to disk, then ``--appends`` single-episode appends are timed (median), then
``--rewrites`` appends each followed by ``compact()`` (median). The files live in a temporary
folder under ``--dir`` that is removed at the end. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from report import add_results_option, write_result  # benchmarks/report.py

from dp_agent.data import DemoWriter, Episode

ENV_ARGS = {"env_name": "dp_agent/PushT-v0", "env_kwargs": {"obs_type": "pixels"}}
FRAMES, SIDE = 150, 96
EPISODE_MB = FRAMES * SIDE * SIDE * 3 / 1e6


def noise_episode(seed: int) -> Episode:
    """One episode of ``FRAMES`` noise images, a 2-D agent position and actions."""
    rng = np.random.default_rng(seed)
    obs = {
        "image": rng.integers(0, 256, size=(FRAMES, SIDE, SIDE, 3), dtype=np.uint8),
        "agent_pos": rng.uniform(0, 512, size=(FRAMES, 2)).astype(np.float32),
    }
    actions = rng.uniform(0, 512, size=(FRAMES, 2)).astype(np.float32)
    dones = np.zeros(FRAMES, bool)
    dones[-1] = True
    return Episode("", obs, actions, np.zeros(FRAMES, np.float32), dones, {"seed": seed})


def build(path: Path, size_mb: float) -> int:
    """A file of about ``size_mb`` MB of noise episodes, written in one batch; returns how many."""
    n = max(1, math.ceil(size_mb / EPISODE_MB))

    def episodes() -> Iterator[Episode]:
        for seed in range(n):
            yield noise_episode(seed)

    DemoWriter(path, ENV_ARGS).append_episodes(episodes())
    return n


def time_appends(writer: DemoWriter, first_seed: int, count: int, compact: bool) -> list[float]:
    """Seconds of each of ``count`` appends of one episode (then a compaction, if ``compact``).
    The episodes are made before the clock starts."""
    seconds = []
    for seed in range(first_seed, first_seed + count):
        ep = noise_episode(seed)
        t0 = time.perf_counter()
        writer.append_episode(ep.obs, ep.actions, ep.rewards, ep.dones, ep.attrs)
        if compact:
            writer.compact()
        seconds.append(time.perf_counter() - t0)
    if not compact:
        writer.compact()  # the next size starts from a file without a journal
    return seconds


def measure(folder: Path, size_mb: float, appends: int, rewrites: int) -> dict[str, float]:
    path = folder / f"noise_{size_mb:g}MB.hdf5"
    t0 = time.perf_counter()
    n = build(path, size_mb)
    built_s = time.perf_counter() - t0
    os.sync()  # the kernel's writeback of the new file must not delay the fsyncs timed below
    actual_mb = path.stat().st_size / 1e6
    writer = DemoWriter(path)
    journal = time_appends(writer, 10_000, appends, compact=False)
    rewrite = time_appends(writer, 20_000, rewrites, compact=True)
    path.unlink()
    return {
        "size_mb": actual_mb,
        "episodes": n,
        "built_s": built_s,
        "journal_ms": 1e3 * statistics.median(journal),
        "journal_min_ms": 1e3 * min(journal),
        "rewrite_ms": 1e3 * statistics.median(rewrite),
    }


def table(rows: list[dict[str, float]]) -> str:
    base = rows[0]["journal_ms"]
    lines = [
        "| file size | episodes | append (journal), median (min) | vs smallest file | append + "
        "compact (full rewrite), median |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size_mb']:,.0f} MB | {r['episodes']} | {r['journal_ms']:.0f} ms "
            f"({r['journal_min_ms']:.0f}) | "
            f"{r['journal_ms'] / base:.2f}x | {r['rewrite_ms']:,.0f} ms |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--appends", type=int, default=7, help="journal appends timed per size")
    parser.add_argument("--rewrites", type=int, default=3, help="append+compact timed per size")
    parser.add_argument("--dir", default="/tmp", help="where the temporary files go")
    add_results_option(parser)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="store_append.", dir=args.dir) as folder:
        for size_mb in args.sizes_mb:
            row = measure(Path(folder), size_mb, args.appends, args.rewrites)
            print(
                f"{row['size_mb']:.0f} MB ({row['episodes']} episodes, built in "
                f"{row['built_s']:.0f} s): append {row['journal_ms']:.0f} ms, "
                f"append + compact {row['rewrite_ms']:.0f} ms",
                flush=True,
            )
            rows.append(row)
    print()
    print(table(rows))
    ratio = rows[-1]["journal_ms"] / rows[0]["journal_ms"]
    print(f"\nappend at the largest file / at the smallest: {ratio:.2f}x (acceptance: within 2x)")
    notes = (
        f"Episodes of {FRAMES} frames of {SIDE}x{SIDE}x3 uint8 noise ({EPISODE_MB:.1f} MB "
        f"each, incompressible); median of {args.appends} appends ({args.rewrites} with a "
        f"compaction). Append at the largest file / at the smallest: {ratio:.2f}x."
    )
    sizes = " ".join(f"{mb:g}" for mb in args.sizes_mb)
    write_result(
        "store_append", f"Append time against file size ({sizes} MB)", table(rows), notes, args=args
    )


if __name__ == "__main__":
    main()
