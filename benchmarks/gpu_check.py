"""GPU check: train each GPU preset for a fixed number of steps on the shipped PushT demos, in
fp32 and with bf16 autocast, and print steps/s and peak memory (``benchmarks/gpu_check.sh``
also runs torchrun on all visible GPUs).

    python benchmarks/gpu_check.py [--steps 300] [--device cuda]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from report import add_results_option, write_result  # benchmarks/report.py
from training import Quiet  # benchmarks/training.py: a Progress that keeps the events

from dp_agent.config import PRESETS, make_configs
from dp_agent.data.shipped import shipped_demos
from dp_agent.devices import device_name, select_device
from dp_agent.training.train import train


def run(preset: str, precision: str, steps: int, device: str) -> tuple[float, float]:
    """(steps/s after the first log interval, peak memory in MiB) of one short run."""
    log = max(1, steps // 10)
    overrides = {
        "num_steps": steps,
        "checkpoint_every": 10**9,
        "log_every": log,
        "device": device,
        "precision": precision,
    }
    pc, tc = make_configs(preset, train_overrides=overrides)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    progress = Quiet(steps)
    with tempfile.TemporaryDirectory() as tmp:
        train(shipped_demos("dp_agent/PushT-v0"), tmp, pc, tc, progress=progress)
    step_events = [f for n, f in progress.events if n == "step"]
    done = dict(progress.events)["done"]
    return step_events[-1]["samples_per_s"] / tc.batch_size, done["peak_memory_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--presets", nargs="+", default=[p for p in PRESETS if "gpu" in p])
    add_results_option(parser)
    args = parser.parse_args()
    device = select_device(args.device)
    print(f"device {device_name(device)}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}")
    lines = [
        "| preset | precision | batch | steps/s | samples/s | peak memory (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    print("\n" + "\n".join(lines))
    for preset in args.presets:
        batch = make_configs(preset)[1].batch_size
        for precision in ("fp32", "bf16"):
            steps_per_s, peak = run(preset, precision, args.steps, args.device)
            lines.append(
                f"| {preset} | {precision} | {batch} | {steps_per_s:.2f} | "
                f"{steps_per_s * batch:,.0f} | {peak:,.0f} |"
            )
            print(lines[-1], flush=True)
    notes = (
        f"Device {device_name(device)}; each preset trained {args.steps} steps on the "
        "shipped PushT demos; steps/s after the first log interval."
    )
    write_result(
        "gpu_check", f"GPU presets on {device_name(device)}", "\n".join(lines), notes, args=args
    )


if __name__ == "__main__":
    main()
