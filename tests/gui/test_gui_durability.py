"""Killing the app loses at most the episode in progress."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from dp_agent.data import DemoReader

CHILD = textwrap.dedent(
    """
    import os, sys, time
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PyQt6.QtWidgets import QApplication
    from dp_agent.gui.main_window import MainWindow

    app = QApplication([])
    window = MainWindow(env_id="dp_agent/TreeDetour-v0", record_to=sys.argv[1],
                        use_gamepad=False, probe_device=False)
    window.loop.stop()
    panel = window.record_panel
    for episode in range(2):
        panel.on_press(120.0, 440.0)
        for _ in range(5 + episode):
            panel.tick()
        panel.on_release(120.0, 440.0)
        panel.save_episode()
        panel.wait_for_save()
    panel.on_press(400.0, 440.0)  # a third episode, in progress when the app is killed
    for _ in range(4):
        panel.tick()
    print("READY", flush=True)
    while True:
        app.processEvents()
        time.sleep(0.01)
    """
)


def test_killing_the_app_keeps_every_saved_episode(tmp_path):
    path = tmp_path / "mine.hdf5"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        assert child.stdout.readline().strip() == "READY"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    with DemoReader(path, expected_env_id="dp_agent/TreeDetour-v0") as reader:
        assert reader.lengths == [5, 6]


def test_settings_are_fsynced_before_they_replace_the_old_file(app_home, monkeypatch):
    from dp_agent import files
    from dp_agent.gui import resources

    resources.save_settings({"task": "dp_agent/PushT-v0"})
    assert resources.load_settings() == {"task": "dp_agent/PushT-v0"}
    synced = []
    monkeypatch.setattr(files, "fsync_path", lambda path: synced.append(path.name))
    resources.save_settings({"task": "dp_agent/TreeDetour-v0"})
    assert synced and synced[0].startswith(".gui.json.")  # the new content, before the rename
    assert resources.load_settings() == {"task": "dp_agent/TreeDetour-v0"}

    def power_loss(path):
        raise OSError("disk gone")

    monkeypatch.setattr(files, "fsync_path", power_loss)
    resources.save_settings({"task": "Pendulum-v1"})  # a failed write is ignored ...
    assert resources.load_settings() == {"task": "dp_agent/TreeDetour-v0"}  # ... the old file stays
    assert [p.name for p in app_home.iterdir()] == ["gui.json"]  # and no temporary file is left
