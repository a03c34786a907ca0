"""Command line of the app (``dp-agent gui [options]``) and the Qt application start-up.

SIGINT (Ctrl+C) and SIGTERM close the window the way the close button does (a running training
run is stopped, nothing is asked) and end the app with the conventional code 128 + signal.
"""

from __future__ import annotations

import argparse
import signal
import sys

from .sdl import prepare_environment

DESCRIPTION = (
    "Record demonstrations with mouse or gamepad, train, and watch the policy denoise. "
    "Gamepad: left stick moves the target; A start/stop, B discard, X save, Y reset."
)
SIGNAL_POLL_MS = 200  # how often the Qt loop hands control to Python, which runs signal handlers


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The app's options, for ``dp-agent gui`` (no Qt import)."""
    p.add_argument("--task", help="Gymnasium id to open (default: the last one, or TreeDetour)")
    p.add_argument("--demos", help="a demo file to show in the Demos and Train tabs")
    p.add_argument("--policy", help="a .safetensors checkpoint to load into the Policy tab")
    p.add_argument("--record-to", help="demo file that recorded episodes are appended to")
    p.add_argument("--no-gamepad", action="store_true", help="do not look for gamepads")
    return p


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog="dp-agent gui", description=DESCRIPTION))


def install_signal_handlers(app, window) -> None:
    """Close ``window`` and end ``app`` with 128 + signal on SIGINT or SIGTERM.

    The handler only schedules the close (it may interrupt any Python code); a second signal
    while closing ends the process the default way. A timer wakes Python up regularly, since
    Python runs signal handlers only between its own bytecodes, not inside Qt's C++ loop.
    """
    from PyQt6.QtCore import QTimer

    def close(signum: int) -> None:
        window.close_now()
        app.exit(128 + signum)

    def handler(signum: int, _frame) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        QTimer.singleShot(0, lambda: close(signum))

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    wake = QTimer(app)
    wake.timeout.connect(lambda: None)
    wake.start(SIGNAL_POLL_MS)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prepare_environment()
    from PyQt6.QtWidgets import QApplication

    from .main_window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("dp-agent")
    window = MainWindow(
        env_id=args.task,
        demos=args.demos,
        policy=args.policy,
        record_to=args.record_to,
        use_gamepad=not args.no_gamepad,
    )
    install_signal_handlers(app, window)
    window.show()
    return app.exec()
