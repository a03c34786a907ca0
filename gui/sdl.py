"""SDL settings the app needs before pygame is imported (a light module: no Qt, no pygame)."""

from __future__ import annotations

import os


def prepare_environment() -> None:
    """SDL settings for reading gamepads without a pygame window (before pygame is imported).

    SDL would otherwise install SIGINT/SIGTERM handlers of its own that only queue an SDL quit
    event nobody reads: the app would ignore ``kill`` and Ctrl+C.
    """
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_JOYSTICK_ALLOW_BACKGROUND_EVENTS", "1")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    os.environ["SDL_NO_SIGNAL_HANDLERS"] = "1"
