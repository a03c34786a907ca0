"""The demo browser lists, replays and deletes the episodes of a file."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pyqtgraph as pg
import pytest
from PyQt6.QtCore import Qt

from dp_agent.data import DemoReader
from dp_agent.gui import resources, widgets
from dp_agent.gui.main_window import TAB_DEMOS, TAB_TRAIN, MainWindow

TREE = "dp_agent/TreeDetour-v0"
TOOLTIP = Qt.ItemDataRole.ToolTipRole


def replay_to_the_end(panel, mode: str) -> list[np.ndarray]:
    """Replay the selected episode step by step; the observations shown, the first included."""
    assert panel.replay_selected()
    assert panel.replay_mode == mode
    shown = [np.array(panel.task.obs)]
    while panel.replay_episode is not None:
        panel.tick()
        shown.append(np.array(panel.task.obs))
    return shown


def test_browser_lists_episodes_with_length_return_and_success(window, tiny_demos):
    panel = window.browser_panel
    assert panel.open_file(tiny_demos)
    with DemoReader(tiny_demos) as reader:
        summary = reader.summary()
    assert panel.table.rowCount() == len(summary) == 6
    for i, row in enumerate(summary):
        assert panel.table.item(i, 0).text() == row["name"]
        assert panel.table.item(i, 1).text() == str(row["length"])
        assert panel.table.item(i, 2).text() == f"{row['return']:.2f}"
        assert panel.table.item(i, 3).text() == ("yes" if row["success"] else "no")
    curves = [i for i in panel.plot.getPlotItem().items if isinstance(i, pg.PlotDataItem)]
    assert len(curves) == 6  # one action path per episode
    window.tabs.setCurrentIndex(TAB_DEMOS)
    assert "episodes: 6" in window.status_episodes.text()


def test_replay_draws_the_stored_states_of_the_episode(window, tiny_demos):
    window.loop.stop()
    window.tabs.setCurrentIndex(TAB_DEMOS)
    panel = window.browser_panel
    panel.open_file(tiny_demos)
    panel.select("demo_2")
    with DemoReader(tiny_demos) as reader:
        episode = reader.episode("demo_2")
    shown = replay_to_the_end(panel, "states")
    assert len(shown) == len(episode) + 1
    np.testing.assert_allclose(np.array(shown[:-1]), episode.obs["state"], atol=1e-3)
    np.testing.assert_allclose(window.view.path, episode.actions, atol=1e-4)  # the whole path
    assert panel.replay_t == len(episode)


def test_delete_asks_first_and_removes_only_that_episode(window, tiny_demos, tmp_path, monkeypatch):
    path = tmp_path / "copy.hdf5"
    shutil.copyfile(tiny_demos, path)
    panel = window.browser_panel
    panel.open_file(path)
    panel.select("demo_3")

    monkeypatch.setattr(widgets, "ask", lambda *a, **k: False)
    assert not panel.delete_selected()
    assert panel.num_episodes == 6

    asked = []
    monkeypatch.setattr(widgets, "ask", lambda *a, **k: asked.append(a[2]) or True)
    assert panel.delete_selected()
    assert "demo_3" in asked[0]
    names = [panel.table.item(i, 0).text() for i in range(panel.table.rowCount())]
    assert names == ["demo_0", "demo_1", "demo_2", "demo_4", "demo_5"]
    with DemoReader(path) as reader:
        assert reader.names == names


def test_a_file_that_is_not_a_demo_file_gives_one_readable_message(window, tmp_path):
    bad = tmp_path / "notes.hdf5"
    bad.write_text("not hdf5")
    panel = window.browser_panel
    assert not panel.open_file(bad)
    assert panel.table.rowCount() == 0
    assert "notes.hdf5" in panel.error_label.text() and "HDF5" in panel.error_label.text()


def test_replay_steps_the_actions_when_the_env_cannot_be_put_into_a_state(window):
    """Pendulum has no reset_to_state: replay resets with the episode's seed and steps."""
    window.loop.stop()
    assert window.set_task("Pendulum-v1")
    rec = window.record_panel
    rec.on_press(0.9, 0.5)
    for i in range(12):
        rec.on_drag(0.1 + 0.07 * i, 0.5)
        rec.tick()
    recorded = np.array(rec._obs)
    rec.save_episode()
    rec.wait_for_save()

    window.tabs.setCurrentIndex(TAB_DEMOS)
    panel = window.browser_panel
    panel.open_file(rec.path)
    panel.select("demo_0")
    shown = replay_to_the_end(panel, "actions")
    np.testing.assert_allclose(np.array(shown[:-1]), recorded, atol=1e-5)


@pytest.mark.skipif(resources.shipped_demos(TREE) is None, reason="no shipped TreeDetour demos")
def test_the_demos_tab_opens_the_users_own_file_and_says_whose_each_file_is(
    qtbot, app_home, tiny_demos, tmp_path
):
    mine = resources.user_demo_path(TREE)
    mine.parent.mkdir(parents=True)
    shutil.copyfile(tiny_demos, mine)
    window = MainWindow(env_id=TREE, use_gamepad=False, probe_device=False, preload_policy=False)
    qtbot.addWidget(window)
    browser = window.browser_panel
    assert browser.path == mine and browser.num_episodes == 6
    combo = browser.picker.combo
    entries = {combo.itemData(i): (combo.itemText(i), combo.itemData(i, TOOLTIP)) for i in range(2)}
    shipped = resources.shipped_demos(TREE)
    label, tip = entries[str(shipped)]
    assert "shipped" in label and "read-only" in tip and str(shipped) in tip
    label, tip = entries[str(mine)]
    assert label == "tree_detour.hdf5 (yours)" and str(mine) in tip
    assert str(mine) in browser.picker.hint.text()  # the path of the open file, in plain sight
    assert window.train_panel.demos_path() == mine  # training offers the same file first

    other = tmp_path / "morning_session.hdf5"  # a file of the user's elsewhere, opened last
    shutil.copyfile(tiny_demos, other)
    browser.picker.add(other)
    browser.picker.chosen.emit(str(other))
    assert browser.path == other
    window.close()
    again = MainWindow(env_id=TREE, use_gamepad=False, probe_device=False, preload_policy=False)
    qtbot.addWidget(again)
    assert again.browser_panel.path == other
    assert set(again.browser_panel.picker.files()) == {shipped, mine, other}


def _damage(kind: str, good: Path, tmp_path: Path) -> Path:
    """A damaged copy of the demo file ``good``."""
    path = tmp_path / f"{kind}.hdf5"
    data = good.read_bytes()
    if kind == "text":
        path.write_text("not a demo file")
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "garbage_after_signature":
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 512)
    else:
        path.write_bytes(data)
        with h5py.File(path, "r+") as f:
            if kind == "nan_action":
                actions = f["data/demo_1/actions"]
                values = actions[()]
                values[3, 0] = np.nan
                actions[...] = values
            elif kind == "missing_actions":
                del f["data/demo_2/actions"]
            elif kind == "bad_env_args":
                f["data"].attrs["env_args"] = "{not json"
    return path


@pytest.mark.parametrize(
    "kind",
    [
        "text",
        "truncated",
        "garbage_after_signature",
        "nan_action",
        "missing_actions",
        "bad_env_args",
    ],
)
def test_a_damaged_demo_file_gives_one_clear_message(window, tiny_demos, tmp_path, kind):
    bad = _damage(kind, tiny_demos, tmp_path)
    panel = window.browser_panel
    messages = []
    panel.message.connect(messages.append)
    window.tabs.setCurrentIndex(TAB_DEMOS)
    assert not panel.open_file(bad)
    assert len(messages) == 1
    assert bad.name in messages[0] and "Traceback" not in messages[0]
    assert panel.error_label.text() == messages[0] and panel.error_label.isVisible()
    assert panel.table.rowCount() == 0 and panel.num_episodes == 0
    assert "episodes: 0" in window.status_episodes.text()
    # the other tabs: recording into it is refused with a reason (a file whose structure is
    # damaged; values are checked when episodes are read), training shows the task alone
    if kind != "nan_action":
        assert not window.record_panel.set_file(bad)
        assert bad.name in window.record_panel.error_label.text()
    window.train_panel.add_demos(bad)
    window.tabs.setCurrentIndex(TAB_TRAIN)
    assert window.view.paths == []
    # a good file afterwards: the message goes
    window.tabs.setCurrentIndex(TAB_DEMOS)
    assert panel.open_file(tiny_demos)
    assert panel.error_label.text() == "" and not panel.error_label.isVisible()
