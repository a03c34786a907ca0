"""Save a PNG screenshot of each panel of the app to docs/screenshots/ (offscreen Qt).

    python benchmarks/gui_screenshots.py [--policy CKPT] [--planner CKPT] [--train-steps 300]
        [--out DIR] [--only record demos train policy pusht planner keepout]

The Demos and Train tabs are also shot in a 1024 x 640 window (``*_1024x640.png``).

Uses the shipped TreeDetour demos and policy when they are installed; otherwise it records expert
demos into a temporary file, and trains the policy shown in the Policy tab through the Train tab
(a real ``dp_agent.cli train`` child process, ``--train-steps`` steps of the cpu-small preset).
The planner shots (Maze2D umaze, a Diffuser-style planner steered by a goal click and a keep-out
zone) use ``--planner`` or the shipped ``demos/pretrained/maze2d_umaze.safetensors``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

ROOT = Path(__file__).resolve().parents[1]
TREE = "dp_agent/TreeDetour-v0"
MAZE = "dp_agent/Maze2D-umaze-v0"


def wait(app, seconds: float = 0.0, until=None, timeout: float = 600.0) -> None:
    """Run the Qt event loop for ``seconds``, or until ``until()`` is true."""
    end = time.perf_counter() + (timeout if until else seconds)
    while time.perf_counter() < end:
        app.processEvents()
        if until is not None and until():
            return
        time.sleep(0.005)
    if until is not None:
        raise TimeoutError("the app did not reach the expected state in time")


def expert_demos(path: Path, episodes: int) -> Path:
    import gymnasium as gym

    from dp_agent.cli.demos_generate import rollout_expert
    from dp_agent.data import DemoWriter
    from dp_agent.envs.experts import make_expert

    env = gym.make(TREE)
    expert = make_expert(env)
    DemoWriter(path, {"env_name": TREE, "env_kwargs": {}}).append_episodes(
        rollout_expert(env, expert, seed, None)[0] for seed in range(episodes)
    )
    return path


def small_window_shots(window, shot, tabs: list[int]) -> None:
    """The given tabs in a 1024 x 640 window (a laptop screen): nothing may be cut off."""
    size = window.size()
    shown = window.tabs.currentIndex()
    window.resize(1024, 640)
    for index in tabs:
        window.tabs.setCurrentIndex(index)
        shot(f"{window.tabs.tabText(index).lower()}_1024x640")
    window.tabs.setCurrentIndex(shown)
    window.resize(size)


class Shots:
    """Takes the shots, one method per panel, in one window driven like a person would."""

    def __init__(self, app, window, out: Path, tmp: Path, demos: Path, args):
        self.app, self.window, self.out, self.tmp, self.demos, self.args = (
            app,
            window,
            out,
            tmp,
            demos,
            args,
        )

    def shot(self, name: str) -> None:
        wait(self.app, 0.1)
        path = self.out / f"{name}.png"
        self.window.grab().save(str(path))
        print(f"wrote {path}")

    def record(self) -> bool:
        """Drive the target with the expert's targets, mid-episode."""
        from dp_agent.envs.experts import make_expert
        from dp_agent.gui.main_window import TAB_RECORD

        self.window.tabs.setCurrentIndex(TAB_RECORD)
        self.window.loop.stop()
        rec = self.window.record_panel
        expert = make_expert(rec.task.env)
        expert.reset(3)
        rec.on_press(*rec.task.agent_point())
        for _ in range(22):
            rec.on_drag(*expert.act(rec.task.obs))
            rec.tick()
        self.shot("record")
        rec.on_release(*rec.target)
        rec.save_episode()
        return True

    def demos_tab(self) -> bool:
        """The demo file, one episode selected and replayed half-way (also at 1024 x 640)."""
        from dp_agent.gui.main_window import TAB_DEMOS, TAB_TRAIN

        self.window.tabs.setCurrentIndex(TAB_DEMOS)
        browser = self.window.browser_panel
        browser.open_file(self.demos)
        browser.select(browser.rows[min(5, len(browser.rows) - 1)]["name"])
        browser.replay_selected()
        for _ in range(len(browser.replay_episode) // 2):
            browser.tick()
        self.shot("demos")
        small_window_shots(self.window, self.shot, [TAB_DEMOS, TAB_TRAIN])
        browser.stop_replay()
        return True

    def train(self) -> bool:
        """A real training run through the panel, half-way and done."""
        from dp_agent.gui.main_window import TAB_TRAIN

        self.window.tabs.setCurrentIndex(TAB_TRAIN)
        train = self.window.train_panel
        train.add_demos(self.demos)
        train.set_preset("cpu-small")
        train.steps_spin.setValue(self.args.train_steps)
        train.out_edit.setText(str(self.tmp / "run"))
        train._out_edited = True
        train.start()
        total = self.args.train_steps
        wait(self.app, until=lambda: train.progress.value() >= total // 2, timeout=1800)
        self.shot("train_running")
        wait(self.app, until=lambda: not train.running, timeout=1800)
        if train.state != "done":
            print(f"training failed: {train.error_label.text()}", file=sys.stderr)
            return False
        self.shot("train")
        return True

    def policy(self) -> bool:
        """The shipped policy (or the one just trained), denoising live, then scrubbed."""
        policy_path = self._policy_path()
        if policy_path is None:
            print("no policy for the Policy tab: pass --policy or add train", file=sys.stderr)
            return False
        panel = self._run_policy(policy_path)
        total_steps = panel.plan.frames[-1].total
        self.shot("policy")
        panel.player.scrub.setValue(total_steps // 2)
        self.shot("policy_denoising_mid")
        panel.x0_check.setChecked(True)  # the clean chunk predicted at that step
        self.shot("policy_denoising_mid_pred_x0")
        panel.x0_check.setChecked(False)
        panel.player.scrub.setValue(0)
        self.shot("policy_noise")
        panel.pause_button.setChecked(False)
        wait(self.app, until=lambda: panel.plans_completed >= 3 or not panel.running, timeout=120)
        panel.pause_button.setChecked(True)
        self.shot("policy_later")
        panel.stop()
        return True

    def _policy_path(self):
        from dp_agent.gui import resources

        path = self.args.policy or resources.shipped_policy(TREE)
        if path is None and "train" in self.args.only:
            path = self.window.train_panel.final_path
        return path

    def _run_policy(self, policy_path):
        """Load ``policy_path`` and run it until its first plan is executed; then pause."""
        from dp_agent.gui.main_window import TAB_POLICY

        self.window.tabs.setCurrentIndex(TAB_POLICY)
        panel = self.window.policy_panel
        wait(self.app, until=lambda: not panel.loading)  # the Train tab hands its result over
        if str(panel.agent_path) != str(policy_path):
            panel.load(policy_path)
            wait(self.app, until=lambda: not panel.loading and panel.policy is not None)
        self.window.loop.start()
        panel.samples_spin.setValue(self.args.samples)
        panel.speed_spin.setValue(0)
        panel.set_seed(self.args.seed)
        panel.new_episode()
        panel.start()
        wait(
            self.app,
            until=lambda: panel.plans_completed >= 1 and panel.episode_steps >= 1,
            timeout=120,
        )
        panel.pause_button.setChecked(True)
        wait(self.app, 0.2)
        return panel

    def planner(self) -> bool:
        """Maze2D umaze: the planner's samples mid-denoising around a keep-out zone, then the
        plans steered to a clicked goal, the executed plan highlighted."""
        from dp_agent.gui import resources
        from dp_agent.gui.main_window import TAB_POLICY

        path = self.args.planner or resources.shipped_policy(MAZE)
        if path is None:
            print(
                "no planner: pass --planner or ship demos/pretrained/maze2d_umaze.safetensors",
                file=sys.stderr,
            )
            return False
        self.window.set_task(MAZE)
        self.window.tabs.setCurrentIndex(TAB_POLICY)
        panel = self.window.policy_panel
        panel.load(path)
        wait(self.app, until=lambda: not panel.loading and panel.policy is not None)
        self.window.loop.stop()
        panel.samples_spin.setValue(self.args.samples)
        panel.speed_spin.setValue(0)
        self._maze_episode(panel, (1, 1), (3, 1))  # from one end of the U to the other
        self._drag_zone(panel, (2.45, 1.2), 0.4)  # over the top corridor's upper half
        self._plan(panel)
        total = panel.plan.frames[-1].total
        panel.player.scrub.setValue(total - 2)  # the paths take shape in the last steps
        self.shot("planner_maze")
        panel.player.scrub.setValue(total)
        self.shot("planner_zone")
        self._click(panel, (3.5, 2.6))  # a goal of one's own, in the right-hand corridor
        self._plan(panel)
        for _ in range(6):  # execute a few steps of the steered plan
            self._step(panel)
        self.shot("planner_steered")
        small_window_shots(self.window, self.shot, [TAB_POLICY])  # policy_1024x640.png
        panel.stop()
        return True

    def keepout(self) -> bool:
        """TreeDetour: a keep-out zone over the right-hand detour guides the shipped policy's
        sampled chunks (16 of them) to the left of the tree."""
        from dp_agent.gui import resources
        from dp_agent.gui.main_window import TAB_POLICY

        path = self.args.policy or resources.shipped_policy(TREE)
        if path is None:
            print("no TreeDetour policy: pass --policy", file=sys.stderr)
            return False
        self.window.set_task(TREE)
        self.window.tabs.setCurrentIndex(TAB_POLICY)
        panel = self.window.policy_panel
        if str(panel.agent_path) != str(path):
            panel.load(path)
            wait(self.app, until=lambda: not panel.loading and panel.policy is not None)
        self.window.loop.stop()
        panel.samples_spin.setValue(self.args.samples)
        panel.speed_spin.setValue(0)
        panel.set_seed(self.args.seed)
        panel.new_episode()
        self._drag_zone(panel, (390.0, 250.0), 90.0)
        self._plan(panel)
        self.shot("policy_keepout")
        panel.stop()
        panel.clear_zones()
        return True

    def _maze_episode(self, panel, start_cell, goal_cell) -> None:
        panel.set_seed(self.args.seed)
        panel.new_episode()
        env = panel.task.env
        panel.task.obs, _ = env.reset(
            seed=self.args.seed, options={"start_cell": start_cell, "goal_cell": goal_cell}
        )
        panel._show_env()

    def _drag_zone(self, panel, centre, radius) -> None:
        """As a person draws it: press at the centre, drag out, release."""
        panel.on_press(*centre)
        for f in (0.3, 0.6, 1.0):
            panel.on_drag(centre[0] + f * radius, centre[1])
        panel.on_release(centre[0] + radius, centre[1])

    def _click(self, panel, point) -> None:
        panel.on_press(*point)
        panel.on_release(*point)

    def _plan(self, panel) -> None:
        """Run until the next re-plan has been shown, then hold."""
        done = panel.plans_completed
        panel.start()
        wait(self.app, until=lambda: (panel.tick(), panel.plans_completed > done)[1], timeout=120)
        wait(self.app, 0.2)

    def _step(self, panel) -> None:
        steps = panel.episode_steps
        wait(self.app, until=lambda: (panel.tick(), panel.episode_steps > steps)[1], timeout=120)

    def pusht(self) -> bool:
        """PushT: recording with the live coverage."""
        from dp_agent.envs.experts import make_expert
        from dp_agent.gui.main_window import TAB_RECORD

        self.window.set_task("dp_agent/PushT-v0")
        self.window.tabs.setCurrentIndex(TAB_RECORD)
        self.window.loop.stop()
        rec = self.window.record_panel
        rec.task.reset(seed=7)
        expert = make_expert(rec.task.env)
        expert.reset(7)
        rec.target = rec.task.agent_point()
        rec.on_press(*rec.target)
        for _ in range(120):
            rec.on_drag(*expert.act(rec.task.obs))
            rec.tick()
            if rec.state != "recording":
                break
        self.shot("record_pusht")
        return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    parser.add_argument("--policy", help="checkpoint for the Policy tab (default: shipped)")
    parser.add_argument("--planner", help="Maze2D umaze planner (default: shipped)")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1, help="episode and sampling seed")
    panels = ["record", "demos", "train", "policy", "pusht", "planner", "keepout"]
    parser.add_argument(
        "--only", nargs="+", choices=panels, default=panels, help="the shots to take (default: all)"
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="dp_agent_shots_"))
    os.environ["DP_AGENT_HOME"] = str(tmp / "home")

    from PyQt6.QtWidgets import QApplication

    from dp_agent.gui import resources
    from dp_agent.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    demos = resources.shipped_demos(TREE) or expert_demos(tmp / "tree_detour_expert.hdf5", 40)
    window = MainWindow(env_id=TREE, demos=demos, use_gamepad=False)
    window.resize(1360, 860)
    window.show()
    wait(app, 0.5)
    shots = Shots(app, window, out, tmp, demos, args)
    takes = {
        "record": shots.record,
        "demos": shots.demos_tab,
        "train": shots.train,
        "policy": shots.policy,
        "pusht": shots.pusht,
        "planner": shots.planner,
        "keepout": shots.keepout,
    }
    ok = all(takes[name]() for name in panels if name in args.only)
    window.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
