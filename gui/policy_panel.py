"""Policy view: run a diffusion policy in the task and watch it denoise.

The agent lives in the worker thread (``policy_worker``); this panel sends it one ``ActRequest``
per control step and executes the action of its ``ActResult`` once the denoising of a re-plan
has been shown (``denoise_player``). The executed sample is drawn highlighted (thicker, outlined
in the executed-chunk orange) among the others; then the plan is drawn dashed, its executed slice
[To-1, To-1+Ta) in orange, the queued actions as dots. With the live view off a re-plan samples
one chunk. A trajectory planner (Maze2D) is drawn the same way: its samples are the planned
positions, the executed slice the steps until the next re-plan.

Steering, in the view: a click sets the planner's goal (its plans are inpainted to end there);
a drag draws a keep-out circle (centre at the press, radius to the cursor) that guides the next
re-plans of a planner, or of a policy whose actions are positions, by the Guidance slider's α.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PyQt6.QtCore import Qt, QThread, pyqtSignal
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from dp_agent.config import PolicyConfig
from dp_agent.diffusion import SAMPLERS

from . import resources
from .denoise_player import DenoisePlayer, Plan
from .panel import Panel
from .policy_loading import PolicyLoadingMixin
from .policy_view import PolicyViewMixin
from .policy_worker import ActRequest, ActResult, PolicyInfo, PolicyWorker
from .task_view import TaskView

MAX_SAMPLES = 64
STATS = ["Steps", "Return", "Success", "Plan", "Denoise", "Coverage"]


class PolicyPanel(PolicyLoadingMixin, PolicyViewMixin, Panel):
    """Controls and runs a policy in its own env instance of the current task."""

    policy_loaded = pyqtSignal(str)  # path
    wants_task = pyqtSignal(str)  # a loaded policy was trained on another registered task
    _request_load = pyqtSignal(str, int)
    _request_act = pyqtSignal(object)  # ActRequest
    _request_unload = pyqtSignal()

    def __init__(self, view: TaskView, parent: QWidget | None = None):
        super().__init__(view, parent)
        self.policy: PolicyInfo | None = None
        self.running = False
        self.loading = False
        self._load_id = 0
        self.seed_base = 0
        self.episode_seed: int | None = None
        self._rng = np.random.default_rng()
        self._request_id = 0
        self._episode_requests = 0  # requests sent in this episode (the re-plans' seeds)
        self._in_flight: int | None = None
        self._pending: ActResult | None = None
        self._reset_agent = True
        self._replan_only = False  # the agent holds the current obs (its re-plan was aborted)
        self.last_result: ActResult | None = None
        self.episode_steps = 0
        self.episode_return = 0.0
        self.last_info: dict = {}
        self._episode_over = False
        self.goal: np.ndarray | None = None  # the user's goal for the planner (world units)
        self.zones: list[tuple[float, float, float]] = []  # keep-out circles (x, y, r)
        self._press: np.ndarray | None = None  # where the left button went down
        self._start_worker()
        self.player = DenoisePlayer()
        self.player.frame_shown.connect(self._draw_frame)
        self.player.finished.connect(self._show_plan)
        self._build()
        self._speed_changed()

    def _start_worker(self) -> None:
        self._thread = QThread(self)
        self._thread.setObjectName("policy-worker")
        self.worker = PolicyWorker()
        self.worker.moveToThread(self._thread)
        self._request_load.connect(self.worker.load)
        self._request_act.connect(self.worker.act)
        self._request_unload.connect(self.worker.unload)
        self.worker.loaded.connect(self._on_loaded)
        self.worker.load_failed.connect(self._on_load_failed)
        self.worker.frame.connect(self._on_frame)
        self.worker.acted.connect(self._on_acted)
        self._thread.start()

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:  # noqa: PLR0915 (a Qt layout: one statement per widget)
        layout = QVBoxLayout(self)
        box = QGroupBox("Policy")
        bl = QVBoxLayout(box)
        self.policy_label = QLabel("No policy loaded")
        self.policy_label.setWordWrap(True)
        bl.addWidget(self.policy_label)
        bl.addWidget(self.error_label)
        row = QHBoxLayout()
        self.load_button = QPushButton("Load checkpoint…")
        self.load_button.clicked.connect(self._choose_policy)
        self.default_button = QPushButton("Shipped policy")
        self.default_button.clicked.connect(self.load_default)
        row.addWidget(self.load_button)
        row.addWidget(self.default_button)
        bl.addLayout(row)
        layout.addWidget(box)

        run = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.toggle_run)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.toggled.connect(self._pause_toggled)
        self.reset_button = QPushButton("New episode")
        self.reset_button.clicked.connect(self.new_episode)
        for b in (self.run_button, self.pause_button, self.reset_button):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            run.addWidget(b)
        layout.addLayout(run)

        sampling = QGroupBox("Sampling")
        form = QFormLayout(sampling)
        self.sampler_combo = QComboBox()
        for name, label in SAMPLERS.items():
            self.sampler_combo.addItem(label, name)
        self.sampler_combo.currentIndexChanged.connect(self._sampler_changed)
        form.addRow("Sampler:", self.sampler_combo)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 1000)
        self.steps_spin.setValue(self._config().default_steps(self.sampler_combo.currentData()))
        form.addRow("Denoising steps:", self.steps_spin)
        self.samples_spin = QSpinBox()
        self.samples_spin.setRange(1, MAX_SAMPLES)
        self.samples_spin.setValue(8)
        form.addRow("Samples shown:", self.samples_spin)
        self.speed_spin = QSpinBox()
        self.speed_spin.setRange(0, 240)
        self.speed_spin.setValue(20)
        self.speed_spin.setSpecialValueText("instant")
        self.speed_spin.setSuffix(" steps/s")
        self.speed_spin.valueChanged.connect(self._speed_changed)
        form.addRow("Animation:", self.speed_spin)
        self.live_check = QCheckBox("Live view")
        self.live_check.setToolTip("Draw every denoising iterate of each re-plan")
        self.live_check.setChecked(True)
        self.x0_check = QCheckBox("Show predicted x₀ (not x_k)")
        self.x0_check.toggled.connect(lambda _: self.player.show_frame())
        checks = QHBoxLayout()  # one row: the tab fits a 1024 x 640 window
        checks.addWidget(self.live_check)
        checks.addWidget(self.x0_check)
        checks.addStretch(1)
        form.addRow(checks)
        layout.addWidget(sampling)
        layout.addWidget(self._build_steering())
        layout.addWidget(self.player)

        stats = QGridLayout()
        self.stat_labels: dict[str, QLabel] = {}
        self.stat_names: dict[str, QLabel] = {}
        for i, name in enumerate(STATS):
            self.stat_names[name] = QLabel(f"{name}:")
            self.stat_labels[name] = QLabel("–")
            stats.addWidget(self.stat_names[name], i // 2, 2 * (i % 2))
            stats.addWidget(self.stat_labels[name], i // 2, 2 * (i % 2) + 1)
        stats.setColumnStretch(1, 1)
        stats.setColumnStretch(3, 1)
        layout.addLayout(stats)
        layout.addStretch(1)
        self._update_buttons()

    # ------------------------------------------------------------------ state seen by others
    @property
    def plan(self) -> Plan | None:
        """The re-plan whose denoising is (or was last) shown."""
        return self.player.plan

    @property
    def plans_completed(self) -> int:
        return self.player.plans_completed

    @property
    def frames_received(self) -> int:
        return self.player.frames_received

    @property
    def agent_path(self) -> Path | None:
        return self.policy.path if self.policy is not None else None

    @property
    def paused(self) -> bool:
        return self.pause_button.isChecked()

    def _config(self) -> PolicyConfig:
        """The loaded policy's config (the defaults before one is loaded)."""
        return self.policy.config if self.policy is not None else PolicyConfig()

    # ------------------------------------------------------------------ run control
    def toggle_run(self) -> None:
        if self.running:
            self.stop()
        else:
            self.start()

    def start(self) -> bool:
        if self.policy is None or self.task is None:
            self.message.emit("Load a policy first.")
            return False
        if self._episode_over:
            self._new_env_episode()
        self.running = True
        self.pause_button.setChecked(False)
        self._update_buttons()
        return True

    def stop(self) -> None:
        self.running = False
        self.worker.abort()
        self._update_buttons()

    def new_episode(self) -> None:
        was_running = self.running
        self.stop()
        self._new_env_episode()
        if was_running:
            self.start()

    def on_key(self, key: str) -> None:
        if key == "space":
            if self.running:
                self.pause_button.toggle()
            else:
                self.start()
        elif key == "reset":
            self.new_episode()

    def set_seed(self, seed: int) -> None:
        """Make episodes and the shown samples reproducible from ``seed``."""
        self._rng = np.random.default_rng(seed)
        self.seed_base = int(seed) * 1_000_003

    def _new_env_episode(self) -> None:
        """Reset the env with a fresh seed; the agent's history and queue are cleared next act,
        and the old episode's plan is no longer drawn."""
        self._in_flight = None  # a late result of the old episode is ignored
        self._pending = None
        self.last_result = None
        self._reset_agent = True
        self._replan_only = False
        self._episode_over = False
        self.episode_steps = 0
        self.episode_return = 0.0
        self.last_info = {}
        self.goal = None  # each episode has a goal of its own; the zones stay
        self._episode_requests = 0
        if self.task is not None:
            self.episode_seed = int(self._rng.integers(0, 2**31 - 1))
            self.task.reset(seed=self.episode_seed)
        self._clear_plan()
        self._update_stats()
        self._show_env()

    def _clear_plan(self, caption: str = "") -> None:
        """Forget the re-plan on screen: samples, plan, queued actions, the badge."""
        self.player.clear()
        if self.active:
            self.view.clear_overlays()
            self.view.set_caption(caption)
            self._show_steering()

    def _pause_toggled(self, paused: bool) -> None:
        self.pause_button.setText("Resume" if paused else "Pause")
        self.player.playing = not paused

    def _plan_seed(self) -> int:
        """The noise seed of a re-plan at this request: from the seed (``set_seed``), the
        episode's seed and the step, so that the same seed and episode plan the same again."""
        episode = self.episode_seed or 0
        return (self.seed_base + episode * 7919 + self._episode_requests) % 2**31

    def _send_request(self) -> None:
        """Ask the worker for the next action; a re-plan samples with a fresh seed."""
        self._request_id += 1
        self._episode_requests += 1
        request = ActRequest(
            request_id=self._request_id,
            obs=self.task.obs,
            sampler=self.sampler_combo.currentData(),
            steps=self.steps_spin.value(),
            num_samples=self.samples_spin.value(),
            # samples can only be drawn where they are points in the view
            live=self.live_check.isChecked() and self._draws_plans(),
            seed=self._plan_seed(),
            reset=self._reset_agent,
            observe=self._reset_agent or not self._replan_only,
            steering=self.steering(),
        )
        self._reset_agent = False
        self._replan_only = False
        self._in_flight = self._request_id
        self._request_act.emit(request)

    # ------------------------------------------------------------------ the loop
    def tick(self) -> None:
        """One control step: execute the pending action once its denoising has been shown."""
        if not self.running or self.paused or self.policy is None or self.task is None:
            return
        if self._pending is None:
            if self._in_flight is None:
                self._send_request()
            return
        result = self._pending
        if result.replanned and result.history is not None and not self.player.done:
            return
        self._pending = None
        self._execute(result)

    def _execute(self, result: ActResult) -> None:
        _, reward, terminated, truncated, info = self.task.step(result.action)
        self.episode_steps += 1
        self.episode_return += reward
        self.last_info = info
        self.last_result = result
        self._update_stats()
        self._show_env()
        if terminated or truncated:
            self._end_episode(bool(info.get("is_success")))
        else:
            self._send_request()

    def _end_episode(self, success: bool) -> None:
        self._episode_over = True
        self.running = False
        self.last_result = None
        self._update_buttons()
        how = "succeeded" if success else "ended"
        self._clear_plan(f"episode {how} · {self.episode_steps} steps")
        self.message.emit(
            f"Episode {how} after {self.episode_steps} steps (return {self.episode_return:.2f})."
        )

    def _on_frame(self, plan_id: int, frame) -> None:
        if plan_id == self._in_flight:
            self.player.add_frame(plan_id, frame, show_now=not self.active)

    def _on_acted(self, result: ActResult) -> None:
        if result.request_id != self._in_flight:
            return  # from an episode or policy that is gone
        self._in_flight = None
        if result.error:
            self.stop()
            self.show_error(result.error)
            return
        if result.aborted:  # stopped mid-denoising: re-plan from this obs when restarted
            self._replan_only = True
            self._clear_plan()
            return
        self._pending = result
        if result.replanned:
            self._replanned(result)
        if self.player.done:
            self._show_plan()

    def _replanned(self, result: ActResult) -> None:
        if result.history is None or not self.player.complete(
            result.request_id, result.seed, result.history, result.executed_sample
        ):
            self.player.clear()
            if self.active:
                self.view.set_samples(None)
        elif self.player.plan.shown >= 0:
            self.player.show_frame()  # the executed sample is known now: highlight it
        self.stat_labels["Plan"].setText(
            f"{1000 * result.latency:.0f} ms ({result.sampler} ×{result.steps})"
        )
        n, per_step = result.num_samples, result.denoise_seconds / max(result.steps, 1)
        self.stat_labels["Denoise"].setText(
            f"{1000 * per_step:.1f} ms/step ({n} sample{'s' if n > 1 else ''})"
        )

    def _speed_changed(self, *_: object) -> None:
        self.player.set_speed(self.speed_spin.value())

    def _sampler_changed(self, *_: object) -> None:
        self.steps_spin.setValue(self._config().default_steps(self.sampler_combo.currentData()))

    def _update_stats(self) -> None:
        info = self.last_info
        self.stat_labels["Steps"].setText(str(self.episode_steps))
        self.stat_labels["Return"].setText(f"{self.episode_return:.2f}")
        if "is_success" in info:
            self.stat_labels["Success"].setText("yes" if info["is_success"] else "no")
        else:
            self.stat_labels["Success"].setText("–")
        cov = info.get("coverage")
        self.stat_labels["Coverage"].setText("–" if cov is None else f"{100 * float(cov):.1f} %")

    def _update_buttons(self) -> None:
        ready = self.policy is not None and self.task is not None and not self.loading
        self.run_button.setEnabled(ready)
        self.run_button.setText("Stop" if self.running else "Run")
        self.pause_button.setEnabled(self.running)
        self.reset_button.setEnabled(self.task is not None)
        self.load_button.setEnabled(not self.loading)
        has_default = self.task is not None and resources.shipped_policy(self.task.env_id)
        self.default_button.setEnabled(bool(has_default) and not self.loading)

    # ------------------------------------------------------------------ activation
    def activate(self) -> None:
        super().activate()
        self.view.clear_overlays()
        self._show_steering()
        self._show_env()
        self.player.show_frame()
        if self.policy is None and not self.loading and self.task is not None:
            self.load_default()  # or says that there is none

    def deactivate(self) -> None:
        super().deactivate()
        self.stop()
        self.view.set_inset(None)
        self.view.set_steering(None, [])

    def shutdown(self) -> None:
        self.stop()
        self.player.timer.stop()
        self._thread.quit()
        self._thread.wait(10000)
        super().shutdown()
