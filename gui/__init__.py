"""The dp-agent desktop app (PyQt6): record demonstrations, browse them, train, and watch the
policy denoise. Qt is imported only when the app starts (``dp-agent gui`` or
``python -m dp_agent.gui``), never by ``import dp_agent``."""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Start the app; ``argv`` are the options after ``dp-agent gui`` (see ``--help``)."""
    from .app import main as _main

    return _main(argv)
