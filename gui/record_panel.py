"""Record panel: drive the task with the mouse or a gamepad, and append finished episodes to an
HDF5 demo file with DemoWriter (durable per episode: killing the app loses at most the one in
progress). Saving runs in a thread of its own, so the task view stays live however long the disk
takes; the episode is kept until its save has succeeded.

Mouse: while the left button is held the target follows the cursor; released, the last target is
held. Gamepad: the left stick moves the target; A start/stop, B discard, X save, Y reset.
Keys (when this tab is shown): Space start/stop, S save, D or Backspace discard, R reset.
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import numpy as np
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from dp_agent.data import DemoError

from . import resources
from .demo_files import check_demo_file, episode_count
from .gamepad import BUTTON_ACTIONS
from .panel import Panel
from .record_save import EpisodeSaver, RecordSavingMixin
from .task_view import TaskView
from .tasks import Task, TaskError
from .widgets import HINT_STYLE, FilePicker

STICK_SPEED = 0.6  # fraction of the view crossed per second at full stick deflection


class RecordPanel(RecordSavingMixin, Panel):
    """Records demonstrations in its own env instance of the current task.

    States: "idle" (nothing recorded yet), "recording", "paused" (stopped, episode kept),
    "ended" (the env terminated or truncated: save or discard), "saving" (the save thread is
    writing the episode; then "idle" with a new episode, or back to "paused"/"ended" if it failed).
    """

    _save_done = pyqtSignal(object)  # the Future of a save; delivered on the GUI thread

    def __init__(self, view: TaskView, parent: QWidget | None = None):
        super().__init__(view, parent)
        self.state = "idle"
        self._saver = EpisodeSaver()
        self._saving: Future | None = None
        self._episodes: int | None = None  # in self.path, as last read or counted
        self._state_before_save = "paused"
        self._save_done.connect(self._on_save_done)
        self.path: Path | None = None
        self.target = np.zeros(2)
        self.dragging = False
        self.used_inputs: set[str] = set()
        self._seed: int | None = None
        self._rng = np.random.default_rng()
        self._clear_buffers()
        self._build()

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:  # noqa: PLR0915 (a Qt layout: one statement per widget)
        layout = QVBoxLayout(self)

        file_box = QGroupBox("Demo file (episodes are appended)")
        fl = QVBoxLayout(file_box)
        self.picker = FilePicker("Choose…", "Record into demo file", save=True)
        self.picker.chosen.connect(self._file_chosen)
        fl.addWidget(self.picker)
        obs_row = QHBoxLayout()
        self.obs_label = QLabel("Observation:")
        self.obs_combo = QComboBox()  # the task's obs_type choices; images are stored as such
        self.obs_combo.setToolTip(
            "What is stored: the env's observation of this kind (pixels: the 96x96 image the "
            "policy sees, plus the agent's position)"
        )
        self.obs_combo.activated.connect(self._obs_type_chosen)
        obs_row.addWidget(self.obs_label)
        obs_row.addWidget(self.obs_combo, 1)
        fl.addLayout(obs_row)
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
        self.episode_form = form
        layout.addWidget(live)
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
        help_label.setStyleSheet(HINT_STYLE)
        pl.addWidget(help_label)
        layout.addWidget(pad)
        layout.addStretch(1)
        self._update_labels({})

    # ------------------------------------------------------------------ task and file
    def on_task_changed(self, task: Task, files: list[Path], preferred: Path | None) -> None:
        """Record ``task`` (an env instance owned by this panel from now on) into the user's
        own file for it (the shipped files are never recorded into)."""
        self.wait_for_save()  # the episode being saved belongs to the old task
        self._saver.forget()
        self.replace_task(task)
        self._clear_buffers()
        self.state = "idle"
        self._reset_env()
        self.episode_form.setRowVisible(self.coverage_label, task.reports_coverage)
        self.picker.set_files([])
        obs_type = self._show_obs_types(task)
        self.set_file(resources.user_demo_path(task.env_id, obs_type))

    def _show_obs_types(self, task: Task) -> str | None:
        """Offer the task's observation types (hidden when it has no choice); -> the current."""
        choices = list(getattr(task.env.unwrapped, "obs_types", ()))
        current = task.env_args["env_kwargs"].get("obs_type") or (choices[0] if choices else None)
        self.obs_combo.clear()
        for name in choices:
            self.obs_combo.addItem(name, name)
        if current in choices:
            self.obs_combo.setCurrentIndex(choices.index(current))
        for w in (self.obs_label, self.obs_combo):
            w.setVisible(len(choices) > 1)
        return current

    def _obs_type_chosen(self, index: int) -> None:
        """Record another observation type: a new env instance made with it, its own file."""
        obs_type = self.obs_combo.itemData(index)
        if self.task is None or obs_type == self.task.env_args["env_kwargs"].get("obs_type"):
            return
        kwargs = {**self.task.env_args["env_kwargs"], "obs_type": obs_type}
        try:
            task = Task.make(self.task.env_id, env_kwargs=kwargs)
        except TaskError as exc:
            self.show_error(str(exc))
            return
        self.on_task_changed(task, [], None)

    def set_file(self, path: str | Path) -> bool:
        """Record into ``path``; refuses the shipped (read-only) demo files and files of other
        tasks or that cannot be read (the file recorded into stays the same)."""
        self.wait_for_save()  # an episode being saved goes to the file it was saved to
        path = Path(path).expanduser()
        why = None
        if resources.is_shipped(path):
            why = (
                f"{path}: this is a shipped demo file and is never modified; choose another file "
                "to record into."
            )
        elif path.exists() and self.task is not None:
            try:
                check_demo_file(path, expected_env_id=self.task.env_id)
            except DemoError as exc:
                why = f"Cannot record into this file: {exc}"
        if why is not None:
            self.picker.remove(path)
            if self.path is not None:
                self.picker.add(self.path)
            self.show_error(why)
            return False
        self.path = path
        self.picker.add(path)
        self.show_error("")
        self._update_count()
        self.file_changed.emit(str(path))
        return True

    def _file_chosen(self, name: str) -> None:
        self.set_file(name)

    def on_demos_changed(self, path: Path) -> None:
        if self.path is not None and Path(path) == self.path:
            self._saver.forget()
            self._update_count()

    def _update_count(self) -> None:
        self._episodes = episode_count(self.path)
        self._show_count()

    def _show_count(self) -> None:
        self.count_label.setText("?" if self._episodes is None else str(self._episodes))

    def episode_count(self) -> int | None:
        """Episodes in the file, as counted when it was chosen, plus those saved since (the
        status bar asks after every save: the file is not read again on the GUI thread)."""
        return self._episodes

    # ------------------------------------------------------------------ activation
    def activate(self) -> None:
        super().activate()
        self.view.clear_overlays()
        self._show()

    def deactivate(self) -> None:
        super().deactivate()
        if self.state == "recording":
            self.state = "paused"
            self._update_labels(self._info)
        self.dragging = False

    def on_key(self, key: str) -> None:
        actions = {
            "space": self.toggle_recording,
            "save": self.save_episode,
            "discard": self.discard_episode,
            "reset": self.reset_episode,
        }
        actions[key]()

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
        keys = {"A": "space", "B": "discard", "X": "save", "Y": "reset"}
        if name in keys:
            self.used_inputs.add("gamepad")
            self.on_key(keys[name])

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
        if self.state == "saving":
            self.message.emit("Saving the episode: a new one starts when it is saved.")
            return
        if self.state == "ended":
            self.message.emit("The episode has ended: save it (S) or discard it (D) first.")
            return
        self.state = "recording"
        self._update_labels(self._info)

    def discard_episode(self) -> None:
        if self.state == "saving":
            self.message.emit("Saving the episode: it cannot be discarded now.")
            return
        had = bool(self._actions)
        self._new_episode()
        if had:
            self.message.emit("Episode discarded.")

    def reset_episode(self) -> None:
        if self.state == "saving":
            self.message.emit("Saving the episode: the task resets when it is saved.")
            return
        self._new_episode()
        self.message.emit("Task reset.")

    def shutdown(self) -> None:
        """The window closes: an episode being saved is saved first."""
        self.wait_for_save()
        self._saver.close()
        super().shutdown()

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
            self.show_error(f"{self.task.env_id}: reset failed: {exc}")
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
            "saving": "Saving the episode…",
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

    def current_file(self) -> Path | None:
        return self.path
