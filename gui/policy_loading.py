"""The Policy tab's task changes and policy loading: a policy or planner loaded in the worker,
checked against the task (its observations and actions), or unloaded with the reason."""

from __future__ import annotations

from pathlib import Path

from PyQt6.QtWidgets import QFileDialog

from dp_agent.observations import ObservationError

from . import resources
from .policy_worker import PolicyInfo
from .tasks import Task, TaskError


class PolicyLoadingMixin:
    """PolicyPanel's task changes and policy loading (see ``policy_panel``)."""

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
