"""App performance: time from launch to the first drawn frame, and the task view's frame rate
while a policy runs with the live denoising view on (CPU).

    OMP_NUM_THREADS=1 python benchmarks/gui_perf.py [--policy CKPT] [--seconds 8] [--samples 8]

Uses the shipped TreeDetour policy when installed, else a cpu-small policy trained for a few steps
(same network, so the same cost). Offscreen Qt; prints a table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import add_results_option, write_result  # benchmarks/report.py

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

TREE = "dp_agent/TreeDetour-v0"


def child_first_frame() -> None:
    """Child process: start the app like ``dp-agent gui`` does, print the time of the first
    drawn frame (epoch seconds) and quit."""
    from PyQt6.QtCore import QTimer
    from PyQt6.QtWidgets import QApplication

    from dp_agent.gui.sdl import prepare_environment

    prepare_environment()
    from dp_agent.gui.main_window import MainWindow

    app = QApplication(sys.argv[:1])
    window = MainWindow(env_id=TREE)
    window.show()

    def check() -> None:
        if window.view.frames_drawn > 0:
            print(f"FIRST_FRAME {time.time():.6f}", flush=True)
            window.close()
            app.quit()

    timer = QTimer()
    timer.timeout.connect(check)
    timer.start(1)
    app.exec()


def launch_to_first_frame(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.time()
        out = subprocess.run(
            [sys.executable, __file__, "--child-first-frame"],
            capture_output=True,
            text=True,
            timeout=300,
            env=os.environ,
        )
        line = next(ln for ln in out.stdout.splitlines() if ln.startswith("FIRST_FRAME"))
        times.append(float(line.split()[1]) - t0)
    return times


def quick_policy(tmp: Path) -> Path:
    """A cpu-small policy trained for 2 steps on expert demos (for timing only)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from gui_screenshots import expert_demos

    from dp_agent.config import make_configs
    from dp_agent.training.train import train

    demos = expert_demos(tmp / "demos.hdf5", 10)
    pc, tc = make_configs("cpu-small", None, {"num_steps": 2, "batch_size": 16, "device": "cpu"})
    return train(demos, tmp / "run", pc, tc)


def run_policy(app, window, seconds: float, live: bool, speed: int, loop_fps: float | None):
    """Run the policy for ``seconds``; returns env steps/s, view frames/s, plan and denoise ms."""
    panel = window.policy_panel
    panel.live_check.setChecked(live)
    panel.speed_spin.setValue(speed)
    if loop_fps is not None:
        window.loop.set_fps(loop_fps)
    episodes = 1
    plan_ms, denoise_ms = [], []
    seen = None
    panel.new_episode()
    panel.start()
    view = window.view
    t_end = time.perf_counter() + seconds
    f0, s0 = view.frames_drawn, 0
    while time.perf_counter() < t_end:
        app.processEvents()
        if not panel.running:  # episode over: count it and start the next one
            s0 -= panel.episode_steps
            episodes += 1
            panel.new_episode()
            panel.start()
        result = panel.last_result
        if result is not None and result is not seen and result.replanned:
            seen = result
            plan_ms.append(1000 * result.latency)
            denoise_ms.append(1000 * result.denoise_seconds)
        time.sleep(0.0005)
    panel.stop()
    steps = panel.episode_steps - s0
    frames = view.frames_drawn - f0
    window.loop.set_fps(panel.task.fps)

    def median(xs):
        return sorted(xs)[len(xs) // 2] if xs else float("nan")

    return steps / seconds, frames / seconds, median(plan_ms), median(denoise_ms), steps / episodes


RUNS = [  # name, live view, animation steps/s, loop rate (None: the env's)
    ("live view on, animation 20 steps/s", True, 20, None),
    ("live view on, instant animation", True, 0, None),
    ("live view off", False, 0, None),
    ("live view on, instant, uncapped loop", True, 0, 1000.0),
    ("live view off, uncapped loop", False, 0, 1000.0),
]


def open_window(app):
    """The main window on TreeDetour; returns it and the seconds to its first drawn frame."""
    from dp_agent.gui.main_window import MainWindow

    t0 = time.perf_counter()
    window = MainWindow(env_id=TREE, use_gamepad=False, probe_device=False)
    window.resize(1280, 800)
    window.show()
    while window.view.frames_drawn == 0:
        app.processEvents()
    return window, time.perf_counter() - t0


def load_policy(app, window, policy: Path, samples: int):
    """Load ``policy`` into the Policy tab and wait until it is ready; returns the panel."""
    from dp_agent.gui.main_window import TAB_POLICY

    window.tabs.setCurrentIndex(TAB_POLICY)
    panel = window.policy_panel
    panel.set_seed(0)
    panel.load(policy)
    while panel.loading or panel.policy is None:
        app.processEvents()
        time.sleep(0.001)
    panel.samples_spin.setValue(samples)
    return panel


def start_up_table(launches: list[float], in_process: float) -> list[str]:
    launch_text = ", ".join(f"{t:.2f}" for t in launches)
    return [
        "| measure | value |",
        "|---|---|",
        f"| launch to first frame, new process (s) | {min(launches):.2f} (runs: {launch_text}) |",
        f"| window construction to first frame, in process (s) | {in_process:.2f} |",
    ]


def policy_runs_table(app, window, seconds: float) -> list[str]:
    lines = [
        "| policy run | loop (Hz) | env steps/s | view frames/s | plan (ms) | denoise (ms) "
        "| steps/episode |",
        "|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines))
    fps = window.policy_panel.task.fps
    for name, live, speed, loop_fps in RUNS:
        steps, frames, plan, denoise, length = run_policy(
            app, window, seconds, live, speed, loop_fps
        )
        hz = f"{loop_fps:.0f}" if loop_fps else f"{fps:.0f}"
        lines.append(
            f"| {name} | {hz} | {steps:.1f} | {frames:.1f} | {plan:.0f} | {denoise:.0f} "
            f"| {length:.0f} |"
        )
        print(lines[-1], flush=True)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--launches", type=int, default=3)
    parser.add_argument("--child-first-frame", action="store_true", help=argparse.SUPPRESS)
    add_results_option(parser)
    args = parser.parse_args()
    if args.child_first_frame:
        child_first_frame()
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="dp_agent_perf_"))
    os.environ["DP_AGENT_HOME"] = str(tmp / "home")
    launches = launch_to_first_frame(args.launches)

    import torch
    from PyQt6.QtWidgets import QApplication

    from dp_agent.gui import resources

    app = QApplication(sys.argv[:1])
    window, in_process = open_window(app)
    policy = args.policy or resources.shipped_policy(TREE) or quick_policy(tmp)
    info = load_policy(app, window, policy, args.samples).policy
    about = (
        f"policy {Path(policy).name} ({info.sampler} x{info.num_inference_steps}, "
        f"{args.samples} samples shown), {torch.get_num_threads()} torch thread(s), view "
        f"{window.view.width()}x{window.view.height()}, offscreen Qt"
    )
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}; {about}\n")
    start_up = start_up_table(launches, in_process)
    print("\n".join(start_up) + "\n")
    runs = policy_runs_table(app, window, args.seconds)
    window.close()
    shutil.rmtree(tmp, ignore_errors=True)
    write_result(
        "gui_perf",
        "TreeDetour in the app: start-up and a policy run",
        "\n".join(start_up) + "\n\n" + "\n".join(runs),
        about + ".",
        args=args,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
