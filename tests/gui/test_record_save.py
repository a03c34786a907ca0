"""Saving in the Record tab runs off the GUI thread: the task view stays live while the disk is
slow, a failed save keeps the episode, and closing the window waits for a save in progress.

The disk is made slow by holding ``dp_agent.files.fsync_path`` (the store's fsync before its
commit) in the save thread until the test lets it go: only the I/O waits, the store's logic is
the real one.
"""

from __future__ import annotations

import threading

import pytest
from PyQt6.QtCore import QTimer

from dp_agent import files
from dp_agent.data import DemoReader
from dp_agent.gui.main_window import MainWindow

TREE = "dp_agent/TreeDetour-v0"


@pytest.fixture
def slow_disk(monkeypatch):
    """An Event: every fsync of the save thread waits until it is set, then runs for real (the
    app's other writes, its settings, are not held)."""
    disk = threading.Event()
    real_fsync = files.fsync_path

    def fsync_when_the_disk_answers(path):
        if threading.current_thread().name.startswith("record-save"):
            assert disk.wait(timeout=60), "the test never let the disk answer"
        real_fsync(path)

    monkeypatch.setattr(files, "fsync_path", fsync_when_the_disk_answers)
    return disk


def record_steps(panel, steps: int) -> None:
    panel.on_press(120.0, 440.0)
    for k in range(steps):
        panel.on_drag(120.0 + 10 * k, 440.0 - 8 * k)
        panel.tick()
    panel.on_release(120.0 + 10 * steps, 440.0)
    assert panel.num_steps == steps


def test_the_task_view_stays_live_while_a_slow_save_runs(window, qtbot, slow_disk):
    window.loop.stop()  # the test steps the task itself
    panel, view = window.record_panel, window.view
    record_steps(panel, 6)
    assert panel.save_episode() is not None
    assert panel.state == "saving" and panel.saving

    # The disk has not answered, yet the GUI thread runs timers, takes input and repaints.
    fired = []
    timer = QTimer()
    timer.timeout.connect(lambda: fired.append(1))
    timer.start(5)
    qtbot.waitUntil(lambda: len(fired) >= 5)
    drawn = view.frames_drawn
    panel.on_drag(300.0, 200.0)  # the target follows the mouse while the episode is saved
    panel.on_press(300.0, 200.0)
    qtbot.waitUntil(lambda: view.frames_drawn > drawn)
    assert panel.state == "saving" and panel.num_steps == 6  # nothing new is recorded meanwhile
    assert not panel.path.exists()  # the episode is not in the file before the disk answers

    slow_disk.set()
    qtbot.waitUntil(lambda: not panel.saving)  # the signal back from the save thread
    timer.stop()
    assert panel.state == "idle" and panel.num_steps == 0
    assert panel.count_label.text() == "1" and panel.error_label.text() == ""
    with DemoReader(panel.path, expected_env_id=TREE) as reader:
        assert reader.lengths == [6]
        assert reader.episode(0).attrs["source"] == "human"


def test_a_failed_save_shows_the_error_and_keeps_the_episode(window, qtbot, monkeypatch):
    window.loop.stop()
    panel = window.record_panel
    record_steps(panel, 4)
    real_fsync = files.fsync_path

    def disk_full(path):
        raise OSError("No space left on device")

    monkeypatch.setattr(files, "fsync_path", disk_full)
    panel.save_episode()
    qtbot.waitUntil(lambda: not panel.saving)
    assert "Could not save the episode" in panel.error_label.text()
    assert "No space left on device" in panel.error_label.text()
    assert panel.state == "paused" and panel.num_steps == 4  # kept: save again
    monkeypatch.setattr(files, "fsync_path", real_fsync)
    panel.save_episode()
    assert panel.wait_for_save() == "demo_0"
    assert panel.error_label.text() == "" and panel.num_steps == 0
    with DemoReader(panel.path) as reader:
        assert reader.lengths == [4]


def test_closing_the_window_waits_for_the_save_in_progress(qtbot, app_home, slow_disk):
    window = MainWindow(env_id=TREE, use_gamepad=False, probe_device=False, preload_policy=False)
    qtbot.addWidget(window)
    window.loop.stop()
    panel = window.record_panel
    record_steps(panel, 5)
    panel.save_episode()
    threading.Timer(0.05, slow_disk.set).start()  # the disk answers while the window closes
    window.close()
    assert not panel.saving
    with DemoReader(panel.path) as reader:
        assert reader.lengths == [5]
