"""Gamepad input: the left stick moves the target (velocity-style, with a dead zone) and the face
buttons drive the recorder.

Buttons (SDL joystick numbering of Xbox-style pads): A (0) start/stop recording, B (1) discard,
X (2) save, Y (3) reset. :class:`GamepadReader` reads any joystick-like object (``get_axis(i)``,
``get_button(i)``, ``get_numaxes()``, ``get_numbuttons()``), so tests can pass a fake.
:class:`GamepadManager` finds real pads through pygame (hot-plug included), polled from a Qt timer.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np
from PyQt6.QtCore import QObject, QTimer, pyqtSignal

from .sdl import prepare_environment

BUTTONS: dict[int, str] = {0: "A", 1: "B", 2: "X", 3: "Y"}
BUTTON_ACTIONS: dict[str, str] = {"A": "start/stop", "B": "discard", "X": "save", "Y": "reset"}
DEADZONE = 0.15
POLL_HZ = 60.0


class JoystickLike(Protocol):
    def get_axis(self, i: int) -> float: ...
    def get_button(self, i: int) -> int | bool: ...
    def get_numaxes(self) -> int: ...
    def get_numbuttons(self) -> int: ...


def apply_deadzone(x: float, y: float, deadzone: float = DEADZONE) -> np.ndarray:
    """Radial dead zone: |stick| < deadzone -> 0, the rest rescaled so the output still reaches 1.

    Returns (2,) float64 with norm <= 1.
    """
    v = np.array([x, y], np.float64)
    norm = float(np.hypot(*v))
    if norm < deadzone or norm == 0.0:
        return np.zeros(2)
    scaled = min((norm - deadzone) / (1.0 - deadzone), 1.0)
    return v / norm * scaled


class GamepadReader:
    """Reads one joystick-like object: the left stick (axes 0, 1) and newly pressed buttons."""

    def __init__(self, joystick: JoystickLike, deadzone: float = DEADZONE):
        self.joystick = joystick
        self.deadzone = deadzone
        self._held: set[int] = set()

    @property
    def name(self) -> str:
        get_name = getattr(self.joystick, "get_name", None)
        return str(get_name()) if callable(get_name) else "gamepad"

    def stick(self) -> np.ndarray:
        """Left stick after the dead zone, (2,) in [-1, 1] (x right, y down as SDL reports)."""
        if self.joystick.get_numaxes() < 2:
            return np.zeros(2)
        return apply_deadzone(self.joystick.get_axis(0), self.joystick.get_axis(1), self.deadzone)

    def pressed(self) -> list[str]:
        """Names of the buttons that went down since the last call (edge-triggered)."""
        n = min(self.joystick.get_numbuttons(), max(BUTTONS) + 1)
        down = {i for i in range(n) if self.joystick.get_button(i)}
        new = sorted(down - self._held)
        self._held = down
        return [BUTTONS[i] for i in new if i in BUTTONS]


class GamepadManager(QObject):
    """Polls the active gamepad from a Qt timer and emits what it reads.

    ``stick(x, y, dt)``: the left stick after the dead zone and the seconds since the last poll
    (emitted only when the stick is off-centre); ``button(name)``: "A", "B", "X" or "Y" pressed;
    ``connected(name)`` / ``disconnected()``: hot-plug.
    """

    stick = pyqtSignal(float, float, float)
    button = pyqtSignal(str)
    connected = pyqtSignal(str)
    disconnected = pyqtSignal()

    def __init__(self, parent: QObject | None = None, use_pygame: bool = True):
        super().__init__(parent)
        self.reader: GamepadReader | None = None
        self._pygame = None
        self._pads: dict[int, object] = {}  # pygame instance id -> Joystick
        self._last = time.perf_counter()
        self.timer = QTimer(self)
        self.timer.setInterval(int(1000 / POLL_HZ))
        self.timer.timeout.connect(self.poll)
        if use_pygame:
            self._init_pygame()
        self.timer.start()

    # ------------------------------------------------------------------ pygame
    def _init_pygame(self) -> None:
        prepare_environment()  # also keeps SDL from taking over SIGINT and SIGTERM
        try:
            import pygame

            pygame.display.init()
            pygame.joystick.init()
        except Exception:  # noqa: BLE001  (no SDL video/joystick support: mouse only)
            self._pygame = None
            return
        self._pygame = pygame
        for index in range(pygame.joystick.get_count()):
            self._add_pygame_pad(index)

    def _add_pygame_pad(self, device_index: int) -> None:
        pygame = self._pygame
        try:
            pad = pygame.joystick.Joystick(device_index)
            pad.init()
        except Exception:  # noqa: BLE001  (unplugged between event and open)
            return
        instance = pad.get_instance_id()
        if instance in self._pads:  # SDL also announces pads that were there at start-up
            return
        self._pads[instance] = pad
        if self.reader is None:
            self.set_joystick(pad)

    def _pump_pygame(self) -> None:
        pygame = self._pygame
        try:
            events = pygame.event.get((pygame.JOYDEVICEADDED, pygame.JOYDEVICEREMOVED))
            pygame.event.pump()
        except Exception:  # noqa: BLE001
            return
        for event in events:
            if event.type == pygame.JOYDEVICEADDED:
                self._add_pygame_pad(event.device_index)
            elif event.type == pygame.JOYDEVICEREMOVED:
                pad = self._pads.pop(event.instance_id, None)
                if pad is not None and self.reader is not None and self.reader.joystick is pad:
                    self.set_joystick(next(iter(self._pads.values()), None))

    # ------------------------------------------------------------------ public
    def set_joystick(self, joystick: JoystickLike | None) -> None:
        """Use ``joystick`` (any joystick-like object) from now on; None = no gamepad."""
        had = self.reader is not None
        self.reader = GamepadReader(joystick) if joystick is not None else None
        if self.reader is not None:
            self.reader.pressed()  # buttons held while plugging in do not fire
            self.connected.emit(self.reader.name)
        elif had:
            self.disconnected.emit()

    @property
    def uses_sdl(self) -> bool:
        """True when real pads are looked for through pygame (SDL)."""
        return self._pygame is not None

    @property
    def name(self) -> str | None:
        return self.reader.name if self.reader is not None else None

    def poll(self) -> None:
        """Read the pad once: emit the stick (if off-centre) and the newly pressed buttons."""
        now = time.perf_counter()
        dt = min(now - self._last, 0.1)
        self._last = now
        if self._pygame is not None:
            self._pump_pygame()
        if self.reader is None:
            return
        try:
            stick = self.reader.stick()
            pressed = self.reader.pressed()
        except Exception:  # noqa: BLE001  (pad vanished mid-read; the REMOVED event follows)
            return
        if stick.any():
            self.stick.emit(float(stick[0]), float(stick[1]), dt)
        for name in pressed:
            self.button.emit(name)

    def stop(self) -> None:
        self.timer.stop()
