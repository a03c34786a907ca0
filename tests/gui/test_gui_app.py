"""Start-up, the task picker and the status bar."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dp_agent.gui import resources
from dp_agent.gui.main_window import MainWindow


def test_importing_dp_agent_does_not_import_qt():
    code = (
        "import sys, dp_agent, dp_agent.gui\n"
        "assert not any(m.startswith('PyQt6') for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_gui_module_entry_point_answers_help():
    out = subprocess.run(
        [sys.executable, "-m", "dp_agent.gui", "--help"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "--record-to" in out.stdout and "A start/stop" in out.stdout


def test_first_start_opens_tree_detour_and_shows_task_file_and_device(qtbot, app_home):
    window = MainWindow(use_gamepad=False)
    qtbot.addWidget(window)
    window.show()
    assert window.task_id == resources.DEFAULT_TASK
    assert "TreeDetour" in window.status_task.text()
    assert "tree_detour.hdf5" in window.status_file.text()
    qtbot.waitUntil(lambda: "…" not in window.status_device.text(), timeout=60_000)
    assert "CPU" in window.status_device.text() or "CUDA" in window.status_device.text()
    assert window.view.frames_drawn > 0
    window.set_task("dp_agent/PushT-v0")
    window.close()
    again = MainWindow(use_gamepad=False, probe_device=False)  # remembers the last task
    qtbot.addWidget(again)
    assert again.task_id == "dp_agent/PushT-v0"


@pytest.mark.parametrize(
    ("env_id", "words"),
    [
        ("NoSuchTask-v0", ["NoSuchTask-v0", "registered"]),
        ("CartPole-v1", ["CartPole-v1", "Box"]),
        ("", ["No task"]),
    ],
)
def test_an_unusable_task_id_is_explained_and_the_current_task_kept(window, env_id, words):
    assert not window.set_task(env_id)
    for word in words:
        assert word in window.task_error.text()
    assert window.task_id == "dp_agent/TreeDetour-v0"
    assert window.record_panel.task.env_id == "dp_agent/TreeDetour-v0"


def test_typing_a_gymnasium_id_switches_every_panel(window, qtbot):
    window.task_combo.setCurrentText("dp_agent/PushT-v0")
    window.task_combo.lineEdit().returnPressed.emit()
    assert window.task_id == "dp_agent/PushT-v0"
    for panel in (window.record_panel, window.browser_panel, window.policy_panel):
        assert panel.task.env_id == "dp_agent/PushT-v0"
    assert window.loop.fps == 10
    assert window.record_panel.path == resources.user_demo_path("dp_agent/PushT-v0")


@pytest.mark.skipif(
    resources.shipped_demos(resources.DEFAULT_TASK) is None
    or resources.shipped_policy(resources.DEFAULT_TASK) is None,
    reason="the shipped TreeDetour demos and policy are not installed",
)
def test_first_start_offers_the_shipped_demos_read_only_and_preloads_the_shipped_policy(
    qtbot, app_home
):
    window = MainWindow(use_gamepad=False, probe_device=False)
    qtbot.addWidget(window)
    window.show()
    shipped = resources.shipped_demos(resources.DEFAULT_TASK)
    browser = window.browser_panel
    assert browser.path == shipped and browser.num_episodes > 0
    browser.select(browser.rows[0]["name"])
    assert browser.replay_button.isEnabled() and not browser.delete_button.isEnabled()
    assert "read-only" in browser.file_combo.currentText()
    assert window.record_panel.path.is_relative_to(app_home)  # recordings go to the user's file
    policy = window.policy_panel
    qtbot.waitUntil(lambda: policy.agent is not None, timeout=60_000)
    assert policy.agent_path == resources.shipped_policy(resources.DEFAULT_TASK)
