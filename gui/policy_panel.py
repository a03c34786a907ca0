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
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from dp_agent.config import PolicyConfig
from dp_agent.diffusion import SAMPLERS
from dp_agent.observations import ObservationError

from . import resources
from .denoise_player import DenoisePlayer, Plan
from .panel import Panel
from .policy_worker import (
    ActRequest,
    ActResult,
    PolicyInfo,
    PolicyWorker,
    Steering,
    network_input_image,
)
from .task_view import TaskView
from .tasks import Task, TaskError

MAX_SAMPLES = 64
STATS = ["Steps", "Return", "Success", "Plan", "Denoise", "Coverage"]
CLICK_MOVE = 0.02  # of the view's width: a press and release closer than this is a click
ZONE_MARGIN = 0.05  # of the view's width: how near a zone a plan's positions already count
GUIDE_TICKS = 20  # the guidance slider's range; the middle tick is the reference α
# The reference α of KeepOut guidance per kind of agent (the slider spans x0.016 to x100 of it),
# from the app's own checks with 16 samples: planners (cells) benchmarks/planning.py's Maze2D
# value, 50; more pushes plans into walls (an 8000-step umaze planner: 4 % of the planned
# positions in walls at α = 50, 17 % at 500), and the zones' best of N does the rest. Position
# policies (pixels: J's gradient is ~1e5 times a planner's) 1e-4: the shipped TreeDetour
# policy's chunks turn into zig-zags from α = 3e-4 (mean second difference 8 px, 1.5 unguided).
GUIDE_REFERENCE = {"planner": 50.0, "policy": 1e-4}


def guide_scale(tick: int, kind: str) -> float:
    """The slider's α: 0 at tick 0, the reference α at the middle tick, x10 every 5 ticks."""
    if tick <= 0:
        return 0.0
    return GUIDE_REFERENCE[kind] * 10.0 ** ((tick - GUIDE_TICKS // 2) / 5.0)


class PolicyPanel(Panel):
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
    def _build(self) -> None:
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

    def _build_steering(self) -> QGroupBox:
        """One row (the tab must fit a 1024 x 640 window): α, Clear zones, the env's goal; the
        box's title says what a click and a drag in the view do."""
        self.steer_box = QGroupBox("Steering")
        row = QHBoxLayout(self.steer_box)
        self.guide_name = QLabel("Guidance")
        self.guide_slider = QSlider(Qt.Orientation.Horizontal)
        self.guide_slider.setRange(0, GUIDE_TICKS)
        self.guide_slider.setValue(GUIDE_TICKS // 2)
        self.guide_slider.setToolTip(
            "Guidance scale α of the keep-out zones: x ← x + α Σ ∇J after each denoising step. "
            "0: off (the zones then only pick the best of the samples)."
        )
        self.guide_slider.valueChanged.connect(self._guidance_changed)
        self.guide_label = QLabel()
        self.guide_label.setMinimumWidth(64)
        self.clear_zones_button = QPushButton("Clear zones")
        self.clear_zones_button.clicked.connect(self.clear_zones)
        self.clear_goal_button = QPushButton("Env's goal")
        self.clear_goal_button.setToolTip("Plan to the env's own goal again")
        self.clear_goal_button.clicked.connect(lambda: self.set_goal(None))
        row.addWidget(self.guide_name)
        row.addWidget(self.guide_slider, 1)
        row.addWidget(self.guide_label)
        row.addWidget(self.clear_zones_button)
        row.addWidget(self.clear_goal_button)
        self._guidance_changed()
        return self.steer_box

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

    # ------------------------------------------------------------------ task and policy
    def on_task_changed(self, task: Task, files: list[Path], preferred: Path | None) -> None:
        self.stop()
        self.replace_task(task)
        self.zones = []  # drawn in another world
        self.stat_names["Coverage"].setVisible(task.reports_coverage)
        self.stat_labels["Coverage"].setVisible(task.reports_coverage)
        self._new_env_episode()
        if self.policy is not None and not self._policy_fits():
            self._unload(f"The loaded policy does not fit {task.env_id}; load another one.")
        self._update_buttons()

    def set_seed(self, seed: int) -> None:
        """Make episodes and the shown samples reproducible from ``seed``."""
        self._rng = np.random.default_rng(seed)
        self.seed_base = int(seed) * 1_000_003

    def load(self, path: str | Path) -> None:
        """Load a checkpoint in the worker thread; ``policy_loaded`` fires when it is ready."""
        self.stop()
        self.loading = True
        self._load_id += 1  # only the latest request counts when several are pending
        self.policy_label.setText(f"Loading {Path(path).name}…")
        self.show_error("")
        self._update_buttons()
        self._request_load.emit(str(path), self._load_id)

    def load_default(self) -> bool:
        """Load the shipped pretrained policy of the current task, if there is one."""
        if self.task is None:
            return False
        path = resources.shipped_policy(self.task.env_id)
        if path is None:
            self.policy_label.setText(
                f"No shipped policy for {self.task.env_id} yet: train one (Train tab) or load a "
                "checkpoint."
            )
            self.message.emit(f"No shipped pretrained policy for {self.task.env_id}.")
            return False
        self.load(path)
        return True

    def _choose_policy(self) -> None:
        start = str(self.agent_path.parent) if self.agent_path else str(resources.app_home())
        name, _ = QFileDialog.getOpenFileName(
            self, "Load policy checkpoint", start, "Checkpoints (*.safetensors);;All files (*)"
        )
        if name:
            self.load(name)

    def _on_loaded(self, info: PolicyInfo, load_id: int) -> None:
        if load_id != self._load_id:
            return
        self.loading = False
        self.policy = info
        if self.task is not None and info.env_id and info.env_id != self.task.env_id:
            self.wants_task.emit(info.env_id)  # the main window switches task (or says why not)
        if self.task is not None:
            self._env_for_policy()
        if self.task is not None and not self._policy_fits():
            return
        cfg = info.config
        shape = (
            f"planner: H={info.horizon}, re-plans every {info.replan_every} steps"
            if info.is_planner
            else f"To={cfg.obs_horizon} Tp={cfg.pred_horizon} Ta={cfg.action_horizon}"
        )
        self.policy_label.setText(
            f"<b>{info.path.name}</b> ({info.env_id or 'unknown env'})<br>{shape} · {info.device}"
        )
        self.policy_label.setToolTip(str(info.path))
        index = self.sampler_combo.findData(info.sampler)
        if index >= 0:
            self.sampler_combo.blockSignals(True)
            self.sampler_combo.setCurrentIndex(index)
            self.sampler_combo.blockSignals(False)
        self.steps_spin.setValue(info.num_inference_steps)
        self.stop()
        self._new_env_episode()  # a new policy starts from a fresh episode
        self._guidance_changed()  # α's reference differs between planners and policies
        self._update_buttons()
        what = "Planner" if info.is_planner else "Policy"
        self.message.emit(f"{what} loaded: {info.path}")
        self.policy_loaded.emit(str(info.path))

    def _on_load_failed(self, text: str, load_id: int) -> None:
        if load_id != self._load_id:
            return
        self.loading = False
        self.policy_label.setText("No policy loaded")
        self.show_error(text)
        self._update_buttons()

    def _policy_fits(self) -> bool:
        info, task = self.policy, self.task
        if info.is_planner:
            return self._planner_fits()
        try:
            info.obs_spec.check_space(task.env.observation_space, f"{info.path}: {task.env_id}")
        except ObservationError as exc:
            self._unload(str(exc))
            return False
        if task.env.action_space.shape != info.action_shape:
            self._unload(
                f"{info.path}: the policy expects actions {info.action_shape}, but "
                f"{task.env_id} has {task.env.action_space.shape}."
            )
            return False
        return True

    def _planner_fits(self) -> bool:
        """A planner needs the Dict parts it plans from (state, goal) and its action size."""
        info, space = self.policy, self.task.env.observation_space
        keys = [k for k in (info.state_key, info.goal_key) if k]
        parts = getattr(space, "spaces", None)
        if keys and (parts is None or any(k not in parts for k in keys)):
            self._unload(
                f"{info.path}: the planner plans from the observation parts {keys}, but "
                f"{self.task.env_id} observes {space}; open the task it was trained on."
            )
            return False
        if self.task.env.action_space.shape != info.action_shape:
            self._unload(
                f"{info.path}: the planner's actions are {info.action_shape}, but "
                f"{self.task.env_id} has {self.task.env.action_space.shape}."
            )
            return False
        return True

    def _env_for_policy(self) -> None:
        """Make this tab's env with the policy's env kwargs (a keypoints policy on PushT needs
        ``obs_type="keypoints"``); the other tabs keep theirs."""
        info, task = self.policy, self.task
        if info.env_id != task.env_id or info.env_kwargs == task.env_args["env_kwargs"]:
            return
        try:
            self.on_task_changed(Task.make(task.env_id, env_kwargs=info.env_kwargs), [], None)
        except TaskError as exc:
            self.show_error(str(exc))

    def _unload(self, text: str) -> None:
        self.stop()
        self.policy = None
        self._request_unload.emit()
        self.policy_label.setText("No policy loaded")
        self.show_error(text)
        self._update_buttons()

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

    # ------------------------------------------------------------------ steering
    @property
    def agent_kind(self) -> str:
        """ "planner" or "policy" (also before one is loaded): what α's reference is."""
        return "planner" if self.policy is not None and self.policy.is_planner else "policy"

    def steering(self) -> Steering:
        """The goal (a planner's only) and the zones, as the worker gets them."""
        goal = self.goal if self.agent_kind == "planner" else None
        return Steering(
            goal=None if goal is None else (float(goal[0]), float(goal[1])),
            circles=tuple(self.zones),
            guide_scale=guide_scale(self.guide_slider.value(), self.agent_kind),
            margin=ZONE_MARGIN * self.task.extent[0] if self.task is not None else 0.0,
            walls=tuple(self.task.wall_boxes()) if self.task is not None else (),
        )

    def set_goal(self, point) -> bool:
        """The planner's next plans end at ``point`` (world units; None: the env's goal). The
        env's goal moves too where the env has a ``set_goal``; Maze2D has none, so there
        only the plans are steered (its success test keeps the episode's goal)."""
        if point is not None:
            point = self.task.clamp_point(point)
            if not self.task.is_open(point):
                self.message.emit("That point is inside a wall: click an open cell for the goal.")
                return False
        self.goal = None if point is None else np.asarray(point, np.float64)
        if point is None:
            self.message.emit("The plans go to the env's goal again.")
        elif self.task.set_goal(point):
            self.message.emit(f"Goal moved to ({point[0]:.2f}, {point[1]:.2f}).")
        else:
            self.message.emit(
                f"Plans now end at ({point[0]:.2f}, {point[1]:.2f}). {self.task.env_id} has no "
                "goal setter: its own goal (and success test) stay where they are."
            )
        self._show_steering()
        return True

    def add_zone(self, x: float, y: float, radius: float) -> None:
        """A keep-out circle for the next re-plans (world units)."""
        self.zones.append((float(x), float(y), float(radius)))
        self._show_steering()
        self.message.emit(
            f"Keep-out zone {len(self.zones)} at ({x:.2f}, {y:.2f}), radius {radius:.2f}: "
            "the next plans are guided around it."
        )

    def clear_zones(self) -> None:
        self.zones = []
        self._show_steering()

    def on_press(self, x: float, y: float) -> None:
        self._press = np.array([x, y]) if self._can_steer() else None

    def on_drag(self, x: float, y: float) -> None:
        radius = self._drag_radius(x, y)
        if radius is not None and self.active:
            zone = (float(self._press[0]), float(self._press[1]), radius)
            self.view.set_steering(self._goal_shown(), self.zones, zone)

    def on_release(self, x: float, y: float) -> None:
        press, radius = self._press, self._drag_radius(x, y)
        self._press = None
        if press is None:
            return
        if radius is not None:
            self.add_zone(press[0], press[1], radius)
        elif self.agent_kind == "planner":
            self.set_goal(press)
        else:
            self.message.emit("This policy has no goal to set: drag to draw a keep-out zone.")

    def _drag_radius(self, x: float, y: float) -> float | None:
        """The zone's radius for the cursor at (x, y), or None while it is still a click."""
        if self._press is None:
            return None
        radius = float(np.hypot(x - self._press[0], y - self._press[1]))
        return radius if radius > CLICK_MOVE * self.task.extent[0] else None

    def _can_steer(self) -> bool:
        return self.policy is not None and self._draws_plans()

    def _goal_shown(self) -> np.ndarray | None:
        return self.goal if self.agent_kind == "planner" else None

    def _show_steering(self) -> None:
        if self.active:
            self.view.set_steering(self._goal_shown(), self.zones)

    def _guidance_changed(self, *_: object) -> None:
        alpha = guide_scale(self.guide_slider.value(), self.agent_kind)
        self.guide_label.setText("off" if alpha == 0 else f"α = {alpha:.3g}")
        if self.policy is None:
            hint = "Steering (load a policy or a planner)"
        elif self.agent_kind == "planner":
            hint = "Steering: click in the view = goal, drag = keep-out zone"
        elif self._draws_plans():
            hint = "Steering: drag in the view = keep-out zone"
        else:
            hint = "Steering (needs a planner, or actions that are positions)"
        self.steer_box.setTitle(hint)
        self.clear_goal_button.setEnabled(self.agent_kind == "planner")

    # ------------------------------------------------------------------ drawing
    def _show_env(self) -> None:
        if not self.active or self.task is None:
            return
        self.view.set_extent(self.task.extent)
        self.view.set_frame(self.task.frame())
        self._show_input_image()
        if self.player.done:
            self._show_plan()

    def _show_input_image(self) -> None:
        """An image policy's input, as its network sees it, in the view's corner."""
        image = None if self.policy is None else network_input_image(self.policy, self.task.obs)
        caption = "" if image is None else f"policy input {image.shape[1]}×{image.shape[0]}"
        self.view.set_inset(image, caption)

    def _draw_frame(self, frame) -> None:
        """Draw a denoising iterate (the player's ``frame_shown``)."""
        if not self.active or self.task is None or not self._draws_plans():
            return
        total = max(int(frame.total), 1)
        values = frame.pred_x0 if self.x0_check.isChecked() else frame.sample
        executed = self.plan.executed if self.plan is not None else None
        self.view.set_samples(self._points(values), frame.step / total, executed)
        self.view.set_caption(f"denoising {frame.step}/{total}")

    def _show_plan(self) -> None:
        """Highlight the chunk being executed and the queued actions."""
        if not self.active or self.task is None or not self._draws_plans():
            return
        result = self._pending or self.last_result
        if result is None or result.plan is None:
            self.view.set_plan(None)
            return
        queued = result.queued
        self.view.set_plan(
            self._points(result.plan),
            self.policy.executed_slice if self.policy is not None else None,
            self._points(queued) if len(queued) else None,
        )
        if self.plan is not None and self.plan.frames:
            if self.policy is not None and self.policy.is_planner:
                n = len(queued)
                self.view.set_caption(f"executing the plan · re-plans in {n} step{'s' * (n != 1)}")
            else:
                self.view.set_caption(f"executing · {len(queued)} queued")

    def _draws_plans(self) -> bool:
        """Whether plans are points in the view: a planner's positions in a task with a world,
        or a policy's actions where they are positions (TreeDetour, PushT)."""
        if self.task is None:
            return False
        if self.policy is not None and self.policy.is_planner:
            return self.task.world_size is not None
        return self.task.draws_actions

    def _points(self, values: np.ndarray) -> np.ndarray:
        """What the worker sent -> view points: a planner's are positions already."""
        if self.policy is not None and self.policy.is_planner:
            return np.asarray(values)
        return self.task.point_from_action(values)

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
