"""Train panel: runs ``python -m dp_agent.cli train ... --json-progress`` in a QProcess, shows its
progress events (``dp_agent.progress``: steps, samples/s, ETA, a live loss curve), cancels it
(kill; the last checkpoint stays on disk) and hands ``final.safetensors`` to the policy view when
it is done. While the tab is shown the view draws the action paths of the chosen demos.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pyqtgraph as pg
from PyQt6.QtCore import QProcess, QProcessEnvironment, Qt, QTimer, pyqtSignal
from PyQt6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from dp_agent.data import DemoError
from dp_agent.progress import TrainEvent

from . import resources
from .demo_files import read_contents
from .panel import Panel
from .task_view import TaskView
from .tasks import Task
from .train_progress import LossAxis, TrainProgressMixin
from .widgets import FilePicker


def train_command(
    demos: str | Path,
    preset: str,
    steps: int,
    out: str | Path,
    device: str = "auto",
    processes: int = 1,
) -> list[str]:
    """The argument list (after the interpreter) that starts a training run with JSON progress;
    with ``processes`` > 1, under torchrun on this machine (one model, DDP, one GPU each on
    CUDA)."""
    launcher = []
    if processes > 1:
        launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
        launcher.append(str(int(processes)))
    return [
        *launcher,
        "-m",
        "dp_agent.cli",
        "train",
        "--demos",
        str(demos),
        "--preset",
        preset,
        "--steps",
        str(int(steps)),
        "--out",
        str(out),
        "--device",
        device,
        "--json-progress",
    ]


class TrainPanel(TrainProgressMixin, Panel):
    """Starts, follows and cancels one training run at a time."""

    trained = pyqtSignal(str)  # path of final.safetensors

    def __init__(self, view: TaskView, parent: QWidget | None = None):
        super().__init__(view, parent)
        self.env_id: str | None = None
        self.process: QProcess | None = None
        self.extra_env: dict[str, str] = {}  # added to the child's environment
        self.events: list[TrainEvent] = []  # every progress event of the current run
        self.state = "idle"  # idle | running | done | cancelled | failed
        self.out_dir: Path | None = None
        self.final_path: Path | None = None
        self._out_edited = False
        self._stdout_buffer = ""
        self._stderr_tail: list[str] = []
        self._error_message: str | None = None
        self._loss_steps: list[int] = []
        self._loss_values: list[float] = []
        self._build()

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:  # noqa: PLR0915 (a Qt layout: one statement per widget)
        from dp_agent.config import PRESETS

        layout = QVBoxLayout(self)
        setup = QGroupBox("Run")
        form = QFormLayout(setup)
        self.picker = FilePicker("Open…", "Demo file to train on")
        self.picker.combo.currentIndexChanged.connect(self._demos_changed)
        form.addRow("Demos:", self.picker)

        self.preset_combo = QComboBox()
        for name, preset in PRESETS.items():
            self.preset_combo.addItem(name, name)
            self.preset_combo.setItemData(
                self.preset_combo.count() - 1, preset.description, Qt.ItemDataRole.ToolTipRole
            )
        self.preset_combo.currentIndexChanged.connect(self._preset_changed)
        form.addRow("Preset:", self.preset_combo)

        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 10_000_000)
        self.steps_spin.setSingleStep(500)
        self.steps_spin.setGroupSeparatorShown(True)
        form.addRow("Steps:", self.steps_spin)

        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda"])
        form.addRow("Device:", self.device_combo)

        self.processes_spin = QSpinBox()
        self.processes_spin.setRange(1, max(1, os.cpu_count() or 1))
        self.processes_spin.setToolTip(
            "Train one model in N processes (torchrun, DistributedDataParallel): one GPU each "
            "on CUDA, or N CPU processes. The batch is the global batch, split between them."
        )
        form.addRow("Processes:", self.processes_spin)

        out_row = QHBoxLayout()
        self.out_edit = QLineEdit()
        self.out_edit.textEdited.connect(lambda _: setattr(self, "_out_edited", True))
        out_browse = QPushButton("…")
        out_browse.setFixedWidth(32)
        out_browse.clicked.connect(self._choose_out)
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(out_browse)
        form.addRow("Output:", out_row)
        layout.addWidget(setup)

        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start training")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.load_last_button = QPushButton("Load last checkpoint")
        self.load_last_button.clicked.connect(self._load_last)
        for b in (self.start_button, self.cancel_button, self.load_last_button):
            buttons.addWidget(b)
        layout.addLayout(buttons)

        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setFormat("idle")
        layout.addWidget(self.progress)

        stats = QGridLayout()
        self.step_label = QLabel("–")
        self.loss_label = QLabel("–")
        self.speed_label = QLabel("–")
        self.eta_label = QLabel("–")
        self.device_label = QLabel("–")
        self.device_label.setWordWrap(True)
        for i, (name, label) in enumerate(
            [
                ("Step", self.step_label),
                ("Loss", self.loss_label),
                ("Samples/s", self.speed_label),
                ("ETA", self.eta_label),
            ]
        ):
            stats.addWidget(QLabel(f"{name}:"), i // 2, 2 * (i % 2))
            stats.addWidget(label, i // 2, 2 * (i % 2) + 1)
        stats.addWidget(QLabel("Device:"), 2, 0)
        stats.addWidget(self.device_label, 2, 1, 1, 3)
        stats.setColumnStretch(1, 1)
        stats.setColumnStretch(3, 1)
        layout.addLayout(stats)

        self.loss_plot = pg.PlotWidget(axisItems={"left": LossAxis("left")})
        self.loss_plot.setBackground("w")
        self.loss_plot.setLabel("bottom", "step")
        self.loss_plot.setLabel("left", "loss")
        self.loss_plot.setLogMode(y=True)
        self.loss_plot.showGrid(x=True, y=True, alpha=0.2)
        self.loss_plot.setMinimumHeight(110)
        self.loss_curve = self.loss_plot.plot([], [], pen=pg.mkPen((200, 60, 40), width=2))
        layout.addWidget(self.loss_plot, 1)

        layout.addWidget(self.error_label)

        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(400)
        self.log.setMaximumHeight(80)
        self.log.setPlaceholderText("Messages from the training process")
        layout.addWidget(self.log)
        self._preset_changed()
        self._update_buttons()

    # ------------------------------------------------------------------ setup
    def on_task_changed(self, task: Task, files: list[Path], preferred: Path | None) -> None:
        """Offer ``files`` (shipped demos, the user's file) for ``task``; ``preferred`` first."""
        self.replace_task(task)
        self.env_id = task.env_id
        self.picker.set_files(files, preferred)
        self._demos_changed()
        if not self._out_edited:
            self.out_edit.setText(str(resources.new_run_dir(task.env_id)))

    def add_demos(self, path: str | Path, select: bool = True) -> None:
        self.picker.add(path, select)

    def on_demos_changed(self, path: Path) -> None:
        self.picker.add(path, select=False)

    def demos_path(self) -> Path | None:
        return self.picker.path()

    def current_file(self) -> Path | None:
        return self.demos_path()

    def set_preset(self, name: str) -> None:
        index = self.preset_combo.findData(name)
        if index >= 0:
            self.preset_combo.setCurrentIndex(index)

    def _preset_changed(self, *_: object) -> None:
        from dp_agent.config import PRESETS

        preset = PRESETS.get(self.preset_combo.currentData())
        if preset is not None:
            self.steps_spin.setValue(int(preset.train.get("num_steps", 3000)))
            self.preset_combo.setToolTip(preset.description)

    def _demos_changed(self, *_: object) -> None:
        path = self.demos_path()
        self.file_changed.emit(str(path) if path else "")
        self._update_buttons()
        self._show_data()

    # ------------------------------------------------------------------ the view
    def activate(self) -> None:
        super().activate()
        self._show_data()

    def _show_data(self) -> None:
        """The task with the action paths of the chosen demos (bad files: the task alone; the
        run itself reports why it cannot use them)."""
        task = self.task
        if task is None or not self.active:
            return
        self.view.clear_overlays()
        self.view.set_extent(task.extent)
        self.view.set_frame(task.frame())
        path = self.demos_path()
        if path is None or not path.is_file() or not task.draws_actions:
            return
        try:
            contents = read_contents(path, expected_env_id=task.env_id)
        except DemoError:
            return
        self.view.set_paths([task.point_from_action(a) for a in contents.actions])
        self.view.set_caption(f"{path.name}: {len(contents.actions)} episodes")

    def _choose_out(self) -> None:
        name = QFileDialog.getExistingDirectory(self, "Output folder", str(resources.app_home()))
        if name:
            self.out_edit.setText(name)
            self._out_edited = True

    # ------------------------------------------------------------------ run
    @property
    def running(self) -> bool:
        return self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning

    def start(self) -> bool:
        """Start a training run in a child process; False (with a message) if it cannot start."""
        if self.running:
            return False
        demos = self.demos_path()
        if demos is None or not demos.is_file():
            self.show_error(f"Demo file not found: {demos}. Record episodes or open a file first.")
            return False
        out_text = self.out_edit.text().strip()
        if not out_text or (not self._out_edited and Path(out_text).exists()):
            out_text = str(resources.new_run_dir(self.env_id or "task"))
            self.out_edit.setText(out_text)
        self.out_dir = Path(out_text).expanduser()
        self._clear_run()
        args = train_command(
            demos,
            self.preset_combo.currentData(),
            self.steps_spin.value(),
            self.out_dir,
            self.device_combo.currentText(),
            self.processes_spin.value(),
        )
        self.process = self._make_process()
        self.state = "running"
        self._append_log(f"$ {Path(sys.executable).name} {' '.join(args)}")
        self.process.start(sys.executable, args)
        self._update_buttons()
        self.message.emit(f"Training started on {demos.name} → {self.out_dir}")
        return True

    def _clear_run(self) -> None:
        """Forget the previous run's progress, curve, log and error."""
        self.final_path = None
        self.events = []
        self._stdout_buffer = ""
        self._stderr_tail = []
        self._error_message = None
        self._loss_steps, self._loss_values = [], []
        self.loss_curve.setData([], [])
        self.log.clear()
        self.show_error("")
        for label in (self.step_label, self.loss_label, self.speed_label, self.eta_label):
            label.setText("–")
        self.device_label.setText("starting…")
        self.progress.setRange(0, 0)  # busy until the "start" event
        self.progress.setFormat("starting…")

    def _make_process(self) -> QProcess:
        process = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        for key, value in self.extra_env.items():
            env.insert(key, value)
        process.setProcessEnvironment(env)
        process.readyReadStandardOutput.connect(self._read_stdout)
        process.readyReadStandardError.connect(self._read_stderr)
        process.finished.connect(self._finished)
        process.errorOccurred.connect(self._process_error)
        return process

    def cancel(self) -> None:
        """Stop the run now; checkpoints already written stay (they are written atomically)."""
        if not self.running:
            return
        self.state = "cancelled"
        if self.processes_spin.value() > 1:  # torchrun stops its workers on SIGTERM, not on KILL
            self.process.terminate()
            QTimer.singleShot(10_000, self._kill_if_running)
        else:
            self.process.kill()

    def _kill_if_running(self) -> None:
        if self.running:
            self.process.kill()

    def close_question(self) -> str | None:
        if not self.running:
            return None
        where = f" The checkpoints written so far stay in {self.out_dir}." if self.out_dir else ""
        done = self.progress.value() if self.progress.maximum() else 0
        return (
            f"A training run is in progress (step {done:,} of {self.steps_spin.value():,}). "
            f"Closing the window stops it.{where}"
        )

    def shutdown(self) -> None:
        if self.running:
            self.state = "cancelled"
            self.process.kill()
            self.process.waitForFinished(3000)
        super().shutdown()

    # ------------------------------------------------------------------ helpers
    def _load_last(self) -> None:
        if self.out_dir is None:
            return
        for name in ("final.safetensors", "last.safetensors"):
            path = self.out_dir / name
            if path.is_file():
                self.trained.emit(str(path))
                return
        self.message.emit(f"No checkpoint in {self.out_dir} yet.")

    def _update_buttons(self) -> None:
        running = self.running
        demos = self.demos_path()
        self.start_button.setEnabled(not running and demos is not None)
        self.cancel_button.setEnabled(running)
        has_ckpt = self.out_dir is not None and any(
            (self.out_dir / n).is_file() for n in ("final.safetensors", "last.safetensors")
        )
        self.load_last_button.setEnabled(not running and has_ckpt)
        for w in (
            self.picker,
            self.preset_combo,
            self.steps_spin,
            self.device_combo,
            self.processes_spin,
        ):
            w.setEnabled(not running)

    def _append_log(self, text: str) -> None:
        self.log.appendPlainText(text)
