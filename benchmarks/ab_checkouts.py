"""This checkout against another checkout of dp-agent, interleaved: the chunk latency of
``DiffusionPolicyAgent.predict`` on shipped policies (each backend asked for), and training
throughput (samples/s of ``dp-agent train``), so that a change meant to keep speed (a
refactor) is shown to keep it.

    python benchmarks/ab_checkouts.py --baseline-python OTHER/.venv/bin/python
        [--policies pusht.safetensors,pusht_distilled_fast.safetensors,tree_detour.safetensors]
        [--backends auto,eager] [--rounds 15] [--per-round 10]
        [--train-runs 0] [--train-steps 150]

Each side runs in its own Python (its own virtualenv, where dp-agent is installed from that
checkout): one worker process per side stays up and is asked, in turn (A, B, A, B, ...), to
time ``--per-round`` fresh chunks (the agent reset before each ``predict``, so each call samples
one). Medians over rounds; the ratio is this checkout's median over the baseline's. Training:
``--train-runs`` short runs per side, alternating, each reporting its own samples/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import add_results_option, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORKER = r"""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from dp_agent.agent import DiffusionPolicyAgent
from dp_agent.data.shipped import package_dir
agents = {}
for line in sys.stdin:
    name, backend, n = json.loads(line)
    key = (name, backend)
    if key not in agents:
        agent = DiffusionPolicyAgent.load(package_dir() / "pretrained" / name, device="cpu")
        if hasattr(agent, "set_backend"):
            agent.set_backend(backend)
        else:  # an older checkout: the backend was the policy's
            agent.policy.set_backend(backend)
        obs = agent.observation_space.sample() * 0 + agent.observation_space.low
        agents[key] = (agent, np.asarray(obs, np.float32))
        for _ in range(3):  # warm-up (and graph builds)
            agent.reset(); agent.predict(agents[key][1])
    agent, obs = agents[key]
    times = []
    for _ in range(n):
        agent.reset()
        t0 = time.perf_counter()
        agent.predict(obs)
        times.append(time.perf_counter() - t0)
    print(json.dumps(times), flush=True)
"""
NEW_DATA, OLD_DATA = "from dp_agent.data.shipped", "from dp_agent.shipped"  # the move to data/


def start_worker(python: str, threads: int) -> subprocess.Popen:
    probe = subprocess.run(
        [python, "-c", "import dp_agent.data.shipped"], capture_output=True, text=True
    )
    code = WORKER if probe.returncode == 0 else WORKER.replace(NEW_DATA, OLD_DATA)
    return subprocess.Popen(
        [python, "-c", code, str(threads)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def ask(worker: subprocess.Popen, name: str, backend: str, n: int) -> list[float]:
    worker.stdin.write(json.dumps([name, backend, n]) + "\n")
    worker.stdin.flush()
    line = worker.stdout.readline()
    if not line:
        raise RuntimeError(f"the worker for {name} ({backend}) ended; see its error above")
    return json.loads(line)


def chunk_rows(args, sides: dict[str, str]) -> list[str]:
    workers = {side: start_worker(python, args.threads) for side, python in sides.items()}
    rows = []
    try:
        for name in args.policies.split(","):
            for backend in args.backends.split(","):
                medians = {side: [] for side in sides}
                for _ in range(args.rounds):
                    for side, worker in workers.items():  # A, B, A, B, ...
                        times = ask(worker, name, backend, args.per_round)
                        medians[side].append(statistics.median(times))
                ms = {side: 1e3 * statistics.median(m) for side, m in medians.items()}
                lo_hi = {
                    side: f"{1e3 * min(m):.2f}-{1e3 * max(m):.2f}" for side, m in medians.items()
                }
                rows.append(
                    f"| {name} | {backend} | {ms['this']:.2f} ({lo_hi['this']}) | "
                    f"{ms['baseline']:.2f} ({lo_hi['baseline']}) | "
                    f"{ms['this'] / ms['baseline']:.2f} |"
                )
                print(rows[-1], flush=True)
    finally:
        for worker in workers.values():
            worker.stdin.close()
            worker.wait()
    return [
        "| policy | backend | this checkout, ms per chunk (round medians' range) | baseline, "
        "ms | ratio |",
        "|---|---|---|---|---|",
        *rows,
    ]


def train_samples_per_s(python: str, out: Path, steps: int, threads: int) -> float:
    """One short ``dp-agent train`` run on the shipped PushT keypoint demos; its samples/s."""
    demos = ROOT / "demos" / "pusht_keypoints.hdf5"
    cmd = [python, "-m", "dp_agent.cli.main", "train", "--demos", str(demos), "--out", str(out)]
    cmd += ["--preset", "cpu-small", "--steps", str(steps), "--checkpoint-every", str(steps)]
    cmd += ["--threads", str(threads), "--json-progress", "--overwrite"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    events += [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    rates = [e["samples_per_s"] for e in events if "samples_per_s" in e]
    if not rates:
        raise RuntimeError(f"no samples/s reported by {' '.join(cmd)}")
    return statistics.median(rates[len(rates) // 2 :])  # the second half: past the warm-up


def train_rows(args, sides: dict[str, str]) -> list[str]:
    rates = {side: [] for side in sides}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.train_runs):
            for side, python in sides.items():
                rate = train_samples_per_s(python, Path(tmp) / side, args.train_steps, args.threads)
                rates[side].append(rate)
                print(f"train {side}: {rate:.0f} samples/s", flush=True)
    med = {side: statistics.median(r) for side, r in rates.items()}
    return [
        "| training (cpu-small, PushT keypoints) | this checkout, samples/s | baseline | ratio |",
        "|---|---|---|---|",
        f"| {args.train_runs} runs of {args.train_steps} steps each, alternating | "
        f"{med['this']:.0f} ({min(rates['this']):.0f}-{max(rates['this']):.0f}) | "
        f"{med['baseline']:.0f} ({min(rates['baseline']):.0f}-{max(rates['baseline']):.0f}) | "
        f"{med['this'] / med['baseline']:.2f} |",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-python", required=True, help="the other checkout's python")
    parser.add_argument("--baseline-label", default="baseline", help="what the baseline is")
    parser.add_argument("--policies", default="pusht.safetensors,pusht_distilled_fast.safetensors")
    parser.add_argument("--backends", default="auto,eager")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-runs", type=int, default=0)
    parser.add_argument("--train-steps", type=int, default=150)
    add_results_option(parser)
    args = parser.parse_args(argv)
    sides = {"this": sys.executable, "baseline": args.baseline_python}
    started = time.perf_counter()
    lines = chunk_rows(args, sides) if args.rounds else []
    if args.train_runs:
        lines += ["", *train_rows(args, sides)]
    table = "\n".join(lines)
    print(table)
    if not args.no_results:
        notes = (
            f"Baseline: {args.baseline_label}. {args.rounds} rounds of {args.per_round} chunks "
            f"per side, interleaved; {time.perf_counter() - started:.0f} s in all."
        )
        title = f"This checkout against {args.baseline_label}"
        write_result("ab_checkouts", title, table, notes=notes, args=args)


if __name__ == "__main__":
    main()
