"""The demo browser lists, replays and deletes the episodes of a file."""

from __future__ import annotations

import shutil

import numpy as np
import pyqtgraph as pg

from dp_agent.demos import DemoReader
from dp_agent.gui import browser_panel as browser_module
from dp_agent.gui.main_window import TAB_DEMOS


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
    assert panel.replay_selected()
    assert panel.replay_mode == "states"
    shown = [np.array(panel.task.obs)]
    while panel.replay_episode is not None:
        panel.tick()
        shown.append(np.array(panel.task.obs))
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

    monkeypatch.setattr(browser_module, "confirm", lambda *a: False)
    assert not panel.delete_selected()
    assert panel.num_episodes == 6

    asked = []
    monkeypatch.setattr(browser_module, "confirm", lambda *a: asked.append(a[2]) or True)
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
    assert "notes.hdf5" in panel.info_label.text() and "HDF5" in panel.info_label.text()


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

    window.tabs.setCurrentIndex(TAB_DEMOS)
    panel = window.browser_panel
    panel.open_file(rec.path)
    panel.select("demo_0")
    assert panel.replay_selected()
    assert panel.replay_mode == "actions"
    shown = [np.array(panel.task.obs)]
    while panel.replay_episode is not None:
        panel.tick()
        shown.append(np.array(panel.task.obs))
    np.testing.assert_allclose(np.array(shown[:-1]), recorded, atol=1e-5)
