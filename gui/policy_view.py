"""The Policy tab in the task view: what it draws there (the denoising, the plan, the
policy's input image) and the steering done there (goal clicks, keep-out zones, α)."""

from __future__ import annotations

import numpy as np
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QPushButton, QSlider

from .policy_worker import Steering, network_input_image

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


class PolicyViewMixin:
    """PolicyPanel's drawing in the task view and its steering (see ``policy_panel``)."""

    # ------------------------------------------------------------------ steering
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
