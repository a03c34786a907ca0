"""Demo browser: list the episodes of a demo file, replay one in the task view, delete one, and
plot the dataset's action paths.

Replay draws the stored states when the env can be put into them (``reset_to_state``, e.g.
PushT's [agent_x, agent_y, block_x, block_y, angle]); otherwise it resets the env with the
episode's seed and steps its actions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from dp_agent.data import DemoError, DemoWriter

from . import resources, widgets
from .demo_files import read_contents, read_episode
from .panel import Panel
from .task_view import TaskView
from .tasks import Task
from .widgets import FilePicker

PATH_PEN = (90, 140, 220, 70)
SELECTED_PEN = (255, 120, 30)


class BrowserPanel(Panel):
    def __init__(self, view: TaskView, parent: QWidget | None = None):
        super().__init__(view, parent)
        self.path: Path | None = None
        self.rows: list[dict] = []
        self._actions: list[np.ndarray] = []
        self.env_id: str | None = None  # env of the open file
        self.replay_episode = None
        self.replay_t = 0
        self.replay_mode = ""  # "states" | "actions"
        self.replay_speed = 1.0
        self._replay_clock = 0.0
        self._build()

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:  # noqa: PLR0915 (a Qt layout: one statement per widget)
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.picker = FilePicker("Open…", "Open demo file")
        self.picker.chosen.connect(self.open_file)
        top.addWidget(QLabel("File:"), 0, Qt.AlignmentFlag.AlignTop)
        top.addWidget(self.picker, 1)
        layout.addLayout(top)

        self.info_label = QLabel()
        self.info_label.setWordWrap(True)
        layout.addWidget(self.info_label)
        layout.addWidget(self.error_label)

        splitter = QSplitter(Qt.Orientation.Vertical)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Episode", "Length", "Return", "Success"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.cellDoubleClicked.connect(lambda *_: self.replay_selected())
        splitter.addWidget(self.table)

        plot_box = QWidget()
        pl = QVBoxLayout(plot_box)
        pl.setContentsMargins(0, 0, 0, 0)
        mode_row = QHBoxLayout()
        mode_row.addWidget(QLabel("Plot:"))
        self.plot_mode = QComboBox()
        self.plot_mode.addItems(["Action paths (x vs y)", "Actions over time"])
        self.plot_mode.currentIndexChanged.connect(lambda _: self._replot())
        mode_row.addWidget(self.plot_mode, 1)
        pl.addLayout(mode_row)
        self.plot = pg.PlotWidget()
        self.plot.setBackground("w")
        self.plot.setMinimumHeight(180)
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        pl.addWidget(self.plot, 1)
        splitter.addWidget(plot_box)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 1)
        layout.addWidget(splitter, 1)

        buttons = QHBoxLayout()
        self.replay_button = QPushButton("Replay")
        self.replay_button.clicked.connect(self.replay_selected)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop_replay)
        self.delete_button = QPushButton("Delete…")
        self.delete_button.clicked.connect(self.delete_selected)
        self.refresh_button = QPushButton("Reload")
        self.refresh_button.setToolTip("Read the file again (e.g. after recording into it)")
        self.refresh_button.clicked.connect(self.refresh)
        self.speed = QDoubleSpinBox()
        self.speed.setRange(0.25, 8.0)
        self.speed.setSingleStep(0.25)
        self.speed.setValue(1.0)
        self.speed.setSuffix(" ×")
        self.speed.setToolTip("Replay speed")
        self.speed.valueChanged.connect(lambda v: setattr(self, "replay_speed", float(v)))
        for w in (self.replay_button, self.stop_button, self.delete_button, self.refresh_button):
            w.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            buttons.addWidget(w)
        buttons.addStretch(1)
        buttons.addWidget(QLabel("Speed:"))
        buttons.addWidget(self.speed)
        layout.addLayout(buttons)
        self._update_buttons()

    # ------------------------------------------------------------------ task and files
    def on_task_changed(self, task: Task, files: list[Path], preferred: Path | None) -> None:
        """Use ``task`` (owned by this panel) and offer ``files``; opens ``preferred``."""
        self.replace_task(task)
        self.stop_replay()
        self.picker.set_files(files)
        if preferred is not None:
            self.open_file(preferred)
            return
        self._show_contents(None)
        self.info_label.setText(
            "No demo file for this task yet: record some episodes, or open a file."
        )
        self.file_changed.emit("")

    def add_file(self, path: str | Path, select: bool = True) -> None:
        self.picker.add(path, select)

    def open_file(self, path: str | Path) -> bool:
        """Show the episodes of ``path``; a bad file gives one message and leaves the list empty."""
        path = Path(path)
        self.picker.add(path)
        self.stop_replay()
        self.path = path
        try:
            contents = read_contents(path)
        except DemoError as exc:
            self._show_contents(None)
            self.info_label.setText("")
            self.show_error(str(exc))
            self.file_changed.emit(str(path))
            return False
        self.show_error("")
        self._show_contents(contents)
        ro = " Shipped file: read-only." if resources.is_shipped(path) else ""
        other = ""
        if self.task is not None and self.env_id != self.task.env_id:
            other = f" Recorded in {self.env_id}, not the current task: replay is off."
        self.info_label.setText(
            f"{len(self.rows)} episodes, {contents.steps} steps · env {self.env_id}.{ro}{other}"
        )
        self.file_changed.emit(str(path))
        return True

    def _show_contents(self, contents) -> None:
        if contents is None:
            self.rows, self._actions, self.env_id = [], [], None
        else:
            self.rows, self._actions, self.env_id = contents.rows, contents.actions, contents.env_id
        self._fill_table()

    def refresh(self) -> None:
        if self.path is not None:
            selected = self.selected_name()
            self.open_file(self.path)
            if selected:
                self.select(selected)

    def on_demos_changed(self, path: Path) -> None:
        self.picker.add(path, select=False)
        if self.path is not None and Path(path) == self.path:
            self.refresh()

    def current_file(self) -> Path | None:
        return self.path

    def episode_count(self) -> int | None:
        return self.num_episodes

    @property
    def num_episodes(self) -> int:
        return len(self.rows)

    # ------------------------------------------------------------------ table
    def _fill_table(self) -> None:
        self.table.setRowCount(len(self.rows))
        for i, row in enumerate(self.rows):
            success = row.get("success")
            cells = [
                row["name"],
                str(row["length"]),
                f"{row['return']:.2f}",
                "–" if success is None else ("yes" if success else "no"),
            ]
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if j:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.table.setItem(i, j, item)
        self._replot()
        self._update_buttons()

    def selected_name(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self.rows[rows[0].row()]["name"] if rows else None

    def select(self, name: str) -> bool:
        for i, row in enumerate(self.rows):
            if row["name"] == name:
                self.table.selectRow(i)
                return True
        return False

    def _selection_changed(self) -> None:
        self._replot()
        self._update_buttons()

    def _update_buttons(self) -> None:
        has = self.selected_name() is not None
        self.replay_button.setEnabled(has and self._can_replay())
        self.delete_button.setEnabled(
            has and self.path is not None and not resources.is_shipped(self.path)
        )
        self.stop_button.setEnabled(self.replay_episode is not None)

    def _can_replay(self) -> bool:
        return self.task is not None and self.env_id == self.task.env_id

    # ------------------------------------------------------------------ plot
    def _replot(self) -> None:
        self.plot.clear()
        if not self.rows:
            return
        selected = self.selected_name()
        names = [r["name"] for r in self.rows]
        over_time = self.plot_mode.currentIndex() == 1 or (
            self._actions and self._actions[0].shape[1] < 2
        )
        plot_item = self.plot.getPlotItem()
        if over_time:
            plot_item.invertY(False)
            self.plot.setAspectLocked(False)
            self.plot.setLabel("bottom", "step")
            self.plot.setLabel("left", "action")
            for name, actions in zip(names, self._actions, strict=True):
                chosen = name == selected
                t = np.arange(len(actions))
                for d in range(min(actions.shape[1], 2)):
                    colour = ((60, 110, 220), (230, 120, 30))[d]
                    pen = pg.mkPen((*colour, 255 if chosen else 40), width=2.5 if chosen else 1)
                    self.plot.plot(t, actions[:, d], pen=pen)
            return
        plot_item.invertY(True)  # world y points down, like the task view
        self.plot.setAspectLocked(True)
        self.plot.setLabel("bottom", "action x")
        self.plot.setLabel("left", "action y")
        chosen_actions = None
        for name, actions in zip(names, self._actions, strict=True):
            if name == selected:
                chosen_actions = actions
                continue
            self.plot.plot(actions[:, 0], actions[:, 1], pen=pg.mkPen(PATH_PEN, width=1))
        if chosen_actions is not None:
            self.plot.plot(
                chosen_actions[:, 0], chosen_actions[:, 1], pen=pg.mkPen(SELECTED_PEN, width=3)
            )
        if self.task is not None and self.task.world_size:
            ws = self.task.world_size
            self.plot.setRange(xRange=(0, ws), yRange=(0, ws), padding=0.02)

    # ------------------------------------------------------------------ replay
    def replay_selected(self) -> bool:
        name = self.selected_name()
        if name is None or self.path is None or self.task is None:
            return False
        if not self._can_replay():
            self.message.emit(
                f"{self.path} holds episodes of {self.env_id}; switch to that task to replay them."
            )
            return False
        try:
            episode = read_episode(self.path, name)
        except DemoError as exc:
            self.show_error(str(exc))
            return False
        self.replay_episode = episode
        self.replay_t = 0
        self._replay_clock = 0.0
        states = episode.obs.get("state")
        if states is not None and self.task.reset_to_state(states[0]):
            self.replay_mode = "states"
        else:
            seed = episode.attrs.get("seed")
            seed = int(seed) if isinstance(seed, (int, np.integer)) and seed >= 0 else None
            self.task.reset(seed=seed)
            self.replay_mode = "actions"
        self.message.emit(f"Replaying {name} ({len(episode)} steps, {self.replay_mode}).")
        self._update_buttons()
        self._show_replay_frame()
        return True

    def stop_replay(self) -> None:
        self.replay_episode = None
        self._update_buttons()

    def tick(self) -> None:
        """One control step of the replay (``replay_speed`` episode steps per control step)."""
        if self.replay_episode is None or self.task is None:
            return
        self._replay_clock += self.replay_speed
        while self._replay_clock >= 1.0 and self.replay_episode is not None:
            self._replay_clock -= 1.0
            self._advance()
        self._show_replay_frame()

    def _advance(self) -> None:
        ep = self.replay_episode
        t = self.replay_t
        if self.replay_mode == "states":
            if t + 1 < len(ep):
                self.task.reset_to_state(ep.obs["state"][t + 1])
            else:  # the state after the last action is not stored: step it
                self.task.step(ep.actions[t])
        else:
            self.task.step(ep.actions[t])
        self.replay_t = t + 1
        if self.replay_t >= len(ep):
            self.message.emit(f"Replay of {ep.name} finished.")
            self.replay_episode = None
            self._update_buttons()

    def _show_replay_frame(self) -> None:
        if not self.active or self.task is None:
            return
        self.view.set_extent(self.task.extent)
        self.view.set_frame(self.task.frame())
        ep = self.replay_episode
        if ep is None:
            return
        t = min(self.replay_t, len(ep) - 1)
        if self.task.draws_actions:
            self.view.set_path(self.task.point_from_action(ep.actions[: t + 1]))
            self.view.set_target(self.task.point_from_action(ep.actions[t]))
        self.view.set_caption(f"{ep.name}  step {self.replay_t}/{len(ep)}")

    # ------------------------------------------------------------------ delete
    def delete_selected(self) -> bool:
        name = self.selected_name()
        if name is None or self.path is None:
            return False
        if resources.is_shipped(self.path):
            self.message.emit(f"{self.path} is a shipped demo file and is never modified.")
            return False
        if not widgets.ask(self, "Delete episode", f"Delete {name} from {self.path}?"):
            return False
        if self.replay_episode is not None and self.replay_episode.name == name:
            self.stop_replay()
        try:
            DemoWriter(self.path).delete_episode(name)
        except Exception as exc:  # noqa: BLE001
            self.show_error(f"Could not delete {name}: {exc}")
            return False
        self.message.emit(f"Deleted {name} from {self.path}.")
        self.open_file(self.path)
        self.demos_changed.emit(str(self.path))
        return True

    # ------------------------------------------------------------------ activation
    def activate(self) -> None:
        super().activate()
        self.view.clear_overlays()
        if self.task is not None:
            self.view.set_extent(self.task.extent)
            self.view.set_frame(self.task.frame())
        self._show_replay_frame()

    def deactivate(self) -> None:
        super().deactivate()
        self.stop_replay()

    def on_key(self, key: str) -> None:
        if key == "space":
            if self.replay_episode is not None:
                self.stop_replay()
            else:
                self.replay_selected()
