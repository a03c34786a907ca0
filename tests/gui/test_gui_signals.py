"""``kill -TERM`` and Ctrl+C end the app cleanly, with the gamepad manager (SDL) running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

# Starts the app through its real entry point (signal handlers, pygame gamepad polling) and says
# READY once the window is shown and its background start-up work (device probe, policy preload)
# is over, so that the time to exit measures the shutdown only.
CHILD = textwrap.dedent(
    """
    import sys
    from PyQt6.QtCore import QTimer
    from PyQt6.QtWidgets import QApplication
    from dp_agent.gui.app import main
    from dp_agent.gui.main_window import MainWindow

    app = QApplication(sys.argv[:1])

    def ready():
        windows = [w for w in app.topLevelWidgets() if isinstance(w, MainWindow)]
        w = windows[0] if windows else None
        if w is None or not w.isVisible() or w.policy_panel.loading or "…" in w.device_text:
            QTimer.singleShot(50, ready)
            return
        assert w.gamepad.uses_sdl, "the gamepad manager runs on SDL in this test"
        print("READY", flush=True)

    QTimer.singleShot(0, ready)
    sys.exit(main(["--task", "dp_agent/TreeDetour-v0"]))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_app_cleanly_and_quickly(tmp_path, sig):
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "SDL_VIDEODRIVER": "dummy",
        "SDL_AUDIODRIVER": "dummy",
        "DP_AGENT_HOME": str(tmp_path / "home"),
        "OMP_NUM_THREADS": "1",
    }
    env.pop("SDL_NO_SIGNAL_HANDLERS", None)  # the app must set it itself
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout.readline().strip() == "READY", child.stderr.read()
        child.send_signal(sig)
        code = child.wait(timeout=2)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    stderr = child.stderr.read()
    assert code in (0, 128 + sig), stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
