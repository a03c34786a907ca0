"""Start-up, the task picker and the status bar."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PyQt6.QtCore import Qt
from PyQt6.QtTest import QTest
from PyQt6.QtWidgets import QApplication, QComboBox, QStyle, QStyleOptionComboBox

from dp_agent.gui import resources
from dp_agent.gui.main_window import TAB_DEMOS, TAB_RECORD, TAB_TRAIN, MainWindow


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


@pytest.mark.slow
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


@pytest.mark.slow
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
    assert "shipped" in browser.picker.combo.currentText()
    assert "read-only" in browser.picker.hint.text() and str(shipped) in browser.picker.hint.text()
    assert window.record_panel.path.is_relative_to(app_home)  # recordings go to the user's file
    policy = window.policy_panel
    qtbot.waitUntil(lambda: policy.policy is not None, timeout=60_000)
    assert policy.agent_path == resources.shipped_policy(resources.DEFAULT_TASK)


def _choose_in_task_list(window, env_id: str) -> None:
    """What a person does: click into the task box and pick ``env_id`` from its list."""
    box = window.task_combo
    window.activateWindow()
    box.setFocus()
    assert box.lineEdit().hasFocus()
    index = box.findText(env_id)
    box.setCurrentIndex(index)
    box.activated.emit(index)  # what the popup list sends when an entry is clicked


def test_after_choosing_a_task_the_recording_keys_work_and_type_nothing(window):
    window.loop.stop()
    _choose_in_task_list(window, "dp_agent/PushT-v0")
    assert window.task_id == "dp_agent/PushT-v0"
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Space)
    assert window.record_panel.state == "recording"
    assert window.task_combo.currentText() == "dp_agent/PushT-v0"  # no space typed into it

    # typing an id and Enter works the same way
    edit = window.task_combo.lineEdit()
    edit.setFocus()
    edit.selectAll()
    QTest.keyClicks(edit, "dp_agent/TreeDetour-v0")
    QTest.keyClick(edit, Qt.Key.Key_Return)
    assert window.task_id == "dp_agent/TreeDetour-v0" and not edit.hasFocus()
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Space)
    assert window.record_panel.state == "recording"


def test_a_bad_task_id_error_keeps_the_bar_height_and_goes_once_the_text_is_fixed(window):
    top_height = window.task_combo.parentWidget().layout().itemAt(0).geometry().height()
    edit = window.task_combo.lineEdit()
    edit.setFocus()
    QTest.keyClick(edit, Qt.Key.Key_S)  # a stray key typed into the box
    QTest.mouseClick(window.open_button, Qt.MouseButton.LeftButton)
    error = window.task_error
    assert "dp_agent/TreeDetour-v0s" in error.text() and error.isVisible()
    assert window.task_id == "dp_agent/TreeDetour-v0"
    QApplication.processEvents()
    assert window.task_combo.parentWidget().layout().itemAt(0).geometry().height() == top_height
    assert error.height() <= window.task_combo.height()  # one line, however long the message
    QTest.keyClick(edit, Qt.Key.Key_Backspace)  # the cause is gone
    assert error.text() == ""
    QTest.mouseClick(window.open_button, Qt.MouseButton.LeftButton)  # the current task again
    assert error.text() == "" and window.task_id == "dp_agent/TreeDetour-v0"


def test_a_long_status_message_is_cut_before_the_task_and_file_labels(window):
    window.resize(1024, 640)
    text = "Saved demo_12 (40 steps) to " + "/a/very/long/folder" * 20 + "/tree_detour.hdf5"
    window.show_message(text)
    QApplication.processEvents()
    message, task = window.status_message, window.status_task
    assert message.geometry().right() < task.geometry().left()
    assert message.shown_text().endswith("…") and message.toolTip() == text
    assert task.shown_text() == task.text() == "task: dp_agent/TreeDetour-v0"
    assert window.status_file.shown_text() == "file: tree_detour.hdf5"


def _text_fits(combo: QComboBox) -> bool:
    option = QStyleOptionComboBox()
    combo.initStyleOption(option)
    field = combo.style().subControlRect(
        QStyle.ComplexControl.CC_ComboBox, option, QStyle.SubControl.SC_ComboBoxEditField, combo
    )
    return combo.fontMetrics().horizontalAdvance(combo.currentText()) <= field.width()


def test_every_tab_fits_a_1024_by_640_window(window, tiny_demos, tmp_path):
    window.resize(1024, 640)
    window.browser_panel.open_file(tiny_demos)
    window.train_panel.add_demos(tiny_demos)
    QApplication.processEvents()
    assert window.size().height() == 640 and window.size().width() == 1024
    for index, picker in [
        (TAB_RECORD, window.record_panel.picker),
        (TAB_DEMOS, window.browser_panel.picker),
        (TAB_TRAIN, window.train_panel.picker),
    ]:
        window.tabs.setCurrentIndex(index)
        QApplication.processEvents()
        panel = window.tabs.currentWidget()
        right = picker.mapTo(panel, picker.rect().topRight()).x()
        assert right <= panel.width(), f"tab {index}: the file box runs off the panel"
        assert _text_fits(picker.combo), f"tab {index}: {picker.combo.currentText()!r} is cut"
        window.grab().save(str(tmp_path / f"tab{index}.png"))


def test_the_coverage_rows_show_only_for_tasks_that_report_coverage(window):
    record, policy = window.record_panel, window.policy_panel
    assert record.coverage_label.isHidden() and policy.stat_labels["Coverage"].isHidden()
    window.set_task("dp_agent/PushT-v0")
    assert not record.coverage_label.isHidden()
    assert not policy.stat_labels["Coverage"].isHidden()
    record.on_press(200.0, 200.0)
    record.tick()
    assert record.coverage_label.text().endswith("%")
