"""The app's main window: task picker, task view, the Record / Demos / Train / Policy tabs and
the status bar (task, file, episodes, device). One fixed-timestep loop drives the active tab."""

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
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from . import resources
from .browser_panel import BrowserPanel, read_actions
from .gamepad import GamepadManager
from .loop import FixedStepLoop
from .policy_panel import PolicyPanel
from .record_panel import RecordPanel, episode_count
from .task_view import TaskView
from .tasks import Task, TaskError, registered_tasks
from .train_panel import TrainPanel

TAB_RECORD, TAB_DEMOS, TAB_TRAIN, TAB_POLICY = range(4)


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
        self.extra_demos = Path(demos) if demos else None
        self._active_tab = -1

        self.view = TaskView()
        self.record_panel = RecordPanel(self.view)
        self.browser_panel = BrowserPanel(self.view)
        self.train_panel = TrainPanel()
        self.policy_panel = PolicyPanel(self.view)
        self.loop = FixedStepLoop(self._tick, 10.0, self)
        self.gamepad = GamepadManager(self, use_pygame=use_gamepad)
        self._build()
        self._connect()

        self.device_probe = _DeviceProbe(self)
        self.device_probe.found.connect(self._device_found)
        if probe_device:
            QTimer.singleShot(0, self.device_probe.start)

        first = env_id or self.settings.get("task") or resources.DEFAULT_TASK
        if not self.set_task(first) and first != resources.DEFAULT_TASK:
            self.set_task(resources.DEFAULT_TASK)
        if record_to:
            self.record_panel.set_file(record_to)
        if self.extra_demos is not None:
            self.browser_panel.open_file(self.extra_demos)
            self.train_panel.add_demos(self.extra_demos)
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
        top.addWidget(self.task_combo)
        open_button = QPushButton("Open")
        open_button.clicked.connect(self._task_entered)
        top.addWidget(open_button)
        self.task_error = QLabel()
        self.task_error.setStyleSheet("color: #c0392b;")
        self.task_error.setWordWrap(True)
        top.addWidget(self.task_error, 1)
        outer.addLayout(top)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.view)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.record_panel, "Record")
        self.tabs.addTab(self.browser_panel, "Demos")
        self.tabs.addTab(self.train_panel, "Train")
        self.tabs.addTab(self.policy_panel, "Policy")
        self.tabs.setMinimumWidth(400)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([760, 500])
        outer.addWidget(splitter, 1)
        self.setCentralWidget(central)

        bar = self.statusBar()
        self.status_task = QLabel()
        self.status_file = QLabel()
        self.status_episodes = QLabel()
        self.status_device = QLabel("device: …")
        for label in (self.status_task, self.status_file, self.status_episodes):
            bar.addPermanentWidget(label)
        bar.addPermanentWidget(self.status_device)

    def _connect(self) -> None:
        self.tabs.currentChanged.connect(self._tab_changed)
        for panel in (self.record_panel, self.browser_panel, self.train_panel, self.policy_panel):
            panel.message.connect(self.show_message)
        self.view.pressed.connect(self._mouse_pressed)
        self.view.dragged.connect(self._mouse_dragged)
        self.view.released.connect(self._mouse_released)
        self.record_panel.saved.connect(self._episode_saved)
        self.record_panel.file_changed.connect(lambda _: self._update_status())
        self.browser_panel.file_changed.connect(lambda _: self._update_status())
        self.browser_panel.episodes_changed.connect(self._episodes_changed)
        self.train_panel.file_changed.connect(lambda _: self._update_status())
        self.train_panel.file_changed.connect(lambda _: self._show_training_data())
        self.train_panel.trained.connect(self._trained)
        self.policy_panel.wants_task.connect(self._policy_wants_task)
        self.gamepad.stick.connect(self._stick)
        self.gamepad.button.connect(self._pad_button)
        self.gamepad.connected.connect(self._pad_connected)
        self.gamepad.disconnected.connect(self._pad_disconnected)

        keys = [
            (Qt.Key.Key_Space, self._key_space),
            (Qt.Key.Key_S, self._record_key(self.record_panel.save_episode)),
            (Qt.Key.Key_D, self._record_key(self.record_panel.discard_episode)),
            (Qt.Key.Key_Backspace, self._record_key(self.record_panel.discard_episode)),
            (Qt.Key.Key_R, self._key_reset),
        ]
        self.shortcuts = []
        for key, slot in keys:
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.activated.connect(slot)
            self.shortcuts.append(shortcut)

    # ------------------------------------------------------------------ task
    def _task_entered(self) -> None:
        text = self.task_combo.currentText().strip()
        if text and text != self.task_id:
            self.set_task(text)

    def set_task(self, env_id: str) -> bool:
        """Switch every panel to ``env_id``; on a bad id show why and keep the current task."""
        try:
            tasks = [Task.make(env_id) for _ in range(3)]
        except TaskError as exc:
            self.task_error.setText(str(exc))
            self.task_error.setToolTip(str(exc))
            self.show_message(str(exc))
            if self.task_id:
                self.task_combo.setCurrentText(self.task_id)
            return False
        self.task_error.setText("")
        self.loop.stop()
        self.task_id = env_id
        if self.task_combo.findText(env_id) < 0:
            self.task_combo.addItem(env_id)
        self.task_combo.setCurrentText(env_id)
        files = self.demo_files(env_id)
        self.record_panel.set_task(tasks[0])
        self.browser_panel.set_task(tasks[1], files)
        self.train_panel.set_task(env_id, files)
        self.policy_panel.set_task(tasks[2])
        self.view.clear_overlays()
        active = self._panel(self._active_tab)
        if active is not None:
            active.activate()
        else:
            self.view.set_extent(tasks[0].extent)
            self.view.set_frame(tasks[0].frame())
        self.loop.set_fps(tasks[0].fps)
        self.loop.start()
        self.settings["task"] = env_id
        resources.save_settings(self.settings)
        missing = []
        if resources.shipped_demos(env_id) is None and env_id in resources.SHIPPED_TASKS:
            missing.append("demos")
        if resources.shipped_policy(env_id) is None and env_id in resources.SHIPPED_TASKS:
            missing.append("pretrained policy")
        if missing:
            self.show_message(f"No shipped {' or '.join(missing)} for {env_id} in this install.")
        self._update_status()
        return True

    def demo_files(self, env_id: str) -> list[Path]:
        """Files offered for a task: the shipped demos (if any), then the user's recordings."""
        shipped = resources.shipped_demos(env_id)
        return ([shipped] if shipped is not None else []) + [resources.user_demo_path(env_id)]

    def _load_shipped_policy(self) -> None:
        panel = self.policy_panel
        if panel.agent is None and not panel.loading:
            panel.load_default()

    def _policy_wants_task(self, env_id: str) -> None:
        if env_id != self.task_id:
            self.show_message(f"The policy was trained on {env_id}: switching task.")
            self.set_task(env_id)

    # ------------------------------------------------------------------ tabs and loop
    def _panel(self, index: int):
        return {
            TAB_RECORD: self.record_panel,
            TAB_DEMOS: self.browser_panel,
            TAB_POLICY: self.policy_panel,
        }.get(index)

    def _tab_changed(self, index: int) -> None:
        old = self._panel(self._active_tab)
        if old is not None and self._active_tab != index:
            old.deactivate()
        self._active_tab = index
        new = self._panel(index)
        if new is not None:
            new.activate()
        elif index == TAB_TRAIN:
            self._show_training_data()
        self._update_status()

    def _show_training_data(self) -> None:
        """On the Train tab the view shows the task with the action paths of the chosen demos."""
        task = self.record_panel.task
        if task is None or self._active_tab != TAB_TRAIN:
            return
        self.view.clear_overlays()
        self.view.set_extent(task.extent)
        self.view.set_frame(task.frame())
        path = self.train_panel.demos_path()
        if path is None or not path.is_file() or not task.draws_actions:
            return
        try:
            from dp_agent.demos import DemoReader

            with DemoReader(path, expected_env_id=task.env_id) as reader:
                names = reader.names
            actions = read_actions(path, names)
        except Exception:  # noqa: BLE001  (the Train tab itself reports bad files)
            return
        self.view.set_paths([task.point_from_action(a) for a in actions])
        self.view.set_caption(f"{path.name}: {len(actions)} episodes")

    def _tick(self) -> None:
        panel = self._panel(self._active_tab)
        if panel is not None:
            panel.tick()

    # ------------------------------------------------------------------ inputs
    def _mouse_pressed(self, x: float, y: float) -> None:
        if self._active_tab == TAB_RECORD:
            self.record_panel.on_press(x, y)

    def _mouse_dragged(self, x: float, y: float) -> None:
        if self._active_tab == TAB_RECORD:
            self.record_panel.on_drag(x, y)

    def _mouse_released(self, x: float, y: float) -> None:
        if self._active_tab == TAB_RECORD:
            self.record_panel.on_release(x, y)

    def _stick(self, x: float, y: float, dt: float) -> None:
        if self._active_tab == TAB_RECORD:
            self.record_panel.on_stick(x, y, dt)

    def _pad_button(self, name: str) -> None:
        if self._active_tab == TAB_RECORD:
            self.record_panel.on_button(name)

    def _pad_connected(self, name: str) -> None:
        self.record_panel.set_gamepad_name(name)
        self.show_message(f"Gamepad connected: {name}")

    def _pad_disconnected(self) -> None:
        self.record_panel.set_gamepad_name(None)
        self.show_message("Gamepad disconnected.")

    def _record_key(self, slot):
        def run() -> None:
            if self._active_tab == TAB_RECORD:
                slot()

        return run

    def _key_space(self) -> None:
        if self._active_tab == TAB_RECORD:
            self.record_panel.toggle_recording()
        elif self._active_tab == TAB_POLICY:
            if self.policy_panel.running:
                self.policy_panel.pause_button.toggle()
            else:
                self.policy_panel.start()
        elif self._active_tab == TAB_DEMOS:
            if self.browser_panel.replay_episode is not None:
                self.browser_panel.stop_replay()
            else:
                self.browser_panel.replay_selected()

    def _key_reset(self) -> None:
        if self._active_tab == TAB_RECORD:
            self.record_panel.reset_episode()
        elif self._active_tab == TAB_POLICY:
            self.policy_panel.new_episode()

    # ------------------------------------------------------------------ events from panels
    def _episode_saved(self, path: str, name: str) -> None:
        self.browser_panel.add_file(path, select=False)
        self.train_panel.add_demos(path, select=False)
        if self.browser_panel.path is not None and Path(path) == self.browser_panel.path:
            self.browser_panel.refresh()
        self._update_status()

    def _episodes_changed(self, path: str) -> None:
        if self.record_panel.path is not None and Path(path) == self.record_panel.path:
            self.record_panel._update_count()
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
        self.statusBar().showMessage(text, 10000)

    def current_file(self) -> Path | None:
        panel = {
            TAB_RECORD: self.record_panel,
            TAB_DEMOS: self.browser_panel,
            TAB_TRAIN: self.train_panel,
        }.get(self._active_tab)
        if panel is None:
            return self.record_panel.path
        return panel.current_file()

    def _update_status(self) -> None:
        self.status_task.setText(f"task: {self.task_id or '–'}")
        path = self.current_file()
        if path is None:
            self.status_file.setText("file: –")
            self.status_episodes.setText("")
            return
        self.status_file.setText(f"file: {path.name}")
        self.status_file.setToolTip(str(path))
        if self._active_tab == TAB_DEMOS:
            n = self.browser_panel.num_episodes
        else:
            n = episode_count(path)
        self.status_episodes.setText(f"episodes: {'?' if n is None else n}")

    # ------------------------------------------------------------------ shutdown
    def close_now(self) -> None:
        """Close without asking anything (SIGTERM, Ctrl+C): a running training run is stopped."""
        self._force_close = True
        self.close()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self.loop.stop()
        self.gamepad.stop()
        self.train_panel.shutdown()
        self.policy_panel.shutdown()
        self.record_panel.shutdown()
        self.browser_panel.shutdown()
        resources.save_settings(self.settings)
        super().closeEvent(event)
