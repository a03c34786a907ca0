"""Policy view: run a diffusion policy in the task and watch it denoise.

At every re-plan (the agent's action queue is empty) the worker thread runs ONE sampling of N
chunks with ``agent.iter_denoise`` on the agent's observation history, emitting its K+1 iterates
as they are computed, and queues sample ``EXECUTED_SAMPLE`` (0) of the final iterate as the plan
(``agent.observe`` -> ``agent.queue_plan`` -> ``agent.act``). The N samples are independent draws
from the policy for that history, so executing the first one executes a policy sample; it is drawn
highlighted (thicker, outlined in the executed-chunk orange) among the others. The view animates
the iterates from pure noise (grey-purple) to the final chunks (yellow), then executes the plan:
drawn dashed, its executed slice [To-1, To-1+Ta) in orange, the queued actions as dots. With the
live view off a re-plan samples one chunk. All agent calls run in the worker thread, so the
window stays responsive whatever the sampler.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PyQt6.QtCore import QObject, Qt, QThread, QTimer, pyqtSignal, pyqtSlot
from PyQt6.QtGui import QLinearGradient, QPainter
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

from . import resources
from .task_view import TaskView, denoise_color
from .tasks import Task

SAMPLERS = [("DDIM", "ddim"), ("DPM-Solver++", "dpmsolver++"), ("DDPM", "ddpm")]
MAX_SAMPLES = 64
EXECUTED_SAMPLE = 0  # which of a re-plan's N samples is executed (and highlighted)


class PolicyWorker(QObject):
    """Owns the agent; every call on it happens in this object's thread."""

    loaded = pyqtSignal(object, str, int)  # agent, path, load id
    load_failed = pyqtSignal(str, int)  # message, load id
    frame = pyqtSignal(int, object)  # plan id, DenoiseFrame (env units)
    acted = pyqtSignal(int, object)  # request id, result dict

    def __init__(self) -> None:
        super().__init__()
        self.agent = None
        self.abort = False

    @pyqtSlot(str, int)
    def load(self, path: str, load_id: int) -> None:
        try:
            from dp_agent.agent import DiffusionPolicyAgent

            agent = DiffusionPolicyAgent.load(path)
        except Exception as exc:  # noqa: BLE001  (CheckpointError, OSError, ...: one message)
            self.load_failed.emit(f"Could not load the policy {path}: {exc}", load_id)
            return
        self.agent = agent
        self.loaded.emit(agent, path, load_id)

    @pyqtSlot(int, object, object)
    def act(self, request_id: int, obs: object, options: dict) -> None:
        """One control step of env 0: observe ``obs``, re-plan if the queue is empty, act.

        A re-plan is one sampling run of ``num_samples`` chunks (1 with the live view off) with
        the request's seed; each iterate is emitted with the live view on, and sample
        ``EXECUTED_SAMPLE`` of the last one becomes the plan. ``stop`` aborts the denoising:
        the result is then ``{"aborted": True}``, nothing is queued, and the agent keeps the
        observation, so the next request is sent with ``observe=False``.
        """
        agent = self.agent
        self.abort = False
        try:
            if options.get("reset"):
                agent.reset()
            t0 = time.perf_counter()
            if options.get("observe", True) or agent.n_envs == 0:
                need = agent.observe(obs)
            else:  # the agent already holds this observation (its re-plan was aborted)
                need = [] if len(agent.queued_actions(0)) else [0]
            result: dict = {"replanned": bool(need)}
            if need:
                sampler, steps = options["sampler"], options["steps"]
                if (sampler, steps) != (agent.sampler, agent.num_inference_steps):
                    agent.set_sampler(sampler, steps)
                live = bool(options.get("live"))
                num_samples = options["num_samples"] if live else 1
                history = agent.obs_history(0)
                t1 = time.perf_counter()
                last = None
                for last in agent.iter_denoise(
                    history,
                    num_samples=num_samples,
                    sampler=agent.sampler,
                    num_inference_steps=agent.num_inference_steps,
                    seed=options["seed"],
                ):
                    if live:
                        self.frame.emit(request_id, last)
                    if self.abort and last.step < last.total:
                        self.acted.emit(request_id, {"aborted": True, "replanned": True})
                        return
                agent.queue_plan(0, np.array(last.sample[EXECUTED_SAMPLE]))
                result["denoise_seconds"] = time.perf_counter() - t1
                result["num_samples"] = num_samples
                result["executed_sample"] = EXECUTED_SAMPLE
                result["seed"] = options["seed"]
                if live:
                    result["history"] = history
            action = agent.act()[0]
            plan = agent.last_plan(0)
            result.update(
                action=np.asarray(action),
                latency=time.perf_counter() - t0,
                queued=agent.queued_actions(0),
                plan=None if plan is None else np.array(plan),
                sampler=agent.sampler,
                steps=agent.num_inference_steps,
            )
        except Exception as exc:  # noqa: BLE001  (shape mismatch etc.: reported, run stops)
            self.acted.emit(request_id, {"error": f"The policy failed: {exc}"})
            return
        self.acted.emit(request_id, result)


@dataclass
class Plan:
    """The denoising of one re-plan as the view received it."""

    plan_id: int
    frames: list = field(default_factory=list)  # DenoiseFrame, in step order
    complete: bool = False  # all frames received (the worker's result arrived)
    shown: int = -1  # index of the frame on screen
    scrubbed: bool = False
    seed: int | None = None
    history: np.ndarray | None = None
    executed: int = EXECUTED_SAMPLE  # index of the sample that became the plan


class DenoiseLegend(QWidget):
    """A colour bar from pure noise to the final sample, with a marker at the shown step."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.fraction: float | None = None
        self.setMinimumHeight(16)
        self.setMaximumHeight(16)

    def set_fraction(self, fraction: float | None) -> None:
        self.fraction = fraction
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        r = self.rect().adjusted(0, 2, -1, -2)
        gradient = QLinearGradient(r.left(), 0, r.right(), 0)
        for f in np.linspace(0, 1, 9):
            gradient.setColorAt(float(f), denoise_color(float(f)))
        p.fillRect(r, gradient)
        if self.fraction is not None:
            x = int(r.left() + self.fraction * r.width())
            p.setPen(Qt.GlobalColor.black)
            p.drawLine(x, 0, x, self.height())
        p.end()


class PolicyPanel(QWidget):
    """Controls and runs a policy in its own env instance of the current task."""

    message = pyqtSignal(str)
    policy_loaded = pyqtSignal(str)  # path
    wants_task = pyqtSignal(str)  # a loaded policy was trained on another registered task
    _request_load = pyqtSignal(str, int)
    _request_act = pyqtSignal(int, object, object)

    def __init__(self, view: TaskView, parent: QWidget | None = None):
        super().__init__(parent)
        self.view = view
        self.task: Task | None = None
        self.active = False
        self.agent = None
        self.agent_path: Path | None = None
        self.running = False
        self.loading = False
        self._load_id = 0
        self.seed_base = 0
        self.episode_seed: int | None = None
        self._rng = np.random.default_rng()
        self._request_id = 0
        self._in_flight: int | None = None
        self._pending: dict | None = None
        self._reset_agent = True
        self._replan_only = False  # the agent holds the current obs (its re-plan was aborted)
        self.plan: Plan | None = None
        self.plans_completed = 0
        self.frames_received = 0
        self.last_result: dict | None = None
        self.episode_steps = 0
        self.episode_return = 0.0
        self.last_info: dict = {}
        self._episode_over = False

        self._thread = QThread(self)
        self._thread.setObjectName("policy-worker")
        self.worker = PolicyWorker()
        self.worker.moveToThread(self._thread)
        self._request_load.connect(self.worker.load)
        self._request_act.connect(self.worker.act)
        self.worker.loaded.connect(self._on_loaded)
        self.worker.load_failed.connect(self._on_load_failed)
        self.worker.frame.connect(self._on_frame)
        self.worker.acted.connect(self._on_acted)
        self._thread.start()

        self.anim_timer = QTimer(self)
        self.anim_timer.timeout.connect(self._animate)
        self._build()
        self._speed_changed()

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        box = QGroupBox("Policy")
        bl = QVBoxLayout(box)
        self.policy_label = QLabel("No policy loaded")
        self.policy_label.setWordWrap(True)
        bl.addWidget(self.policy_label)
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
        for label, name in SAMPLERS:
            self.sampler_combo.addItem(label, name)
        self.sampler_combo.currentIndexChanged.connect(self._sampler_changed)
        form.addRow("Sampler:", self.sampler_combo)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 1000)
        self.steps_spin.setValue(10)
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
        self.live_check = QCheckBox("Live denoising view")
        self.live_check.setChecked(True)
        self.x0_check = QCheckBox("Show predicted x₀ instead of x_k")
        self.x0_check.toggled.connect(lambda _: self._show_frame())
        form.addRow(self.live_check)
        form.addRow(self.x0_check)
        layout.addWidget(sampling)

        scrub_box = QGroupBox("Last plan")
        sl = QVBoxLayout(scrub_box)
        self.scrub = QSlider(Qt.Orientation.Horizontal)
        self.scrub.setRange(0, 0)
        self.scrub.valueChanged.connect(self._scrubbed)
        self.step_label = QLabel("denoising step – / –")
        self.legend = DenoiseLegend()
        legend_row = QHBoxLayout()
        legend_row.addWidget(QLabel("noise"))
        legend_row.addWidget(self.legend, 1)
        legend_row.addWidget(QLabel("final"))
        sl.addWidget(self.step_label)
        sl.addWidget(self.scrub)
        sl.addLayout(legend_row)
        layout.addWidget(scrub_box)

        stats = QGridLayout()
        self.stat_labels: dict[str, QLabel] = {}
        for i, name in enumerate(["Steps", "Return", "Success", "Coverage", "Plan", "Denoise"]):
            label = QLabel("–")
            self.stat_labels[name] = label
            stats.addWidget(QLabel(f"{name}:"), i // 2, 2 * (i % 2))
            stats.addWidget(label, i // 2, 2 * (i % 2) + 1)
        stats.setColumnStretch(1, 1)
        stats.setColumnStretch(3, 1)
        layout.addLayout(stats)
        layout.addStretch(1)
        self._update_buttons()

    # ------------------------------------------------------------------ task and policy
    def set_task(self, task: Task) -> None:
        self.stop()
        if self.task is not None:
            self.task.close()
        self.task = task
        self.plan = None
        self._new_env_episode()
        if self.agent is not None and not self._agent_fits():
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

    def _on_loaded(self, agent, path: str, load_id: int) -> None:
        if load_id != self._load_id:
            return
        self.loading = False
        self.agent = agent
        self.agent_path = Path(path)
        if self.task is not None and agent.env_id and agent.env_id != self.task.env_id:
            self.wants_task.emit(agent.env_id)  # the main window switches task (or says why not)
        if self.task is not None and not self._agent_fits():
            return
        cfg = agent.config
        device = getattr(agent.device, "type", str(agent.device))
        self.policy_label.setText(
            f"<b>{self.agent_path.name}</b> ({agent.env_id or 'unknown env'})<br>"
            f"To={cfg.obs_horizon} Tp={cfg.pred_horizon} Ta={cfg.action_horizon} · {device}"
        )
        self.policy_label.setToolTip(str(path))
        index = self.sampler_combo.findData(agent.sampler)
        if index >= 0:
            self.sampler_combo.blockSignals(True)
            self.sampler_combo.setCurrentIndex(index)
            self.sampler_combo.blockSignals(False)
        self.steps_spin.setValue(int(agent.num_inference_steps))
        self.stop()
        self._new_env_episode()  # a new policy starts from a fresh episode
        self._update_buttons()
        self.message.emit(f"Policy loaded: {path}")
        self.policy_loaded.emit(str(path))

    def _on_load_failed(self, text: str, load_id: int) -> None:
        if load_id != self._load_id:
            return
        self.loading = False
        self.policy_label.setText(f"<span style='color:#c0392b'>{text}</span>")
        self.message.emit(text)
        self._update_buttons()

    def _agent_fits(self) -> bool:
        agent, task = self.agent, self.task
        space = task.env.observation_space
        if getattr(space, "shape", None) != agent.observation_space.shape or (
            task.env.action_space.shape != agent.action_space.shape
        ):
            self._unload(
                f"{self.agent_path}: the policy expects observations "
                f"{agent.observation_space.shape} and actions {agent.action_space.shape}, "
                f"but {task.env_id} has "
                f"{getattr(space, 'shape', space)} and {task.env.action_space.shape}."
            )
            return False
        return True

    def _unload(self, text: str) -> None:
        self.stop()
        self.agent = None
        self.worker.agent = None
        self.policy_label.setText(f"<span style='color:#c0392b'>{text}</span>")
        self.message.emit(text)
        self._update_buttons()

    # ------------------------------------------------------------------ run control
    def toggle_run(self) -> None:
        if self.running:
            self.stop()
        else:
            self.start()

    def start(self) -> bool:
        if self.agent is None or self.task is None:
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
        self.worker.abort = True
        self._update_buttons()

    def new_episode(self) -> None:
        was_running = self.running
        self.stop()
        self._new_env_episode()
        if was_running:
            self.start()

    def _new_env_episode(self) -> None:
        """Reset the env with a fresh seed; the agent's history and queue are cleared next act."""
        self._in_flight = None  # a late result of the old episode is ignored
        self._pending = None
        self._reset_agent = True
        self._replan_only = False
        self._episode_over = False
        self.episode_steps = 0
        self.episode_return = 0.0
        self.last_info = {}
        if self.task is not None:
            self.episode_seed = int(self._rng.integers(0, 2**31 - 1))
            self.task.reset(seed=self.episode_seed)
        self.view_plan_clear()
        self._update_stats()
        self._show_env()

    def view_plan_clear(self) -> None:
        self.plan = None
        if self.active:
            self.view.clear_overlays()

    def _pause_toggled(self, paused: bool) -> None:
        self.pause_button.setText("Resume" if paused else "Pause")

    @property
    def paused(self) -> bool:
        return self.pause_button.isChecked()

    def _send_request(self) -> None:
        """Ask the worker for the next action; a re-plan samples with ``seed``."""
        self._request_id += 1
        options = {
            "reset": self._reset_agent,
            "observe": self._reset_agent or not self._replan_only,
            "sampler": self.sampler_combo.currentData(),
            "steps": self.steps_spin.value(),
            "num_samples": self.samples_spin.value(),
            # samples can only be drawn where actions are points in the view
            "live": self.live_check.isChecked() and self.task.draws_actions,
            "seed": self.seed_base + self._request_id,
        }
        self._reset_agent = False
        self._replan_only = False
        self._in_flight = self._request_id
        self._request_act.emit(self._request_id, self.task.obs, options)

    # ------------------------------------------------------------------ the loop
    def tick(self) -> None:
        """One control step: execute the pending action once its denoising has been shown."""
        if not self.running or self.paused or self.agent is None or self.task is None:
            return
        if self._pending is None:
            if self._in_flight is None:
                self._send_request()
            return
        result = self._pending
        if result["replanned"] and result.get("history") is not None and not self.animation_done:
            return
        self._pending = None
        _, reward, terminated, truncated, info = self.task.step(result["action"])
        self.episode_steps += 1
        self.episode_return += reward
        self.last_info = info
        self.last_result = result
        self._update_stats()
        self._show_env()
        if terminated or truncated:
            self._episode_over = True
            self.running = False
            self._update_buttons()
            how = "succeeded" if info.get("is_success") else "ended"
            self.message.emit(
                f"Episode {how} after {self.episode_steps} steps "
                f"(return {self.episode_return:.2f})."
            )
            return
        self._send_request()

    @property
    def animation_done(self) -> bool:
        plan = self.plan
        if plan is None:
            return True
        return plan.complete and (plan.scrubbed or plan.shown >= len(plan.frames) - 1)

    def _on_frame(self, plan_id: int, frame) -> None:
        if plan_id != self._in_flight:
            return
        if self.plan is None or self.plan.plan_id != plan_id:
            self.plan = Plan(plan_id)
        self.plan.frames.append(frame)
        self.frames_received += 1
        if self.speed_spin.value() == 0 or not self.active:
            self.plan.shown = len(self.plan.frames) - 1
            self._show_frame()
        elif not self.anim_timer.isActive():
            self.anim_timer.start()

    def _on_acted(self, request_id: int, result: dict) -> None:
        if request_id != self._in_flight:
            return  # from an episode or policy that is gone
        self._in_flight = None
        if "error" in result:
            self.stop()
            self.message.emit(result["error"])
            self.policy_label.setText(f"<span style='color:#c0392b'>{result['error']}</span>")
            return
        if result.get("aborted"):  # stopped mid-denoising: re-plan from this obs when restarted
            self._replan_only = True
            self.plan = None
            if self.active:
                self.view.set_samples(None)
                self.view.set_caption("")
            return
        self._pending = result
        if result["replanned"]:
            if result.get("history") is not None and self.plan is not None:
                if self.plan.plan_id == request_id:
                    self.plan.complete = True
                    self.plan.seed = result.get("seed")
                    self.plan.history = result["history"]
                    self.plan.executed = result["executed_sample"]
                    self.plans_completed += 1
            else:
                self.plan = None
                if self.active:
                    self.view.set_samples(None)
            self.stat_labels["Plan"].setText(
                f"{1000 * result['latency']:.0f} ms ({result['sampler']} ×{result['steps']})"
            )
            n, per_step = result["num_samples"], result["denoise_seconds"] / max(result["steps"], 1)
            self.stat_labels["Denoise"].setText(
                f"{1000 * per_step:.1f} ms/step ({n} sample{'s' if n > 1 else ''})"
            )
        if self.animation_done:
            self._show_plan()

    def _animate(self) -> None:
        plan = self.plan
        if plan is None or self.paused:
            return
        if plan.shown < len(plan.frames) - 1 and not plan.scrubbed:
            plan.shown += 1
            self._show_frame()
        elif plan.complete:
            self.anim_timer.stop()
            self._show_plan()

    # ------------------------------------------------------------------ drawing
    def _show_env(self) -> None:
        if not self.active or self.task is None:
            return
        self.view.set_extent(self.task.extent)
        self.view.set_frame(self.task.frame())
        if self.animation_done:
            self._show_plan()

    def _show_frame(self) -> None:
        plan = self.plan
        if plan is None or plan.shown < 0 or not plan.frames:
            return
        frame = plan.frames[plan.shown]
        total = max(int(frame.total), 1)
        fraction = frame.step / total
        self.scrub.blockSignals(True)
        self.scrub.setRange(0, total)
        self.scrub.setValue(int(frame.step))
        self.scrub.blockSignals(False)
        self.step_label.setText(
            f"denoising step {frame.step} / {total}"
            + ("  (pure noise)" if frame.step == 0 else "")
            + ("  (final)" if frame.step == total else "")
        )
        self.legend.set_fraction(fraction)
        if not self.active or self.task is None or not self.task.draws_actions:
            return
        values = frame.pred_x0 if self.x0_check.isChecked() else frame.sample
        self.view.set_samples(self.task.point_from_action(values), fraction, plan.executed)
        self.view.set_caption(f"denoising {frame.step}/{total}")

    def _show_plan(self) -> None:
        """Highlight the chunk being executed and the queued actions."""
        if not self.active or self.task is None or not self.task.draws_actions:
            return
        result = self._pending or self.last_result
        if result is None or result.get("plan") is None:
            self.view.set_plan(None)
            return
        cfg = self.agent.config if self.agent is not None else None
        start = cfg.obs_horizon - 1 if cfg else 0
        end = start + (cfg.action_horizon if cfg else 0)
        queued = result["queued"]
        self.view.set_plan(
            self.task.point_from_action(result["plan"]),
            (start, end),
            self.task.point_from_action(queued) if len(queued) else None,
        )
        if self.plan is not None and self.plan.frames:
            self.view.set_caption(f"executing · {len(queued)} queued")

    def _scrubbed(self, value: int) -> None:
        plan = self.plan
        if plan is None or not plan.frames:
            return
        index = min(range(len(plan.frames)), key=lambda i: abs(plan.frames[i].step - value))
        plan.shown = index
        plan.scrubbed = True
        self._show_frame()

    def _speed_changed(self, *_: object) -> None:
        speed = self.speed_spin.value()
        self.anim_timer.setInterval(int(1000 / speed) if speed else 0)

    def _sampler_changed(self, *_: object) -> None:
        name = self.sampler_combo.currentData()
        if name == "ddpm":
            steps = self.agent.config.num_train_steps if self.agent is not None else 100
        else:
            steps = 10
        self.steps_spin.setValue(steps)

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
        ready = self.agent is not None and self.task is not None and not self.loading
        self.run_button.setEnabled(ready)
        self.run_button.setText("Stop" if self.running else "Run")
        self.pause_button.setEnabled(self.running)
        self.reset_button.setEnabled(self.task is not None)
        self.load_button.setEnabled(not self.loading)
        has_default = self.task is not None and resources.shipped_policy(self.task.env_id)
        self.default_button.setEnabled(bool(has_default) and not self.loading)

    # ------------------------------------------------------------------ activation
    def activate(self) -> None:
        self.active = True
        self.view.clear_overlays()
        self._show_env()
        self._show_frame()
        if self.agent is None and not self.loading and self.task is not None:
            self.load_default()  # or says that there is none

    def deactivate(self) -> None:
        self.active = False
        self.stop()

    def shutdown(self) -> None:
        self.stop()
        self.anim_timer.stop()
        self._thread.quit()
        self._thread.wait(10000)
        if self.task is not None:
            self.task.close()
            self.task = None
