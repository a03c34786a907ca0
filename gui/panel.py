"""What the main window asks of each tab (Record, Demos, Train, Policy): one base class whose
hooks do nothing unless a tab overrides them, so the window never asks which tab is shown."""

from __future__ import annotations

from pathlib import Path

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QWidget

from .demo_files import episode_count
from .task_view import TaskView
from .tasks import Task
from .widgets import ErrorLabel

KEYS = ("space", "save", "discard", "reset")  # the window's shortcuts, as ``on_key`` names them


class Panel(QWidget):
    """One tab of the main window.

    The window owns the task view, the control loop and the inputs; it hands them to the tab that
    is shown (``activate``/``deactivate``, ``tick``, ``on_press``..., ``on_key``). At every task
    change each tab gets an env instance of its own (``on_task_changed``), which it closes when
    it is replaced or at ``shutdown``.
    """

    message = pyqtSignal(str)  # for the status bar
    file_changed = pyqtSignal(str)  # the tab's current file changed (status bar)
    demos_changed = pyqtSignal(str)  # this tab added or deleted episodes of that demo file

    def __init__(self, view: TaskView, parent: QWidget | None = None):
        super().__init__(parent)
        self.view = view
        self.task: Task | None = None
        self.active = False
        self.error_label = ErrorLabel(wrap=True)

    # ------------------------------------------------------------------ window -> tab
    def on_task_changed(self, task: Task, files: list[Path], preferred: Path | None) -> None:
        """Use ``task`` from now on; ``files`` are the demo files offered for it (shipped first,
        then the user's), ``preferred`` the one to show first (None: none exists yet)."""
        self.replace_task(task)

    def on_demos_changed(self, path: Path) -> None:
        """Another tab added or deleted episodes of the demo file ``path``."""

    def activate(self) -> None:
        self.active = True

    def deactivate(self) -> None:
        self.active = False

    def tick(self) -> None:
        """One control step while the tab is shown (at the env's rate)."""

    def on_press(self, x: float, y: float) -> None:
        """Left button pressed in the view at world point (x, y)."""

    def on_drag(self, x: float, y: float) -> None: ...

    def on_release(self, x: float, y: float) -> None: ...

    def on_stick(self, x: float, y: float, dt: float) -> None:
        """Gamepad left stick off-centre for ``dt`` seconds."""

    def on_button(self, name: str) -> None:
        """Gamepad button "A", "B", "X" or "Y" pressed."""

    def on_key(self, key: str) -> None:
        """A shortcut of ``KEYS`` pressed (Space, S, D or Backspace, R)."""

    def current_file(self) -> Path | None:
        """The file the status bar names while the tab is shown."""
        return None

    def episode_count(self) -> int | None:
        """Episodes in ``current_file()`` (None: unknown, or not a demo file)."""
        return episode_count(self.current_file())

    def close_question(self) -> str | None:
        """What to ask before the window closes (work that closing would stop), or None."""
        return None

    def shutdown(self) -> None:
        """The window closes: stop work, release the env. Safe to call twice."""
        self.replace_task(None)

    # ------------------------------------------------------------------ helpers for tabs
    def replace_task(self, task: Task | None) -> None:
        if self.task is not None and self.task is not task:
            self.task.close()
        self.task = task

    def show_error(self, text: str) -> None:
        """Show ``text`` in the tab's error label and the status bar; "" clears the label."""
        self.error_label.show_error(text)
        if text:
            self.message.emit(text)
