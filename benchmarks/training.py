"""Training throughput (samples per second) of each preset on the shipped PushT demos.

    python benchmarks/training.py [--steps 40] [--device auto]

Runs the real training loop (windows, loss, AdamW, EMA) for a few steps per preset, after a
warm-up, and prints one row per preset. Time-to-score is in benchmarks/evidence.py.
"""

from __future__ import annotations

import argparse
import os
import platform
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--presets", nargs="+", default=sorted(PRESETS))
    args = parser.parse_args()
    device = select_device(args.device)
    demos = shipped_demos("dp_agent/PushT-v0")
    print(
        f"machine: {os.cpu_count()} cores {platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {device_name(device)}; "
        f"{time.strftime('%Y-%m-%d')}"
    )
    print("\n| preset | parameters | batch | samples/s | steps/s |")
    print("|---|---|---|---|---|")
    for preset in args.presets:
        pc, tc = make_configs(
            preset,
            train_overrides={
                "num_steps": args.steps,
                "checkpoint_every": 10**9,
                "log_every": args.steps,
                "device": args.device,
            },
        )
        with tempfile.TemporaryDirectory() as tmp:
            progress = Quiet(args.steps)
            train(demos, tmp, pc, tc, progress=progress)
        start = dict(progress.events)["start"]
        last = [f for n, f in progress.events if n == "step"][-1]
        sps = last["samples_per_s"]
        print(
            f"| {preset} | {start['parameters'] / 1e6:.2f} M | {tc.batch_size} | {sps:,.0f} "
            f"| {sps / tc.batch_size:.1f} |"
        )


if __name__ == "__main__":
    main()
