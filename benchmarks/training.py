"""Training throughput (samples per second) of each preset on the shipped PushT demos, per
torch thread count.

    python benchmarks/training.py [--steps 40] [--threads 1 2] [--rounds 3] [--device auto]
        [--precision auto|bf16|fp32]
    python benchmarks/training.py --reference-src DIR [--presets cpu-small] [--rounds 5]
    python benchmarks/training.py --processes 1 2 [--presets cpu-small]

With ``--processes`` it runs the ``dp-agent train`` command in 1 and in N processes (torchrun,
one thread each, the same global batch) and compares samples/s.

With ``--reference-src`` (a local checkout of the original diffusion_policy repository; nothing of
it is copied here) it times one training step of the reference's ConditionalUnet1D, diffusers'
DDPMScheduler, AdamW and the reference's EMAModel against ours on a network of the same shape
(our U-Net with the observations as the conditioning vector, as the reference's low-dim PushT
policy), interleaved in one process.

Runs the real training loop (windows, loss, AdamW, EMA) for a few steps per preset and thread
count, interleaved over ``--rounds`` rounds (this machine is shared: absolute times move, the
ratio measured side by side is what holds), and prints the median of each with the ratio to the
first thread count. Time-to-score is in benchmarks/evidence.py.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from report import add_results_option, write_result  # benchmarks/report.py

from dp_agent.config import PRESETS, make_configs
from dp_agent.data.shipped import shipped_demos
from dp_agent.devices import device_name, select_device, use_bf16
from dp_agent.policy import DiffusionPolicy
from dp_agent.progress import Progress
from dp_agent.training.loop import adamw, ema_decay, ema_update
from dp_agent.training.train import train


class Quiet(Progress):
    def __init__(self, total):
        super().__init__(total, json_lines=True)
        self.events = []

    def event(self, name, **fields):
        self.events.append((name, fields))


def samples_per_s(
    preset: str,
    threads: int,
    steps: int,
    device: str,
    image_demos: str | None = None,
    precision: str = "auto",
) -> tuple[float, dict]:
    """The real loop's samples/s for ``preset``: on the shipped PushT demos, or for an image
    preset on ``image_demos`` (a PushT ``pixels`` file); with the run's peak memory."""
    image = PRESETS[preset].name.endswith("image")
    if image and image_demos is None:
        raise SystemExit(
            f"{preset} trains on images: pass --image-demos FILE (made by dp-agent demos "
            "generate --task dp_agent/PushT-v0 --obs-type pixels)"
        )
    pc, tc = make_configs(
        preset,
        train_overrides={
            "num_steps": steps,
            "checkpoint_every": 10**9,
            "log_every": steps,
            "device": device,
            "num_threads": threads,
            "precision": precision,
        },
    )
    with tempfile.TemporaryDirectory() as tmp:
        progress = Quiet(steps)
        demos = image_demos if image else shipped_demos("dp_agent/PushT-v0")
        train(demos, tmp, pc, tc, progress=progress)
    events = dict(progress.events)
    last = [f for n, f in progress.events if n == "step"][-1]
    info = {
        "parameters": events["start"]["parameters"],
        "batch": tc.batch_size,
        "peak_mb": events["done"].get("peak_memory_mb"),
    }
    return last["samples_per_s"], info


class StepTimer:
    """One training step of a denoiser on PushT-shaped random batches (obs (B, 2, 5), actions
    (B, 16, 2)), ours or the reference's, for an interleaved comparison."""

    def __init__(self, preset: str, batch: int, reference_src: str | None):
        pc, tc = make_configs(
            preset,
            {"obs_dim": 5, "action_dim": 2, "obs_encoder": "identity"},
            {"batch_size": batch},
        )
        self.batch, self.tc = batch, tc
        self.obs = torch.rand(batch, pc.obs_horizon, 5)
        self.actions = torch.rand(batch, pc.pred_horizon, 2) * 2 - 1
        self.policy = DiffusionPolicy(pc)
        self.policy.fit_normalizers(self.obs.reshape(-1, 5), self.actions.reshape(-1, 2))
        self.ema = copy.deepcopy(self.policy).requires_grad_(False)
        self.opt = adamw(self.policy, tc, torch.device("cpu"))
        self.bf16 = use_bf16(tc.precision, torch.device("cpu"))
        self.step_count = 0
        self.reference = None if reference_src is None else self._reference(pc, reference_src)

    def _reference(self, pc, src: str):
        sys.path.insert(0, src)
        from diffusers import DDPMScheduler
        from diffusion_policy.model.diffusion.conditional_unet1d import ConditionalUnet1D
        from diffusion_policy.model.diffusion.ema_model import EMAModel

        model = ConditionalUnet1D(
            input_dim=2,
            global_cond_dim=pc.obs_horizon * 5,
            diffusion_step_embed_dim=pc.step_embed_dim,
            down_dims=list(pc.down_dims),
            kernel_size=pc.kernel_size,
            n_groups=pc.n_groups,
            cond_predict_scale=True,
        )
        ours = sum(p.numel() for p in self.policy.denoiser.parameters())
        theirs = sum(p.numel() for p in model.parameters())
        assert ours == theirs, f"shapes differ: {ours} vs {theirs} parameters"
        scheduler = DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2")
        opt = torch.optim.AdamW(model.parameters(), 1e-4, betas=(0.95, 0.999), weight_decay=1e-6)
        return model, scheduler, opt, EMAModel(copy.deepcopy(model), power=0.75)

    def ours(self) -> None:
        self.step_count += 1
        noise, k = self.policy.draw_training_noise(self.batch, None, torch.device("cpu"))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.policy(self.obs, self.actions, noise, k)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.tc.grad_clip)
        self.opt.step()
        ema_update(self.ema, self.policy, ema_decay(self.step_count))

    def theirs(self) -> None:
        """The reference workspace's step: add_noise, predict ε, MSE, AdamW, EMAModel.step."""
        model, scheduler, opt, ema = self.reference
        noise = torch.randn(self.actions.shape)
        t = torch.randint(0, 100, (self.batch,)).long()
        noisy = scheduler.add_noise(self.actions, noise, t)
        loss = torch.nn.functional.mse_loss(model(noisy, t, global_cond=self.obs.flatten(1)), noise)
        loss.backward()
        opt.step()
        opt.zero_grad()
        ema.step(model)


def processes_samples_per_s(preset: str, processes: int, steps: int) -> float:
    """Global samples/s of the train command on the shipped PushT demos in N processes."""
    demos = str(shipped_demos("dp_agent/PushT-v0"))
    train_args = [
        "-m",
        "dp_agent.cli",
        "train",
        "--demos",
        demos,
        "--preset",
        preset,
        "--steps",
        str(steps),
        "--threads",
        "1",
        "--checkpoint-every",
        str(10**9),
        "--json-progress",
        "--device",
        "cpu",
    ]
    launcher = []
    if processes > 1:
        launcher = [
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(processes),
        ]
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, *launcher, *train_args, "--out", f"{tmp}/run"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [e for e in events if e["event"] == "step"][-1]["samples_per_s"]


def compare_processes(args) -> list[str]:
    runs: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for preset in args.presets:
            for n in args.processes:
                runs.setdefault((preset, n), []).append(
                    processes_samples_per_s(preset, n, args.steps)
                )
    lines = ["| preset | processes | samples/s (global) | vs 1 process |", "|---|---|---|---|"]
    for preset in args.presets:
        base = statistics.median(runs[preset, args.processes[0]])
        for n in args.processes:
            sps = statistics.median(runs[preset, n])
            lines.append(f"| {preset} | {n} | {sps:,.0f} | {sps / base:.2f}x |")
    return lines


def compare_with_reference(args) -> list[str]:
    lines = [
        "| preset | batch | ours in | reference (ms) | ours (ms) | ours faster by | "
        "per-round ratio, median (quartiles) |",
        "|---|---|---|---|---|---|---|",
    ]
    for preset in args.presets:
        timer = StepTimer(preset, PRESETS[preset].train.get("batch_size", 256), args.reference_src)
        times = {"ours": [], "reference": []}
        for _ in range(2):  # warm-up
            timer.ours(), timer.theirs()
        for r in range(args.rounds):  # alternate which goes first, against drift
            order = (("ours", timer.ours), ("reference", timer.theirs))
            for name, fn in order if r % 2 == 0 else order[::-1]:
                t = time.perf_counter()
                for _ in range(args.steps):
                    fn()
                times[name].append((time.perf_counter() - t) / args.steps)
        ours, theirs = statistics.median(times["ours"]), statistics.median(times["reference"])
        # the ratio within each round (the two measured a few seconds apart), and its spread
        ratios = sorted(b / a for a, b in zip(times["ours"], times["reference"], strict=True))
        q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
        lines.append(
            f"| {preset} | {timer.batch} | {'bf16' if timer.bf16 else 'fp32'} | "
            f"{1000 * theirs:.0f} | {1000 * ours:.0f} | {theirs / ours:.2f}x | "
            f"{statistics.median(ratios):.2f}x ({q1:.2f}-{q3:.2f}) |"
        )
        print(lines[-1], flush=True)
    return lines


def compare_threads(args) -> list[str]:
    runs: dict[tuple[str, int], list[float]] = {}
    info: dict[str, dict] = {}
    for _ in range(args.rounds):
        for preset in args.presets:
            for threads in args.threads:
                sps, info[preset] = samples_per_s(
                    preset, threads, args.steps, args.device, args.image_demos, args.precision
                )
                runs.setdefault((preset, threads), []).append(sps)
    base = args.threads[0]
    lines = [
        f"| preset | parameters | batch | threads | samples/s | steps/s | vs {base} "
        "| peak memory |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for preset in args.presets:
        ref = statistics.median(runs[preset, base])
        for threads in args.threads:
            sps = statistics.median(runs[preset, threads])
            lines.append(
                f"| {preset} | {info[preset]['parameters'] / 1e6:.2f} M | {info[preset]['batch']} "
                f"| {threads} | {sps:,.0f} | {sps / info[preset]['batch']:.1f} | {sps / ref:.2f}x "
                f"| {info[preset]['peak_mb'] or float('nan'):,.0f} MB |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--presets", nargs="+", default=sorted(PRESETS))
    parser.add_argument("--reference-src", help="checkout of the original diffusion_policy repo")
    parser.add_argument("--processes", type=int, nargs="+", help="compare N-process runs")
    parser.add_argument("--image-demos", help="a PushT pixels file, for the image presets")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    add_results_option(parser)
    args = parser.parse_args()
    device = select_device(args.device)
    print(
        f"machine: {os.cpu_count()} cores {platform.machine()}, torch {torch.__version__}, "
        f"device {device_name(device)}; {time.strftime('%Y-%m-%d')}; median of {args.rounds} "
        "interleaved rounds"
    )
    presets = ", ".join(args.presets)
    rounds = f"median of {args.rounds} interleaved rounds of {args.steps} steps"
    if args.processes:
        lines = compare_processes(args)
        title = f"{presets}: 1 process against {', '.join(map(str, args.processes[1:]))}"
        notes = f"torchrun, one thread per process, the same global batch; {rounds}."
    elif args.reference_src:
        torch.set_num_threads(args.threads[0])
        lines = compare_with_reference(args)
        title = f"{presets}: a training step against the original's, {args.threads[0]} thread(s)"
        notes = f"Precision {args.precision}; {rounds}, the order alternating."
    else:
        lines = compare_threads(args)
        title = f"{presets}: samples/s per thread count, precision {args.precision}"
        notes = f"The real loop (windows, loss, AdamW, EMA) on the shipped PushT demos; {rounds}."
    print("\n" + "\n".join(lines))
    write_result("training", title, "\n".join(lines), notes, args=args)


if __name__ == "__main__":
    main()
