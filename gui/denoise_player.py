"""The denoising player: keeps the iterates of the last re-plan, animates them from pure noise
(grey-purple) to the final chunks (yellow) at a chosen speed, and lets the user scrub through
them. It draws nothing itself: ``frame_shown(step)`` says which iterate to draw, ``finished`` that
the animation is over (the plan can be executed and drawn)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QLinearGradient, QPainter
from PyQt6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from dp_agent.diffusion.step import DenoiseStep

from .policy_worker import EXECUTED_SAMPLE
from .task_view import denoise_color


@dataclass
class Plan:
    """The denoising of one re-plan as the view received it."""

    plan_id: int
    frames: list[DenoiseStep] = field(default_factory=list)  # in step order, env units
    complete: bool = False  # all frames received (the worker's result arrived)
    shown: int = -1  # index of the frame on screen
    scrubbed: bool = False
    seed: int | None = None
    history: np.ndarray | None = None
    executed: int = EXECUTED_SAMPLE  # index of the sample that became the plan

    @property
    def done(self) -> bool:
        """Every frame has arrived and the last one was shown (or the user took over)."""
        return self.complete and (self.scrubbed or self.shown >= len(self.frames) - 1)


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


class DenoisePlayer(QGroupBox):
    """The "Last plan" box: step label, scrub slider, colour legend; plays one ``Plan``."""

    frame_shown = pyqtSignal(object)  # DenoiseStep now on screen
    finished = pyqtSignal()  # the animation reached the last frame of a complete plan

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Last plan", parent)
        self.plan: Plan | None = None
        self.frames_received = 0
        self.plans_completed = 0
        self.playing = True  # False while paused: the animation waits
        self.instant = False  # show each frame as it arrives (no animation)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._animate)
        self._build()
        self.set_speed(20)

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        self.scrub = QSlider(Qt.Orientation.Horizontal)
        self.scrub.setRange(0, 0)
        self.scrub.valueChanged.connect(self._scrubbed)
        self.step_label = QLabel("denoising step – / –")
        self.legend = DenoiseLegend()
        legend_row = QHBoxLayout()
        legend_row.addWidget(QLabel("noise"))
        legend_row.addWidget(self.legend, 1)
        legend_row.addWidget(QLabel("final"))
        layout.addWidget(self.step_label)
        layout.addWidget(self.scrub)
        layout.addLayout(legend_row)

    # ------------------------------------------------------------------ control
    def set_speed(self, steps_per_s: int) -> None:
        """Animation speed; 0 shows every frame the moment it arrives."""
        self.instant = steps_per_s <= 0
        self.timer.setInterval(int(1000 / steps_per_s) if steps_per_s > 0 else 0)

    @property
    def done(self) -> bool:
        """No animation is pending (no plan, or its last frame was shown)."""
        return self.plan is None or self.plan.done

    def clear(self) -> None:
        """Forget the plan (a new episode, task or policy)."""
        self.plan = None
        self.timer.stop()
        self.scrub.blockSignals(True)
        self.scrub.setRange(0, 0)
        self.scrub.blockSignals(False)
        self.step_label.setText("denoising step – / –")
        self.legend.set_fraction(None)

    def add_frame(self, plan_id: int, frame: DenoiseStep, show_now: bool = False) -> None:
        """An iterate of re-plan ``plan_id`` arrived; ``show_now`` skips the animation."""
        if self.plan is None or self.plan.plan_id != plan_id:
            self.plan = Plan(plan_id)
        self.plan.frames.append(frame)
        self.frames_received += 1
        if self.instant or show_now:
            self.show_frame(len(self.plan.frames) - 1)
        elif not self.timer.isActive():
            self.timer.start()

    def complete(self, plan_id: int, seed: int | None, history, executed: int) -> bool:
        """The worker finished re-plan ``plan_id``; False if that plan is not the one held."""
        plan = self.plan
        if plan is None or plan.plan_id != plan_id:
            return False
        plan.complete, plan.seed, plan.history, plan.executed = True, seed, history, executed
        self.plans_completed += 1
        return True

    def show_frame(self, index: int | None = None) -> None:
        """Put frame ``index`` (default: the one shown) on screen again."""
        plan = self.plan
        if plan is None or not plan.frames:
            return
        if index is not None:
            plan.shown = index
        if plan.shown < 0:
            return
        frame = plan.frames[plan.shown]
        total = max(int(frame.total), 1)
        self.scrub.blockSignals(True)
        self.scrub.setRange(0, total)
        self.scrub.setValue(int(frame.step))
        self.scrub.blockSignals(False)
        self.step_label.setText(
            f"denoising step {frame.step} / {total}"
            + ("  (pure noise)" if frame.step == 0 else "")
            + ("  (final)" if frame.step == total else "")
        )
        self.legend.set_fraction(frame.step / total)
        self.frame_shown.emit(frame)

    def _animate(self) -> None:
        plan = self.plan
        if plan is None or not self.playing:
            return
        if plan.shown < len(plan.frames) - 1 and not plan.scrubbed:
            self.show_frame(plan.shown + 1)
        elif plan.complete:
            self.timer.stop()
            self.finished.emit()

    def _scrubbed(self, value: int) -> None:
        plan = self.plan
        if plan is None or not plan.frames:
            return
        index = min(range(len(plan.frames)), key=lambda i: abs(plan.frames[i].step - value))
        plan.scrubbed = True
        self.show_frame(index)
