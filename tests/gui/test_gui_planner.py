"""The Policy tab runs a Diffuser-style planner on Maze2D: its N plans are drawn being denoised,
a click sets the goal the next plan ends at, a dragged circle guides the plans around it; the
same zones guide a TreeDetour policy's sampled chunks."""

from __future__ import annotations

import threading

import gymnasium as gym
import numpy as np
import pytest
from PyQt6.QtCore import QPoint, Qt

from dp_agent.gui.main_window import TAB_POLICY, TAB_RECORD

pytestmark = pytest.mark.slow  # a planner trained for the app's tests

MAZE = "dp_agent/Maze2D-umaze-v0"
H = 16  # the test planner's horizon


class _Episode:
    def __init__(self, obs, actions):
        self.obs, self.actions = obs, actions


class _Episodes(list):
    env_id = MAZE
    env_args = {"env_kwargs": {}}


@pytest.fixture(scope="module")
def tiny_planner(tmp_path_factory):
    """A umaze planner (H = 16) trained by ``train_planner`` for 100 steps on six expert
    episodes: barely trained, so its plans are loose, but start and goal are inpainted exactly.
    ε-prediction: its samples follow the guided iterates, so guidance shows without training."""
    import torch

    from dp_agent.config import TrainConfig
    from dp_agent.envs.experts import MazeExpert
    from dp_agent.planning.config import PlannerConfig
    from dp_agent.planning.train import train_planner
    from dp_agent.progress import SilentProgress

    torch.set_num_threads(1)
    env = gym.make(MAZE)
    expert, episodes = MazeExpert(env.unwrapped), _Episodes()
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        expert.reset(seed)
        frames, actions, done = [], [], False
        while not done:
            frames.append(obs)
            actions.append(expert.act(obs))
            obs, _, term, trunc, _ = env.step(actions[-1])
            done = term or trunc
        parts = {k: np.stack([f[k] for f in frames]).astype(np.float32) for k in frames[0]}
        episodes.append(_Episode(parts, np.stack(actions)))
    config = PlannerConfig(
        horizon=H, down_dims=(16, 32), step_embed_dim=16, policy={"prediction_type": "epsilon"}
    )
    tc = TrainConfig(
        num_steps=100,
        batch_size=16,
        lr=2e-3,
        warmup_steps=5,
        device="cpu",
        checkpoint_every=1000,
        log_every=1000,
    )
    out = tmp_path_factory.mktemp("planner")
    return train_planner(episodes, out, config, tc, progress=SilentProgress(tc.num_steps))


def _endless(task):
    """Episodes never end (a barely trained plan may reach the env's goal, or the tree, at once;
    these tests look at the plans)."""
    step = task.step

    def never_done(action):
        obs, reward, _, _, info = step(action)
        return obs, reward, False, False, info

    task.step = never_done


def _load(window, qtbot, path, task=MAZE):
    if window.task_id != task:
        window.set_task(task)
    window.tabs.setCurrentIndex(TAB_POLICY)
    panel = window.policy_panel
    with qtbot.waitSignal(panel.policy_loaded, timeout=60_000):
        panel.load(path)
    window.loop.stop()  # the tests drive the control steps themselves
    _endless(panel.task)
    panel.samples_spin.setValue(8)
    panel.speed_spin.setValue(0)  # instant animation
    return panel


def _plan_once(panel, qtbot):
    """Run until one more re-plan has been completed and shown; returns the player's plan."""
    done = panel.plans_completed
    assert panel.start()
    qtbot.waitUntil(lambda: (panel.tick(), panel.plans_completed > done)[1], timeout=60_000)
    panel.stop()
    return panel.plan


def _widget_point(view, point) -> QPoint:
    p = view.world_to_widget(np.asarray(point))
    return QPoint(round(p.x()), round(p.y()))


def _drag(qtbot, view, centre, radius) -> None:
    """Press at ``centre``, move out to ``radius`` (world units) and release there."""
    start = _widget_point(view, centre)
    end = _widget_point(view, (centre[0] + radius, centre[1]))
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=start)
    for f in (0.3, 0.7, 1.0):
        view.dragged.emit(*view.widget_to_world(start + (end - start) * f))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=end)


def _share_inside(points: np.ndarray, zone) -> float:
    x, y, r = zone
    return float((np.hypot(points[..., 0] - x, points[..., 1] - y) < r).mean())


def test_a_planner_loads_as_a_planner_and_its_plans_are_drawn_being_denoised(
    window, qtbot, tiny_planner
):
    panel = _load(window, qtbot, tiny_planner)
    info = panel.policy
    assert info.is_planner and info.horizon == H and "planner" in panel.policy_label.text()
    assert panel.worker.agent.planner.policy.runner.name == "auto"  # as for policies
    plan = _plan_once(panel, qtbot)
    k = info.num_inference_steps
    assert [f.step for f in plan.frames] == list(range(k + 1))
    assert plan.frames[0].sample.shape == (8, H, 2)  # planned positions, world units (cells)
    view = window.view
    np.testing.assert_allclose(view.samples, plan.frames[-1].sample)
    assert view.samples_highlight == plan.executed
    # the executed plan is the highlighted sample, and it starts where the agent was
    result = panel._pending or panel.last_result
    np.testing.assert_allclose(result.plan, plan.frames[-1].sample[plan.executed], atol=1e-5)
    np.testing.assert_allclose(result.plan[0], plan.history["achieved_goal"], atol=1e-4)


def test_a_click_sets_the_goal_that_the_next_plan_ends_at(window, qtbot, tiny_planner):
    panel = _load(window, qtbot, tiny_planner)
    first = _plan_once(panel, qtbot).frames[-1].sample
    env_goal = panel.task.obs["desired_goal"]
    np.testing.assert_allclose(first[:, -1], np.repeat(env_goal[None], 8, 0), atol=1e-3)

    view = window.view
    goal = np.array([1.5, 3.5]) if np.hypot(*(env_goal - (1.5, 3.5))) > 1 else np.array([3.5, 1.5])
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=_widget_point(view, goal))
    tolerance = 0.02  # cells: a click lands on a whole pixel, ~0.01 cells here
    assert panel.goal is not None and np.abs(panel.goal - goal).max() < tolerance
    assert view.goal is not None and not panel.zones  # drawn; a click draws no zone
    assert "no goal setter" in window.status_message.text()  # Maze2D: only the plans move

    plan = _plan_once(panel, qtbot)  # the changed goal re-plans at the next step
    ends = plan.frames[-1].sample[:, -1]  # (8, 2) every sample's last planned position
    assert np.abs(ends - goal).max() < tolerance
    assert np.linalg.norm(ends - env_goal, axis=1).min() > 1.0  # not the env's goal


def test_a_drawn_keep_out_zone_steers_the_next_plans_out_of_it(window, qtbot, tiny_planner):
    panel = _load(window, qtbot, tiny_planner)
    panel.set_seed(7)
    panel.new_episode()
    free = _plan_once(panel, qtbot)
    positions = free.frames[-1].sample  # (8, H, 2)
    centre = positions[:, 4:12].reshape(-1, 2).mean(0)
    _drag(qtbot, window.view, centre, 0.8)
    assert len(panel.zones) == 1 and panel.zones[0][2] == pytest.approx(0.8, abs=0.02)
    assert window.view.zones == panel.zones
    zone = panel.zones[0]
    assert _share_inside(positions, zone) > 0.05  # the zone lies across the free plans

    panel.set_seed(7)  # the same episode and the same noise, now with the zone
    panel.new_episode()
    guided = _plan_once(panel, qtbot)
    assert guided.seed == free.seed and panel.zones == [zone]
    agent = panel.worker.agent  # the worker waits for requests: its guides can be read
    np.testing.assert_allclose(agent.guides[0].circles.numpy(), [zone], rtol=1e-6)
    assert agent.guidance["guide_scale"] == panel.steering().guide_scale > 0
    before, after = _share_inside(positions, zone), _share_inside(guided.frames[-1].sample, zone)
    assert after < before
    executed = guided.frames[-1].sample[guided.executed]
    assert _share_inside(executed, zone) <= _share_inside(positions[free.executed], zone)
    # the executed plan is the best of the 8 by the zone's J, and it is the one highlighted
    result = panel._pending or panel.last_result
    np.testing.assert_allclose(result.plan, executed, atol=1e-5)
    assert window.view.samples_highlight == guided.executed

    panel.clear_zones()
    assert not panel.zones and not window.view.zones


def test_the_gui_thread_never_touches_the_planner_agent(window, qtbot, tiny_planner, monkeypatch):
    from dp_agent.planning.agent import DiffuserAgent
    from dp_agent.planning.planner import Planner

    panel = _load(window, qtbot, tiny_planner)
    threads: set[int] = set()
    reads = {cls: cls.__getattribute__ for cls in (DiffuserAgent, Planner)}

    def noting(cls):
        def read(obj, name):  # every attribute read of any agent or planner, by any reference
            threads.add(threading.get_ident())
            return reads[cls](obj, name)

        return read

    for cls in reads:
        monkeypatch.setattr(cls, "__getattribute__", noting(cls))
    _plan_once(panel, qtbot)
    _drag(qtbot, window.view, (3.5, 2.0), 0.4)
    qtbot.mouseClick(
        window.view, Qt.MouseButton.LeftButton, pos=_widget_point(window.view, (1.5, 3.5))
    )
    _plan_once(panel, qtbot)
    panel.player.scrub.setValue(0)
    panel.x0_check.setChecked(True)
    window.tabs.setCurrentIndex(TAB_RECORD)
    window.tabs.setCurrentIndex(TAB_POLICY)
    panel.stop()
    assert threads, "the worker used the planner"
    assert threading.main_thread().ident not in threads


def test_a_tree_detour_zone_changes_the_policys_sampled_chunks(window, qtbot, tiny_checkpoint):
    panel = _load(window, qtbot, tiny_checkpoint, "dp_agent/TreeDetour-v0")
    assert not panel.policy.is_planner
    panel.set_seed(3)
    panel.new_episode()
    free = _plan_once(panel, qtbot)
    chunks = free.frames[-1].sample  # (8, Tp, 2) actions = positions in the view
    centre = chunks.reshape(-1, 2).mean(0)
    radius = float(np.median(np.hypot(*(chunks.reshape(-1, 2) - centre).T)))
    _drag(qtbot, window.view, centre, radius)
    zone = panel.zones[0]
    qtbot.mouseClick(
        window.view, Qt.MouseButton.LeftButton, pos=_widget_point(window.view, (60, 60))
    )
    assert panel.goal is None  # a policy has no goal to set

    panel.set_seed(3)
    panel.new_episode()
    guided = _plan_once(panel, qtbot)
    assert guided.seed == free.seed
    np.testing.assert_allclose(guided.history, free.history)  # same observations
    steered = guided.frames[-1].sample
    assert not np.allclose(steered, chunks)
    assert _share_inside(steered, zone) < _share_inside(chunks, zone)


def test_stopping_a_planner_mid_denoising_executes_nothing_and_a_restart_plans_afresh(
    window, qtbot, tiny_planner
):
    panel = _load(window, qtbot, tiny_planner)
    panel.sampler_combo.setCurrentIndex(panel.sampler_combo.findData("ddpm"))
    panel.steps_spin.setValue(100)
    panel.samples_spin.setValue(64)
    assert panel.start()
    panel.tick()  # sends the first request: a re-plan of 64 plans, 100 DDPM steps
    qtbot.waitUntil(lambda: panel.frames_received >= 1, timeout=60_000)
    with qtbot.waitSignal(panel.worker.acted, timeout=60_000) as aborted:
        panel.stop()
    assert aborted.args[0].aborted
    assert panel.episode_steps == 0 and panel.plans_completed == 0 and panel.plan is None

    panel.sampler_combo.setCurrentIndex(panel.sampler_combo.findData("ddim"))
    panel.steps_spin.setValue(3)
    panel.samples_spin.setValue(3)
    plan = _plan_once(panel, qtbot)
    assert [f.step for f in plan.frames] == [0, 1, 2, 3] and plan.frames[-1].sample.shape[0] == 3
