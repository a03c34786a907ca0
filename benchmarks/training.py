"""Training throughput (samples per second) of each preset on the shipped PushT demos, per
torch thread count.

    python benchmarks/training.py [--steps 40] [--threads 1 2] [--rounds 3] [--device auto]

Runs the real training loop (windows, loss, AdamW, EMA) for a few steps per preset and thread
count, interleaved over ``--rounds`` rounds (this machine is shared: absolute times move, the
ratio measured side by side is what holds), and prints the median of each with the ratio to the
first thread count. Time-to-score is in benchmarks/evidence.py.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import torch

from dp_agent.config import PRESETS, make_configs
from dp_agent.devices import device_name, select_device
from dp_agent.progress import Progress
from dp_agent.shipped import shipped_demos
from dp_agent.train import train


class Quiet(Progress):
    def __init__(self, total):
        super().__init__(total, json_lines=True)
        self.events = []

    def event(self, name, **fields):
        self.events.append((name, fields))


def samples_per_s(preset: str, threads: int, steps: int, device: str) -> tuple[float, dict]:
    pc, tc = make_configs(
        preset,
        train_overrides={"num_steps": steps, "checkpoint_every": 10**9, "log_every": steps,
                         "device": device, "num_threads": threads},
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        progress = Quiet(steps)
        train(shipped_demos("dp_agent/PushT-v0"), tmp, pc, tc, progress=progress)
    start = dict(progress.events)["start"]
    last = [f for n, f in progress.events if n == "step"][-1]
    return last["samples_per_s"], {"parameters": start["parameters"], "batch": tc.batch_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--presets", nargs="+", default=sorted(PRESETS))
    args = parser.parse_args()
    device = select_device(args.device)
    print(
        f"machine: {os.cpu_count()} cores {platform.machine()}, torch {torch.__version__}, "
        f"device {device_name(device)}; {time.strftime('%Y-%m-%d')}; median of {args.rounds} "
        "interleaved rounds"
    )
    runs: dict[tuple[str, int], list[float]] = {}
    info: dict[str, dict] = {}
    for _ in range(args.rounds):
        for preset in args.presets:
            for threads in args.threads:
                sps, info[preset] = samples_per_s(preset, threads, args.steps, args.device)
                runs.setdefault((preset, threads), []).append(sps)
    base = args.threads[0]
    print(f"\n| preset | parameters | batch | threads | samples/s | steps/s | vs {base} |")
    print("|---|---|---|---|---|---|---|")
    for preset in args.presets:
        ref = statistics.median(runs[preset, base])
        for threads in args.threads:
            sps = statistics.median(runs[preset, threads])
            print(
                f"| {preset} | {info[preset]['parameters'] / 1e6:.2f} M | {info[preset]['batch']} "
                f"| {threads} | {sps:,.0f} | {sps / info[preset]['batch']:.1f} | {sps / ref:.2f}x |"
            )


if __name__ == "__main__":
    main()
