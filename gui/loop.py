"""A fixed-timestep loop on a Qt timer: calls ``step()`` at the env's control rate, catching up at
most one late step per tick so that a slow frame does not make the simulation race afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PyQt6.QtCore import QObject, Qt, QTimer


class FixedStepLoop(QObject):
    """Runs ``step`` ``fps`` times per second of wall time while started."""

    MAX_STEPS_PER_TICK = 2

    def __init__(self, step: Callable[[], None], fps: float = 10.0, parent: QObject | None = None):
        super().__init__(parent)
        self._step = step
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self._on_timeout)
        self._next = 0.0
        self.steps = 0
        self.set_fps(fps)

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def period(self) -> float:
        """Seconds per step."""
        return 1.0 / self._fps

    def set_fps(self, fps: float) -> None:
        self._fps = max(float(fps), 0.1)
        # Tick at twice the rate so that a step is at most half a period late.
        self._timer.setInterval(max(1, int(500.0 / self._fps)))

    def start(self) -> None:
        self._next = time.perf_counter()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def is_running(self) -> bool:
        return self._timer.isActive()

    def _on_timeout(self) -> None:
        now = time.perf_counter()
        done = 0
        while now >= self._next and done < self.MAX_STEPS_PER_TICK:
            self._next += self.period
            self.steps += 1
            done += 1
            self._step()
        if now - self._next > self.period:  # far behind (a long stall): drop the backlog
            self._next = now + self.period
