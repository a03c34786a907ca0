"""Record panel: drive the task with the mouse or a gamepad, and append finished episodes to an
HDF5 demo file with DemoWriter (durable per episode: killing the app loses at most the one in
progress).

Mouse: while the left button is held the target follows the cursor; released, the last target is
held. Gamepad: the left stick moves the target; A start/stop, B discard, X save, Y reset.
Keys (when this tab is shown): Space start/stop, S save, D or Backspace discard, R reset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from . import resources
from .gamepad import BUTTON_ACTIONS
from .task_view import TaskView
from .tasks import Task

STICK_SPEED = 0.6  # fraction of the view crossed per second at full stick deflection


def episode_count(path: str | Path) -> int | None:
    """Number of episodes in a demo file, 0 if it does not exist, None if it cannot be read."""
    path = Path(path)
    if not path.exists():
        return 0
    try:
        from dp_agent.demos import DemoReader

        with DemoReader(path) as reader:
            return reader.num_episodes
    except Exception:  # noqa: BLE001  (shown as unknown; opening it elsewhere gives the message)
        return None


class RecordPanel(QWidget):
    """Records demonstrations in its own env instance of the current task.

    States: "idle" (nothing recorded yet), "recording", "paused" (stopped, episode kept),
    "ended" (the env terminated or truncated: save or discard).
    """

    message = pyqtSignal(str)  # for the status bar
    saved = pyqtSignal(str, str)  # file, demo name
    file_changed = pyqtSignal(str)

    def __init__(self, view: TaskView, parent: QWidget | None = None):
        super().__init__(parent)
        self.view = view
        self.task: Task | None = None
        self.active = False
        self.state = "idle"
        self.path: Path | None = None
        self.target = np.zeros(2)
        self.dragging = False
        self.used_inputs: set[str] = set()
        self._seed: int | None = None
        self._rng = np.random.default_rng()
        self._clear_buffers()
        self._build()

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        layout = QVBoxLayout(self)

        file_box = QGroupBox("Demo file (episodes are appended)")
        fl = QHBoxLayout(file_box)
        self.file_edit = QLineEdit()
        self.file_edit.setReadOnly(True)
        self.file_button = QPushButton("Choose…")
        self.file_button.clicked.connect(self._choose_file)
        fl.addWidget(self.file_edit, 1)
        fl.addWidget(self.file_button)
        layout.addWidget(file_box)

        buttons = QGridLayout()
        self.start_button = QPushButton("Start  [Space]")
        self.save_button = QPushButton("Save  [S]")
        self.discard_button = QPushButton("Discard  [D]")
        self.reset_button = QPushButton("Reset  [R]")
        for i, (button, slot) in enumerate(
            [
                (self.start_button, self.toggle_recording),
                (self.save_button, self.save_episode),
                (self.discard_button, self.discard_episode),
                (self.reset_button, self.reset_episode),
            ]
        ):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keep Space for the shortcut
            button.clicked.connect(slot)
            buttons.addWidget(button, i // 2, i % 2)
        layout.addLayout(buttons)

        self.autostart = QCheckBox("Start recording when I press in the view")
        self.autostart.setChecked(True)
        self.autostart.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        layout.addWidget(self.autostart)

        live = QGroupBox("Episode")
        form = QFormLayout(live)
        self.state_label = QLabel()
        self.state_label.setWordWrap(True)
        self.steps_label = QLabel("0")
        self.return_label = QLabel("0.00")
        self.coverage_label = QLabel("–")
        self.success_label = QLabel("–")
        self.count_label = QLabel("–")
        form.addRow("State:", self.state_label)
        form.addRow("Steps:", self.steps_label)
        form.addRow("Return:", self.return_label)
        form.addRow("Coverage:", self.coverage_label)
        form.addRow("Success:", self.success_label)
        form.addRow("Saved episodes:", self.count_label)
        layout.addWidget(live)

        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #c0392b;")
        self.error_label.hide()
        layout.addWidget(self.error_label)

        pad = QGroupBox("Input")
        pl = QVBoxLayout(pad)
        self.pad_label = QLabel("Gamepad: none (plug one in at any time)")
        pl.addWidget(self.pad_label)
        mapping = ", ".join(f"{b} {a}" for b, a in BUTTON_ACTIONS.items())
        help_label = QLabel(
            "Mouse: hold the left button and move – the target follows the cursor; release to "
            f"hold it.\nGamepad: left stick moves the target; {mapping}."
        )
        help_label.setWordWrap(True)
        help_label.setStyleSheet("color: palette(mid);")
        pl.addWidget(help_label)
        layout.addWidget(pad)
        layout.addStretch(1)
        self._update_labels({})

    # ------------------------------------------------------------------ task and file
    def set_task(self, task: Task) -> None:
        """Use ``task`` (an env instance owned by this panel from now on)."""
        if self.task is not None:
            self.task.close()
        self.task = task
        self._clear_buffers()
        self.state = "idle"
        self._reset_env()
        self.set_file(resources.user_demo_path(task.env_id))

    def set_file(self, path: str | Path) -> bool:
        """Record into ``path``; refuses the shipped (read-only) demo files."""
        path = Path(path).expanduser()
        if resources.is_shipped(path):
            self._error(
                f"{path}: this is a shipped demo file and is never modified; choose another file "
                "to record into."
            )
            return False
        if path.exists() and self.task is not None:
            from dp_agent.demos import DemoReader

            try:
                with DemoReader(path, expected_env_id=self.task.env_id):
                    pass
            except Exception as exc:  # noqa: BLE001  (DemoError, OSError: say why, keep the old file)
                self._error(f"Cannot record into this file: {exc}")
                return False
        self.path = path
        self.file_edit.setText(str(path))
        self.file_edit.setToolTip(str(path))
        self._error("")
        self._update_count()
        self.file_changed.emit(str(path))
        return True

    def _choose_file(self) -> None:
        start = str(self.path) if self.path else str(resources.app_home())
        name, _ = QFileDialog.getSaveFileName(
            self,
            "Record into demo file",
            start,
            "HDF5 demo files (*.hdf5 *.h5)",
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        if name:
            self.set_file(name)

    def _update_count(self) -> None:
        n = episode_count(self.path) if self.path else None
        self.count_label.setText("?" if n is None else str(n))

    # ------------------------------------------------------------------ activation
    def activate(self) -> None:
        self.active = True
        self.view.clear_overlays()
        self._show()

    def deactivate(self) -> None:
        self.active = False
        if self.state == "recording":
            self.state = "paused"
            self._update_labels(self._info)
        self.dragging = False

    def shutdown(self) -> None:
        if self.task is not None:
            self.task.close()
            self.task = None

    # ------------------------------------------------------------------ inputs
    def on_press(self, x: float, y: float) -> None:
        if self.task is None:
            return
        self.dragging = True
        self.used_inputs.add("mouse")
        self._set_target((x, y))
        if self.state == "idle" and self.autostart.isChecked():
            self.start_recording()

    def on_drag(self, x: float, y: float) -> None:
        if self.dragging:
            self._set_target((x, y))

    def on_release(self, x: float, y: float) -> None:
        if self.dragging:
            self._set_target((x, y))
        self.dragging = False

    def on_stick(self, sx: float, sy: float, dt: float) -> None:
        """Velocity-style target control: full deflection crosses STICK_SPEED views per second."""
        if self.task is None or self.dragging:
            return
        self.used_inputs.add("gamepad")
        ex, ey = self.task.extent
        self._set_target(self.target + np.array([sx * ex, sy * ey]) * STICK_SPEED * dt)

    def on_button(self, name: str) -> None:
        actions = {
            "A": self.toggle_recording,
            "B": self.discard_episode,
            "X": self.save_episode,
            "Y": self.reset_episode,
        }
        if name in actions:
            self.used_inputs.add("gamepad")
            actions[name]()

    def set_gamepad_name(self, name: str | None) -> None:
        self.pad_label.setText(
            f"Gamepad: {name}" if name else "Gamepad: none (plug one in at any time)"
        )

    def _set_target(self, point) -> None:
        if self.task is None:
            return
        self.target = self.task.clamp_point(np.asarray(point, np.float64))
        if self.active:
            self.view.set_target(self.target)

    # ------------------------------------------------------------------ commands
    def toggle_recording(self) -> None:
        if self.state == "recording":
            self.state = "paused"
            self._update_labels(self._info)
        else:
            self.start_recording()

    def start_recording(self) -> None:
        if self.task is None:
            return
        if self.state == "ended":
            self.message.emit("The episode has ended: save it (S) or discard it (D) first.")
            return
        self.state = "recording"
        self._update_labels(self._info)

    def save_episode(self) -> str | None:
        """Append the episode to the demo file; returns the demo name, or None if nothing saved."""
        if self.task is None or not self._actions:
            self.message.emit("Nothing to save: record some steps first.")
            return None
        if self.path is None:
            self._error("Choose a demo file to record into first.")
            return None
        from dp_agent.demos import DemoWriter, stack_obs

        actions = np.asarray(self._actions, np.float32)
        rewards = np.asarray(self._rewards, np.float32)
        dones = np.asarray(self._dones, bool)
        dones[-1] = True
        attrs = {
            "seed": -1 if self._seed is None else int(self._seed),
            "success": bool(self._info.get("is_success", False)),
            "source": "human",
            "input": "+".join(sorted(self.used_inputs)) or "none",
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with DemoWriter(self.path, self.task.env_args) as writer:
                obs = stack_obs(self._obs, self.task.env_args["env_kwargs"].get("obs_type"))
                name = writer.append_episode(obs, actions, rewards, dones, attrs=attrs)
        except Exception as exc:  # noqa: BLE001  (DemoError, OSError: shown, nothing lost)
            self._error(f"Could not save the episode: {exc}")
            return None
        self._error("")
        self.message.emit(f"Saved {name} ({len(actions)} steps) to {self.path}")
        self._update_count()
        self.saved.emit(str(self.path), name)
        self._new_episode()
        return name

    def discard_episode(self) -> None:
        had = bool(self._actions)
        self._new_episode()
        if had:
            self.message.emit("Episode discarded.")

    def reset_episode(self) -> None:
        self._new_episode()
        self.message.emit("Task reset.")

    def _new_episode(self) -> None:
        self._clear_buffers()
        self.state = "idle"
        self._reset_env()

    # ------------------------------------------------------------------ loop
    def tick(self) -> None:
        """One control step (called at the env's rate while this panel is active)."""
        if self.task is None or self.state != "recording":
            return
        action = self.task.action_from_point(self.target)
        obs_before = self.task.obs
        _, reward, terminated, truncated, info = self.task.step(action)
        self._obs.append(obs_before)
        self._actions.append(action)
        self._rewards.append(reward)
        self._dones.append(terminated)
        self._return += reward
        self._info = info
        if terminated or truncated:
            self.state = "ended"
            why = "succeeded" if info.get("is_success") else "ended"
            self.message.emit(f"The episode {why}: save it (S) or discard it (D).")
        self._update_labels(info)
        self._show()

    # ------------------------------------------------------------------ helpers
    def _clear_buffers(self) -> None:
        self._obs: list = []
        self._actions: list[np.ndarray] = []
        self._rewards: list[float] = []
        self._dones: list[bool] = []
        self._return = 0.0
        self._info: dict = {}
        self.used_inputs = set()

    @property
    def num_steps(self) -> int:
        return len(self._actions)

    def _reset_env(self) -> None:
        if self.task is None:
            return
        self._seed = int(self._rng.integers(0, 2**31 - 1))
        try:
            self.task.reset(seed=self._seed)
        except Exception as exc:  # noqa: BLE001
            self._error(f"{self.task.env_id}: reset failed: {exc}")
            return
        self.target = self.task.agent_point()
        self._update_labels({})
        if self.active:
            self._show()

    def _show(self) -> None:
        if self.task is None or not self.active:
            return
        self.view.set_extent(self.task.extent)
        self.view.set_frame(self.task.frame())
        self.view.set_target(self.target)

    def _update_labels(self, info: dict) -> None:
        texts = {
            "idle": "Ready – press Start (Space), or press and drag in the view.",
            "recording": "Recording…",
            "paused": "Paused – Space to continue, S to save, D to discard.",
            "ended": "Episode over – S to save, D to discard.",
        }
        self.state_label.setText(texts[self.state])
        colour = {"recording": "#c0392b", "ended": "#2471a3"}.get(self.state, "")
        self.state_label.setStyleSheet(f"color: {colour}; font-weight: bold;" if colour else "")
        self.start_button.setText(
            "Stop  [Space]" if self.state == "recording" else "Start  [Space]"
        )
        self.steps_label.setText(str(len(self._actions)))
        self.return_label.setText(f"{self._return:.2f}")
        cov = info.get("coverage")
        self.coverage_label.setText("–" if cov is None else f"{100 * float(cov):.1f} %")
        if "is_success" in info:
            ok = bool(info["is_success"])
            self.success_label.setText("yes" if ok else "no")
            self.success_label.setStyleSheet("color: #1e8449; font-weight: bold;" if ok else "")
        else:
            self.success_label.setText("–")
            self.success_label.setStyleSheet("")

    def _error(self, text: str) -> None:
        self.error_label.setText(text)
        self.error_label.setVisible(bool(text))
        if text:
            self.message.emit(text)

    def current_file(self) -> Path | None:
        return self.path
