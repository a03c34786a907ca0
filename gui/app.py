"""Command line of the app (``dp-agent gui [options]``) and the Qt application start-up."""

from __future__ import annotations

import argparse
import os
import sys

DESCRIPTION = (
    "Record demonstrations with mouse or gamepad, train, and watch the policy denoise. "
    "Gamepad: left stick moves the target; A start/stop, B discard, X save, Y reset."
)


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


def prepare_environment() -> None:
    """SDL settings for reading gamepads without a pygame window (before pygame is imported)."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_JOYSTICK_ALLOW_BACKGROUND_EVENTS", "1")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")


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
    window.show()
    return app.exec()
