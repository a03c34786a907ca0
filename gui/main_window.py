"""The app's main window: task picker, task view, the Record / Demos / Train / Policy tabs and
the status bar (message, task, file, episodes, device). One fixed-timestep loop drives the tab
that is shown; the window hands it the view's mouse events, the gamepad and the shortcuts."""

from __future__ import annotations

import threading
from pathlib import Path

from PyQt6.QtCore import QObject, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PyQt6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from . import resources, widgets
from .browser_panel import BrowserPanel
from .demo_files import preferred_file
from .gamepad import GamepadManager
from .loop import FixedStepLoop
from .panel import Panel
from .policy_panel import PolicyPanel
from .record_panel import RecordPanel
from .task_view import TaskView
from .tasks import Task, TaskError, registered_tasks
from .train_panel import TrainPanel
from .widgets import ElidedLabel, ErrorLabel

TAB_RECORD, TAB_DEMOS, TAB_TRAIN, TAB_POLICY = range(4)
MESSAGE_MS = 10_000  # how long a status message stays
SHORTCUTS = [
    (Qt.Key.Key_Space, "space"),
    (Qt.Key.Key_S, "save"),
    (Qt.Key.Key_D, "discard"),
    (Qt.Key.Key_Backspace, "discard"),
    (Qt.Key.Key_R, "reset"),
]


class _DeviceProbe(QObject):
    """Finds the compute device off the startup path (importing torch takes a while)."""

    found = pyqtSignal(str)

    def start(self) -> None:
        threading.Thread(target=self._run, name="device-probe", daemon=True).start()

    def _run(self) -> None:
        try:
            import torch

            if torch.cuda.is_available():
                text = f"CUDA: {torch.cuda.get_device_name(0)}"
            else:
                text = "CPU"
        except Exception:  # noqa: BLE001  (torch missing or broken: the app still records)
            text = "CPU (torch unavailable)"
        self.found.emit(text)


class MainWindow(QMainWindow):
    def __init__(
        self,
        env_id: str | None = None,
        demos: str | Path | None = None,
        policy: str | Path | None = None,
        record_to: str | Path | None = None,
        use_gamepad: bool = True,
        probe_device: bool = True,
        preload_policy: bool = True,
    ):
        super().__init__()
        self.setWindowTitle("dp-agent – Diffusion Policy")
        self.resize(1280, 800)
        self.settings = resources.load_settings()
        self.task_id: str | None = None
        self.device_text = "…"
        self._force_close = False
        self._shut_down = False

        self.view = TaskView()
        self.record_panel = RecordPanel(self.view)
        self.browser_panel = BrowserPanel(self.view)
        self.train_panel = TrainPanel(self.view)
        self.policy_panel = PolicyPanel(self.view)
        self.panels: list[Panel] = [
            self.record_panel,
            self.browser_panel,
            self.train_panel,
            self.policy_panel,
        ]
        self.active_panel: Panel = self.record_panel
        self.loop = FixedStepLoop(lambda: self.active_panel.tick(), 10.0, self)
        self.gamepad = GamepadManager(self, use_pygame=use_gamepad)
        self._message_timer = QTimer(self)
        self._message_timer.setSingleShot(True)
        self._message_timer.timeout.connect(lambda: self.status_message.setText(""))
        self._build()
        self._connect()

        self.device_probe = _DeviceProbe(self)
        self.device_probe.found.connect(self._device_found)
        if probe_device:
            QTimer.singleShot(0, self.device_probe.start)
        self._open_first(env_id, demos, policy, record_to, preload_policy)

    def _open_first(self, env_id, demos, policy, record_to, preload_policy: bool) -> None:
        """The start-up choices: task, files and policy from the command line or the settings."""
        first = env_id or self.settings.get("task") or resources.DEFAULT_TASK
        if not self.set_task(first) and first != resources.DEFAULT_TASK:
            self.set_task(resources.DEFAULT_TASK)
        if record_to:
            self.record_panel.set_file(record_to)
        if demos:
            self.browser_panel.open_file(demos)
            self.train_panel.add_demos(demos)
        if policy:
            self.policy_panel.load(policy)
        elif preload_policy and self.task_id and resources.shipped_policy(self.task_id):
            # the shipped policy loads in the background, ready when the Policy tab opens
            QTimer.singleShot(300, self._load_shipped_policy)
        self._tab_changed(self.tabs.currentIndex())
        self.view.setFocus()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(6, 6, 6, 0)

        top = QHBoxLayout()
        top.addWidget(QLabel("Task:"))
        self.task_combo = QComboBox()
        self.task_combo.setEditable(True)
        self.task_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.task_combo.setMinimumContentsLength(26)
        self.task_combo.setToolTip(
            "A dp_agent task, or any Gymnasium id whose env renders rgb_array and has a Box "
            "action space (press Enter to open it)"
        )
        for env_id in registered_tasks():
            self.task_combo.addItem(env_id)
        self.task_combo.activated.connect(lambda _: self._task_entered())
        self.task_combo.lineEdit().returnPressed.connect(self._task_entered)
        self.task_combo.lineEdit().textEdited.connect(lambda _: self.task_error.show_error(""))
        top.addWidget(self.task_combo)
        self.open_button = QPushButton("Open")
        self.open_button.clicked.connect(self._task_entered)
        top.addWidget(self.open_button)
        self.task_error = ErrorLabel()  # one line: a long message cannot make the bar taller
        top.addWidget(self.task_error, 1)
        outer.addLayout(top)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.view)
        self.tabs = QTabWidget()
        for panel, title in zip(self.panels, ["Record", "Demos", "Train", "Policy"], strict=True):
            self.tabs.addTab(panel, title)
        self.tabs.setMinimumWidth(400)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([760, 500])
        outer.addWidget(splitter, 1)
        self.setCentralWidget(central)

        bar = self.statusBar()
        self.status_message = ElidedLabel()  # cut to its room, never into the labels beside it
        self.status_message.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.status_task = ElidedLabel()
        self.status_file = ElidedLabel()
        self.status_episodes = ElidedLabel()
        self.status_device = ElidedLabel("device: …")
        bar.addWidget(self.status_message, 1)
        for label in (self.status_task, self.status_file, self.status_episodes):
            bar.addPermanentWidget(label)
        bar.addPermanentWidget(self.status_device)

    def _connect(self) -> None:
        self.tabs.currentChanged.connect(self._tab_changed)
        for panel in self.panels:
            panel.message.connect(self.show_message)
            panel.file_changed.connect(lambda _: self._update_status())
            panel.demos_changed.connect(lambda path, p=panel: self._demos_changed(p, path))
        self.browser_panel.file_changed.connect(self._remember_demo_file)
        self.train_panel.trained.connect(self._trained)
        self.policy_panel.wants_task.connect(self._policy_wants_task)
        self.view.pressed.connect(lambda x, y: self.active_panel.on_press(x, y))
        self.view.dragged.connect(lambda x, y: self.active_panel.on_drag(x, y))
        self.view.released.connect(lambda x, y: self.active_panel.on_release(x, y))
        self.gamepad.stick.connect(lambda x, y, dt: self.active_panel.on_stick(x, y, dt))
        self.gamepad.button.connect(lambda name: self.active_panel.on_button(name))
        self.gamepad.connected.connect(self._pad_connected)
        self.gamepad.disconnected.connect(self._pad_disconnected)
        self.shortcuts = []
        for key, name in SHORTCUTS:
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.activated.connect(lambda name=name: self.active_panel.on_key(name))
            self.shortcuts.append(shortcut)

    # ------------------------------------------------------------------ task
    def _task_entered(self) -> None:
        """The user chose a task (list, Enter or Open): open it, and give the keys back to the
        view so that the shortcuts work at once; a bad id keeps the focus in the box to fix."""
        text = self.task_combo.currentText().strip()
        if text == self.task_id:
            self.task_error.show_error("")
        elif not self.set_task(text):
            return
        self.view.setFocus()

    def set_task(self, env_id: str) -> bool:
        """Switch every tab to ``env_id``; on a bad id show why and keep the current task."""
        try:
            tasks = self._make_tasks(env_id)
        except TaskError as exc:
            self.task_error.show_error(str(exc))
            self.show_message(str(exc))
            return False
        self.task_error.show_error("")
        self.loop.stop()
        self.task_id = env_id
        if self.task_combo.findText(env_id) < 0:
            self.task_combo.addItem(env_id)
        self.task_combo.setCurrentText(env_id)
        files = self.demo_files(env_id)
        preferred = preferred_file(files, self._last_demo_file(env_id))
        self.view.clear_overlays()
        for panel, task in zip(self.panels, tasks, strict=True):
            panel.on_task_changed(task, files, preferred)
        self.active_panel.activate()
        self.loop.set_fps(tasks[0].fps)
        self.loop.start()
        self.settings["task"] = env_id
        resources.save_settings(self.settings)
        self._say_what_is_not_shipped(env_id)
        self._update_status()
        return True

    def _make_tasks(self, env_id: str) -> list[Task]:
        """An env instance of ``env_id`` for every tab (TaskError: none is left open)."""
        tasks: list[Task] = []
        try:
            for _ in self.panels:
                tasks.append(Task.make(env_id))
        except TaskError:
            for task in tasks:
                task.close()
            raise
        return tasks

    def _say_what_is_not_shipped(self, env_id: str) -> None:
        if env_id not in resources.SHIPPED_TASKS:
            return
        missing = [
            what
            for what, path in [
                ("demos", resources.shipped_demos(env_id)),
                ("pretrained policy or planner", resources.shipped_policy(env_id)),
            ]
            if path is None
        ]
        if missing:
            self.show_message(f"No shipped {' or '.join(missing)} for {env_id} in this install.")

    def demo_files(self, env_id: str) -> list[Path]:
        """Files offered for a task: the shipped demos (if any), the user's recordings, and the
        file last opened for it when that is another one."""
        shipped = resources.shipped_demos(env_id)
        files = ([shipped] if shipped is not None else []) + [resources.user_demo_path(env_id)]
        last = self._last_demo_file(env_id)
        if last is not None and last not in files and last.is_file():
            files.append(last)
        return files

    def _last_demo_file(self, env_id: str) -> Path | None:
        last = self.settings.get("demo_files", {}).get(env_id)
        return Path(last) if isinstance(last, str) and last else None

    def _remember_demo_file(self, path: str) -> None:
        """The Demos tab opened ``path``: offer it first the next time this task is opened."""
        if not path or self.task_id is None or not Path(path).is_file():
            return
        remembered = self.settings.setdefault("demo_files", {})
        if remembered.get(self.task_id) != path:
            remembered[self.task_id] = path
            resources.save_settings(self.settings)

    def _load_shipped_policy(self) -> None:
        panel = self.policy_panel
        if panel.policy is None and not panel.loading:
            panel.load_default()

    def _policy_wants_task(self, env_id: str) -> None:
        if env_id != self.task_id:
            self.show_message(f"The policy was trained on {env_id}: switching task.")
            self.set_task(env_id)

    # ------------------------------------------------------------------ tabs
    def _tab_changed(self, index: int) -> None:
        new = self.panels[index]
        if new is not self.active_panel:
            self.active_panel.deactivate()
        self.active_panel = new
        new.activate()
        self._update_status()

    def _pad_connected(self, name: str) -> None:
        self.record_panel.set_gamepad_name(name)
        self.show_message(f"Gamepad connected: {name}")

    def _pad_disconnected(self) -> None:
        self.record_panel.set_gamepad_name(None)
        self.show_message("Gamepad disconnected.")

    # ------------------------------------------------------------------ events from tabs
    def _demos_changed(self, source: Panel, path: str) -> None:
        for panel in self.panels:
            if panel is not source:
                panel.on_demos_changed(Path(path))
        self._update_status()

    def _trained(self, path: str) -> None:
        self.policy_panel.load(path)
        self.show_message(f"Loaded the trained policy {path} into the Policy tab.")

    def _device_found(self, text: str) -> None:
        self.device_text = text
        self.status_device.setText(f"device: {text}")
        if text.startswith("CUDA") and not self.train_panel.running:
            self.train_panel.set_preset("gpu-standard")

    # ------------------------------------------------------------------ status bar
    def show_message(self, text: str) -> None:
        self.status_message.setText(text)
        self._message_timer.start(MESSAGE_MS)

    def current_file(self) -> Path | None:
        return self.active_panel.current_file()

    def _update_status(self) -> None:
        self.status_task.setText(f"task: {self.task_id or '–'}")
        path = self.current_file()
        if path is None:
            self.status_file.setText("file: –")
            self.status_episodes.setText("")
            return
        self.status_file.setText(f"file: {path.name}", tooltip=str(path))
        n = self.active_panel.episode_count()
        self.status_episodes.setText(f"episodes: {'?' if n is None else n}")

    # ------------------------------------------------------------------ shutdown
    def close_now(self) -> None:
        """Close without asking anything (SIGTERM, Ctrl+C): a running training run is stopped."""
        self._force_close = True
        self.close()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self._force_close and not self._shut_down:
            for panel in self.panels:
                question = panel.close_question()
                if question and not widgets.ask(
                    self, "Close dp-agent", question, yes="Stop and close", no="Keep running"
                ):
                    event.ignore()
                    return
        if not self._shut_down:
            self._shut_down = True
            self.loop.stop()
            self.gamepad.stop()
            for panel in self.panels:
                panel.shutdown()
            resources.save_settings(self.settings)
        super().closeEvent(event)
