"""Recording with the mouse and with a gamepad ends up in the HDF5 file."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PyQt6.QtCore import QPoint, Qt
from PyQt6.QtTest import QTest

from dp_agent.data import DemoReader
from dp_agent.gui import resources
from dp_agent.gui.gamepad import GamepadManager, GamepadReader, apply_deadzone
from dp_agent.gui.main_window import TAB_RECORD


def widget_point(view, x: float, y: float) -> QPoint:
    p = view.world_to_widget(np.array([x, y]))
    return QPoint(round(p.x()), round(p.y()))


def test_widget_pixels_map_to_world_units_through_the_view_scaling(window):
    view = window.view
    rect = view.frame_rect()
    assert view.extent == (512.0, 512.0)
    centre = view.widget_to_world(rect.center())
    np.testing.assert_allclose(centre, [256.0, 256.0], atol=1e-6)
    corner = view.widget_to_world(rect.bottomRight())
    np.testing.assert_allclose(corner, [512.0, 512.0], atol=1e-6)
    outside = view.widget_to_world(rect.topLeft() - (rect.bottomRight() - rect.topLeft()) / 10)
    np.testing.assert_allclose(outside, [0.0, 0.0])  # clamped to the world


def test_mouse_drag_records_an_episode_that_is_saved_with_the_right_length(window, app_home):
    window.loop.stop()  # the test steps the task itself, one control step per tick()
    panel = window.record_panel
    view = window.view
    assert window.tabs.currentIndex() == TAB_RECORD
    start = panel.task.agent_point()

    QTest.mousePress(view, Qt.MouseButton.LeftButton, pos=widget_point(view, *start))
    assert panel.state == "recording"  # pressing in the view starts recording
    waypoints = [(start[0] - 40 * k, start[1] - 25 * k) for k in range(1, 6)]
    ticks = 0
    for x, y in waypoints:
        QTest.mouseMove(view, widget_point(view, x, y))
        np.testing.assert_allclose(panel.target, [x, y], atol=1.0)  # follows the cursor
        for _ in range(3):
            panel.tick()
            ticks += 1
    QTest.mouseRelease(view, Qt.MouseButton.LeftButton, pos=widget_point(view, *waypoints[-1]))
    QTest.mouseMove(view, widget_point(view, 400, 100))  # no button: the target is held
    for _ in range(4):
        panel.tick()
        ticks += 1
    np.testing.assert_allclose(panel.target, waypoints[-1], atol=1.0)
    assert panel.num_steps == ticks

    QTest.keyClick(window, Qt.Key.Key_S)  # save shortcut
    panel.wait_for_save()  # the save runs in its own thread
    path = resources.user_demo_path("dp_agent/TreeDetour-v0")
    assert path.is_relative_to(app_home)
    with DemoReader(path, expected_env_id="dp_agent/TreeDetour-v0") as reader:
        assert reader.num_episodes == 1
        assert reader.env_args == {
            "env_name": "dp_agent/TreeDetour-v0",
            "type": 2,
            "env_kwargs": {},
        }
        episode = reader.episode(0)
    assert len(episode) == ticks
    assert episode.obs["state"].shape == (ticks, 4)
    np.testing.assert_allclose(episode.actions[-1], waypoints[-1], atol=1.0)
    np.testing.assert_allclose(episode.obs["state"][0, :2], start, atol=1e-3)
    assert episode.dones[-1] and episode.attrs["input"] == "mouse"
    # the agent followed the target
    assert np.linalg.norm(episode.obs["state"][-1, :2] - start) > 50
    assert panel.state == "idle" and panel.num_steps == 0
    assert panel.count_label.text() == "1"
    assert "episodes: 1" in window.status_episodes.text()


def test_keyboard_shortcuts_start_stop_discard_and_reset(window):
    window.loop.stop()
    panel = window.record_panel
    QTest.keyClick(window, Qt.Key.Key_Space)
    assert panel.state == "recording"
    panel.tick()
    panel.tick()
    QTest.keyClick(window, Qt.Key.Key_Space)
    assert panel.state == "paused" and panel.num_steps == 2
    panel.tick()  # paused: nothing is recorded
    assert panel.num_steps == 2
    QTest.keyClick(window, Qt.Key.Key_D)
    assert panel.state == "idle" and panel.num_steps == 0
    QTest.keyClick(window, Qt.Key.Key_Space)
    panel.tick()
    obs_before_reset = np.array(panel.task.obs)
    QTest.keyClick(window, Qt.Key.Key_R)
    assert panel.num_steps == 0 and panel.state == "idle"
    assert not np.array_equal(panel.task.obs, obs_before_reset)


def test_recording_never_writes_into_the_shipped_demo_files(window):
    shipped_dir = resources.package_dir()
    assert not window.record_panel.set_file(shipped_dir / "tree_detour.hdf5")
    assert "shipped" in window.record_panel.error_label.text()
    assert window.record_panel.path == resources.user_demo_path("dp_agent/TreeDetour-v0")


class FakePad:
    """A joystick-like object: tests set ``axes`` and ``buttons``."""

    def __init__(self):
        self.axes = [0.0, 0.0, 0.0, 0.0]
        self.buttons = [0] * 8

    def get_axis(self, i):
        return self.axes[i]

    def get_button(self, i):
        return self.buttons[i]

    def get_numaxes(self):
        return len(self.axes)

    def get_numbuttons(self):
        return len(self.buttons)

    def get_name(self):
        return "Fake Pad"


def test_deadzone_ignores_small_deflections_and_still_reaches_full_speed():
    assert not apply_deadzone(0.1, -0.05).any()
    np.testing.assert_allclose(apply_deadzone(1.0, 0.0), [1.0, 0.0])
    half = apply_deadzone(0.0, -0.6)
    assert half[0] == 0 and -0.6 < half[1] < 0


def test_gamepad_buttons_are_edge_triggered():
    pad = FakePad()
    reader = GamepadReader(pad)
    pad.buttons[0] = 1
    assert reader.pressed() == ["A"]
    assert reader.pressed() == []  # still held: no new press
    pad.buttons[0] = 0
    pad.buttons[2] = 1
    assert reader.pressed() == ["X"]


def test_fake_gamepad_drives_the_target_and_the_recorder(window):
    window.loop.stop()
    panel = window.record_panel
    pad = FakePad()
    window.gamepad.set_joystick(pad)
    assert "Fake Pad" in panel.pad_label.text()

    before = panel.target.copy()
    pad.axes[:2] = [0.08, 0.05]  # inside the dead zone
    for _ in range(5):
        window.gamepad.poll()
    np.testing.assert_allclose(panel.target, before)

    pad.axes[:2] = [1.0, 0.0]  # full right
    for _ in range(5):
        QTest.qWait(20)
        window.gamepad.poll()
    moved = panel.target - before
    assert moved[0] > 5.0 and abs(moved[1]) < 1e-9

    pad.buttons[0] = 1  # A: start
    window.gamepad.poll()
    pad.buttons[0] = 0
    assert panel.state == "recording"
    for _ in range(6):
        panel.tick()
    pad.axes[:2] = [0.0, -1.0]  # up
    window.gamepad.poll()
    assert panel.target[1] < before[1]
    pad.buttons[2] = 1  # X: save
    window.gamepad.poll()
    pad.buttons[2] = 0
    window.gamepad.poll()
    panel.wait_for_save()
    with DemoReader(panel.path) as reader:
        assert reader.lengths == [6]
        assert reader.episode(0).attrs["input"] == "gamepad"

    pad.buttons[0] = 1  # A: start again, then B: discard
    window.gamepad.poll()
    pad.buttons[0] = 0
    panel.tick()
    pad.buttons[1] = 1
    window.gamepad.poll()
    assert panel.state == "idle" and panel.num_steps == 0

    window.gamepad.set_joystick(None)  # unplugged
    assert "none" in panel.pad_label.text()


def test_gamepad_manager_starts_without_any_pad_plugged_in(qtbot):
    manager = GamepadManager(use_pygame=True)
    try:
        manager.poll()  # pumps pygame's hot-plug events; no pad under the dummy driver
        assert manager.reader is None or manager.name
    finally:
        manager.stop()


@pytest.mark.parametrize("env_id", ["Pendulum-v1"])
def test_any_gymnasium_env_with_rgb_array_and_box_actions_can_be_recorded(window, env_id):
    window.loop.stop()
    assert window.set_task(env_id)
    panel = window.record_panel
    assert panel.task.extent == (1.0, 1.0) and window.loop.fps == 30
    view = window.view
    QTest.mousePress(view, Qt.MouseButton.LeftButton, pos=widget_point(view, 1.0, 0.5))
    panel.tick()
    np.testing.assert_allclose(panel._actions[-1], panel.task.action_from_point([1.0, 0.5]))
    assert panel._actions[-1][0] == pytest.approx(2.0, abs=0.05)  # right edge = high torque
    assert panel.save_episode() is not None
    panel.wait_for_save()
    with DemoReader(panel.path, expected_env_id=env_id) as reader:
        assert reader.lengths == [1]


def test_the_timer_loop_steps_the_task_at_its_control_rate(window, qtbot):
    panel = window.record_panel
    view = window.view
    assert window.loop.is_running() and window.loop.fps == 10
    start = panel.task.agent_point()
    QTest.mousePress(view, Qt.MouseButton.LeftButton, pos=widget_point(view, *start))
    t0, wall0 = window.loop.steps, time.perf_counter()
    for k in range(10):
        QTest.mouseMove(view, widget_point(view, start[0] - 8 * k, start[1] - 5 * k))
        qtbot.wait(80)
    QTest.mouseRelease(view, Qt.MouseButton.LeftButton, pos=widget_point(view, *start))
    steps = window.loop.steps - t0
    elapsed = time.perf_counter() - wall0
    # the loop stepped the task while the user dragged, never faster than its control rate
    assert 1 <= steps <= int(elapsed * window.loop.fps) + 2
    assert panel.num_steps == steps
    panel.save_episode()
    name = panel.wait_for_save()
    with DemoReader(panel.path) as reader:
        assert len(reader.episode(name)) == steps


def test_a_force_controlled_maze_is_steered_towards_the_mouse_target():
    from dp_agent.gui.tasks import Task

    task = Task.make("dp_agent/Maze2D-umaze-v0", seed=0)
    assert not task.draws_actions  # forces are not points: nothing to overlay
    start = task.env.unwrapped.agent_position.copy()
    target = task.env.unwrapped.cell_center(*task.env.unwrapped.cell_of(*start))
    target = target + np.array([0.3, 0.0])  # a little to the right, inside the same cell
    for _ in range(20):
        task.step(task.action_from_point(target))
    assert np.linalg.norm(task.env.unwrapped.agent_position - target) < 0.1
    task.close()


@pytest.mark.parametrize("env_id", ["dp_agent/TreeDetour-v0", "dp_agent/PushT-v0"])
def test_recording_with_images_on_stores_the_image_frames(window, app_home, env_id):
    window.set_task(env_id)
    window.loop.stop()
    panel = window.record_panel
    assert panel.obs_combo.isVisible() or not window.isVisible()
    panel.obs_combo.setCurrentIndex(panel.obs_combo.findData("pixels"))
    panel.obs_combo.activated.emit(panel.obs_combo.currentIndex())
    assert panel.task.env_args["env_kwargs"] == {"obs_type": "pixels"}
    assert panel.path == resources.user_demo_path(env_id, "pixels")
    panel.toggle_recording()
    frames = []
    for _ in range(5):
        frames.append(panel.task.obs["pixels"].copy())
        panel.tick()
    panel.save_episode()
    panel.wait_for_save()
    with DemoReader(panel.path, expected_env_id=env_id) as reader:
        assert reader.env_args["env_kwargs"] == {"obs_type": "pixels"}
        episode = reader.episode(0)
    assert episode.obs["pixels"].dtype == np.uint8 and episode.obs["pixels"].shape == (5, 96, 96, 3)
    np.testing.assert_array_equal(episode.obs["pixels"], np.stack(frames))  # what the env showed
    assert episode.obs["agent_pos"].shape == (5, 2)
    window.set_task("dp_agent/TreeDetour-v0" if "PushT" in env_id else "dp_agent/PushT-v0")
    assert panel.task.env_args["env_kwargs"] == {}  # a new task starts with its default
