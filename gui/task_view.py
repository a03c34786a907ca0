"""The task view: draws the env's frame scaled to fit, overlays in world units (target, demo path,
denoising samples, the executed plan and queued actions, the user's goal and keep-out zones), and
reports mouse drags in world units.
"""

from __future__ import annotations

import numpy as np
from PyQt6.QtCore import QLineF, QPointF, QRectF, Qt, pyqtSignal
from PyQt6.QtGui import (
    QBrush,
    QColor,
    QImage,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPen,
)
from PyQt6.QtWidgets import QSizePolicy, QWidget

# Denoising colours: noisy iterates grey-purple, through violet and teal, the final sample yellow.
_DENOISE_STOPS = np.array(
    [
        [0.00, 125, 118, 140],
        [0.35, 112, 64, 170],
        [0.70, 33, 150, 140],
        [1.00, 253, 222, 37],
    ]
)


_EXECUTED = QColor(255, 110, 40)  # the executed chunk (and the sample it came from)
_ZONE = QColor(215, 30, 60)  # keep-out zones
_GOAL = QColor(0, 160, 90)  # the goal the user set for the plans
_TARGET = QColor(230, 40, 40)  # the recorder's target


def denoise_color(fraction: float, alpha: int = 255) -> QColor:
    """Colour of denoising iterate ``fraction`` = step / K in [0, 1] (0 = pure noise, 1 = final)."""
    f = float(np.clip(fraction, 0.0, 1.0))
    rgb = [np.interp(f, _DENOISE_STOPS[:, 0], _DENOISE_STOPS[:, c]) for c in (1, 2, 3)]
    return QColor(int(rgb[0]), int(rgb[1]), int(rgb[2]), alpha)


def _segments(points: np.ndarray) -> list[QLineF]:
    """A polyline (T, 2) as T-1 separate segments: antialiased wide polylines are stroked as one
    self-intersecting path, which is an order of magnitude slower for noisy trajectories."""
    pts = np.asarray(points, np.float64)[:, :2].tolist()
    return [QLineF(a[0], a[1], b[0], b[1]) for a, b in zip(pts[:-1], pts[1:], strict=False)]


def _pen(color: QColor | str, width: float, style=Qt.PenStyle.SolidLine) -> QPen:
    pen = QPen(QColor(color), width, style)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    return pen


class TaskView(QWidget):
    """Draws a frame (H, W, 3) uint8 letterboxed into the widget, with overlays in world units.

    World units: the view spans (0, 0)..extent, x right, y down (the dp_agent tasks: 0..512).
    Signals carry world coordinates of the cursor: ``pressed``/``dragged``/``released`` for the
    left button.
    """

    pressed = pyqtSignal(float, float)
    dragged = pyqtSignal(float, float)
    released = pyqtSignal(float, float)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setMinimumSize(320, 320)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMouseTracking(False)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)  # a click takes focus from text fields
        self.extent: tuple[float, float] = (512.0, 512.0)
        self._image: QImage | None = None
        self._aspect = 1.0
        self.frames_drawn = 0  # paint events that drew a frame (for FPS measurements)
        self.frames_set = 0
        self.placeholder = "No task loaded"
        self._inset: QImage | None = None  # a small image in the frame's top-right corner
        self.inset_caption = ""
        self.clear_overlays()

    # ------------------------------------------------------------------ content
    def clear_overlays(self) -> None:
        self.target: np.ndarray | None = None  # (2,) world
        self.path: np.ndarray | None = None  # (T, 2) a demo's action path
        self.paths: list[np.ndarray] = []  # a dataset's action paths, drawn thin
        self.samples: np.ndarray | None = None  # (N, Tp, 2) denoising iterates
        self.samples_fraction = 1.0  # step / K of the iterates shown
        self.samples_highlight: int | None = None  # the sample that is (to be) executed
        self.plan: np.ndarray | None = None  # (Tp, 2) chunk being executed
        self.executed: tuple[int, int] | None = None  # slice of plan that is executed
        self.queued: np.ndarray | None = None  # (n, 2) pending actions
        self.goal: np.ndarray | None = None  # (2,) the user's goal for the plans
        self.zones: list[tuple[float, float, float]] = []  # keep-out circles (x, y, r)
        self.zone_preview: tuple[float, float, float] | None = None  # the one being drawn
        self.caption = ""
        self.update()

    def set_extent(self, extent: tuple[float, float]) -> None:
        self.extent = (float(extent[0]), float(extent[1]))
        self.update()

    def set_frame(self, frame: np.ndarray) -> None:
        """Show an (H, W, 3) uint8 image (copied)."""
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        h, w, _ = frame.shape
        self._image = QImage(frame.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        self._aspect = w / h
        self.frames_set += 1
        self.update()

    def set_target(self, point: np.ndarray | None) -> None:
        self.target = None if point is None else np.asarray(point, np.float64)
        self.update()

    def set_path(self, path: np.ndarray | None) -> None:
        self.path = None if path is None or len(path) == 0 else np.asarray(path, np.float64)
        self.update()

    def set_paths(self, paths: list[np.ndarray]) -> None:
        """Many action paths (each (T, 2), world units), e.g. a whole demo file."""
        self.paths = [np.asarray(p, np.float64) for p in paths if len(p) > 1]
        self.update()

    def set_samples(
        self, samples: np.ndarray | None, fraction: float = 1.0, highlight: int | None = None
    ) -> None:
        """Denoising iterates (N, Tp, 2) in world units, drawn in the colour of ``fraction``;
        sample ``highlight`` (the executed one) is drawn on top, thicker and outlined in the
        executed-chunk orange."""
        self.samples = None if samples is None else np.asarray(samples, np.float64)
        self.samples_fraction = fraction
        self.samples_highlight = highlight
        self.update()

    def set_plan(
        self,
        plan: np.ndarray | None,
        executed: tuple[int, int] | None = None,
        queued: np.ndarray | None = None,
    ) -> None:
        self.plan = None if plan is None else np.asarray(plan, np.float64)
        self.executed = executed
        self.queued = None if queued is None or len(queued) == 0 else np.asarray(queued, np.float64)
        self.update()

    def set_steering(
        self,
        goal: np.ndarray | None,
        zones: list[tuple[float, float, float]],
        preview: tuple[float, float, float] | None = None,
    ) -> None:
        """The user's goal (2,) and keep-out circles (x, y, r), world units; ``preview`` is
        the circle being dragged out (drawn dashed)."""
        self.goal = None if goal is None else np.asarray(goal, np.float64)
        self.zones = [tuple(float(v) for v in z) for z in zones]
        self.zone_preview = None if preview is None else tuple(float(v) for v in preview)
        self.update()

    def set_inset(self, image: np.ndarray | None, caption: str = "") -> None:
        """Show an (h, w, 3) uint8 image (copied) small in the frame's top-right corner, e.g.
        what an image policy's network sees; None removes it. Overlays do not clear it."""
        if image is None:
            self._inset = None
        else:
            image = np.ascontiguousarray(image, dtype=np.uint8)
            h, w, _ = image.shape
            self._inset = QImage(image.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        self.inset_caption = caption
        self.update()

    @property
    def inset_shown(self) -> bool:
        return self._inset is not None

    def set_caption(self, text: str) -> None:
        self.caption = text
        self.update()

    # ------------------------------------------------------------------ geometry
    def frame_rect(self) -> QRectF:
        """Where the frame is drawn inside the widget (aspect kept, centred)."""
        w, h = self.width(), self.height()
        if w / max(h, 1) > self._aspect:
            fh = h
            fw = h * self._aspect
        else:
            fw = w
            fh = w / self._aspect
        return QRectF((w - fw) / 2.0, (h - fh) / 2.0, fw, fh)

    def widget_to_world(self, pos: QPointF) -> np.ndarray:
        """Widget pixels -> world units, clamped to the world."""
        r = self.frame_rect()
        x = (pos.x() - r.x()) / r.width() * self.extent[0]
        y = (pos.y() - r.y()) / r.height() * self.extent[1]
        return np.clip(np.array([x, y]), (0.0, 0.0), self.extent)

    def world_to_widget(self, point: np.ndarray) -> QPointF:
        r = self.frame_rect()
        return QPointF(
            r.x() + float(point[0]) / self.extent[0] * r.width(),
            r.y() + float(point[1]) / self.extent[1] * r.height(),
        )

    # ------------------------------------------------------------------ mouse
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt API)
        if event.button() == Qt.MouseButton.LeftButton:
            x, y = self.widget_to_world(event.position())
            self.pressed.emit(float(x), float(y))

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.buttons() & Qt.MouseButton.LeftButton:
            x, y = self.widget_to_world(event.position())
            self.dragged.emit(float(x), float(y))

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton:
            x, y = self.widget_to_world(event.position())
            self.released.emit(float(x), float(y))

    # ------------------------------------------------------------------ drawing
    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(30, 30, 34))
        if self._image is None:
            p.setPen(QColor(200, 200, 200))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.placeholder)
            p.end()
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        r = self.frame_rect()
        p.drawImage(r, self._image)
        self.frames_drawn += 1
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.save()
        p.setClipRect(r)
        self._draw_overlays(p, r)
        p.restore()
        if self.caption:
            self._draw_caption(p, r)
        if self._inset is not None:
            self._draw_inset(p, r)
        p.end()

    def _to_widget(self, points: np.ndarray, r: QRectF) -> np.ndarray:
        """World points (..., 2) -> widget pixels (..., 2). Points are mapped here rather than
        with a painter transform: stroking under a scaling transform is far slower."""
        scale = np.array([r.width() / self.extent[0], r.height() / self.extent[1]])
        pts = np.asarray(points, np.float64)[..., :2] * scale + (r.x(), r.y())
        # keep wild noise iterates from producing huge coordinates for the rasteriser
        margin = 4.0 * max(r.width(), r.height())
        return np.clip(pts, -margin, margin)

    def _draw_overlays(self, p: QPainter, r: QRectF) -> None:
        # Opaque pens throughout: translucent antialiased strokes are many times slower to draw.
        if self.paths:
            p.setPen(_pen(QColor(110, 150, 230), 1.0))
            for path in self.paths:
                p.drawLines(_segments(self._to_widget(path, r)))
        if self.path is not None and len(self.path) > 1:
            p.setPen(_pen(QColor(60, 140, 255), 2.0))
            p.drawLines(_segments(self._to_widget(self.path, r)))
        if self.samples is not None:
            self._draw_samples(p, self._to_widget(self.samples, r))
        if self.plan is not None and len(self.plan) > 1:
            self._draw_plan(p, self._to_widget(self.plan, r))
        if self.queued is not None:
            p.setPen(_pen(QColor(20, 20, 20), 1.0))
            p.setBrush(QBrush(QColor(255, 150, 60)))
            for x, y in self._to_widget(self.queued, r):
                p.drawEllipse(QPointF(float(x), float(y)), 4.0, 4.0)
        if self.target is not None:
            self._draw_target(p, *(float(v) for v in self._to_widget(self.target, r)))
        self._draw_steering(p, r)

    def _draw_steering(self, p: QPainter, r: QRectF) -> None:
        """Keep-out zones hatched in red (the one being drawn dashed), the goal as a green
        ring with a cross."""
        scale = r.width() / self.extent[0]
        circles = [(z, Qt.PenStyle.SolidLine) for z in self.zones]
        if self.zone_preview is not None:
            circles.append((self.zone_preview, Qt.PenStyle.DashLine))
        for (x, y, rad), style in circles:
            centre = self.world_to_widget((x, y))
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QBrush(_ZONE, Qt.BrushStyle.BDiagPattern))
            p.drawEllipse(centre, rad * scale, rad * scale)
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.setPen(_pen(_ZONE, 2.5, style))
            p.drawEllipse(centre, rad * scale, rad * scale)
        if self.goal is not None:
            x, y = (float(v) for v in self._to_widget(self.goal, r))
            p.setPen(_pen(QColor(255, 255, 255), 5.0))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawEllipse(QPointF(x, y), 10.0, 10.0)
            self._draw_target(p, x, y, _GOAL)

    def _draw_samples(self, p: QPainter, samples: np.ndarray) -> None:
        """Denoising iterates (N, Tp, 2) in widget pixels, the executed one highlighted."""
        color = denoise_color(self.samples_fraction)
        # hairlines (fast) while denoising, wider for the final samples
        p.setPen(_pen(color, 2.0 if self.samples_fraction >= 1.0 else 1.0))
        p.setBrush(Qt.BrushStyle.NoBrush)
        for traj in samples:
            p.drawLines(_segments(traj))
        # a dot at the first action of each sample makes the spread easy to see
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QBrush(color))
        for x, y in samples[:, 0]:
            p.drawEllipse(QPointF(float(x), float(y)), 2.5, 2.5)
        h = self.samples_highlight
        if h is None or not 0 <= h < len(samples):
            return
        # the executed sample: orange-outlined, thicker; aliased while denoising, where wide
        # antialiased strokes of long noisy segments would triple the paint time
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, self.samples_fraction >= 1.0)
        p.setPen(_pen(_EXECUTED, 6.0))
        p.drawLines(_segments(samples[h]))
        p.setPen(_pen(color, 2.5))
        p.drawLines(_segments(samples[h]))
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setPen(_pen(_EXECUTED, 1.5))
        p.setBrush(QBrush(color))
        x, y = samples[h, 0]
        p.drawEllipse(QPointF(float(x), float(y)), 4.5, 4.5)

    def _draw_plan(self, p: QPainter, plan: np.ndarray) -> None:
        """The chunk being executed (Tp, 2) in widget pixels: dashed, its executed slice orange."""
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(_pen(QColor(255, 255, 255), 2.0))
        p.drawLines(_segments(plan)[::2])  # every other segment: a cheap dashed look
        if self.executed is not None:
            a, b = self.executed
            if len(plan[a:b]) > 1:
                p.setPen(_pen(_EXECUTED, 4.0))
                p.drawLines(_segments(plan[a:b]))

    def _draw_target(self, p: QPainter, x: float, y: float, color: QColor = _TARGET) -> None:
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(_pen(color, 2.0))
        rad = 9.0
        p.drawEllipse(QPointF(x, y), rad, rad)
        path = QPainterPath()
        path.moveTo(x - 1.6 * rad, y)
        path.lineTo(x + 1.6 * rad, y)
        path.moveTo(x, y - 1.6 * rad)
        path.lineTo(x, y + 1.6 * rad)
        p.drawPath(path)

    def _draw_inset(self, p: QPainter, r: QRectF) -> None:
        """The inset at a quarter of the frame's width, its pixels kept square and sharp."""
        side = max(48.0, r.width() / 4.0)
        h = side * self._inset.height() / max(self._inset.width(), 1)
        box = QRectF(r.right() - side - 8, r.y() + 8, side, h)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        p.drawImage(box, self._inset)
        p.setPen(_pen(QColor(40, 40, 46), 2.0))  # dark: the tasks' backgrounds are white
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRect(box)
        if self.inset_caption:
            metrics = p.fontMetrics()
            text = QRectF(box.x(), box.bottom() + 2, box.width(), metrics.height() + 4)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(0, 0, 0, 150))
            p.drawRect(text)
            p.setPen(QColor(255, 255, 255))
            p.drawText(text, Qt.AlignmentFlag.AlignCenter, self.inset_caption)

    def _draw_caption(self, p: QPainter, r: QRectF) -> None:
        metrics = p.fontMetrics()
        text_w = metrics.horizontalAdvance(self.caption) + 12
        box = QRectF(r.x() + 6, r.y() + 6, text_w, metrics.height() + 6)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(0, 0, 0, 150))
        p.drawRoundedRect(box, 4, 4)
        p.setPen(QColor(255, 255, 255))
        p.drawText(box, Qt.AlignmentFlag.AlignCenter, self.caption)
