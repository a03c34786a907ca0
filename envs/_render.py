"""Drawing for the 2D tasks: a supersampled off-screen pygame canvas in world units, and the window.

pygame is imported on first use, so importing the environments never touches it; nothing here
needs a display (drawing goes to a plain ``pygame.Surface``; only ``HumanWindow`` opens one).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

Color = tuple[int, int, int]

# Named colours (CSS names, as pygame.Color spells them) used by the tasks.
WHITE: Color = (255, 255, 255)
LIGHT_GREEN: Color = (144, 238, 144)
LIGHT_SLATE_GRAY: Color = (119, 136, 153)
ROYAL_BLUE: Color = (65, 105, 225)
LIGHT_GRAY: Color = (211, 211, 211)


def lighten(color: Color, factor: float = 1.2) -> Color:
    """The reference renderer's fill colour: each channel times ``factor``, rounded, capped at
    255."""
    return tuple(min(255, round(c * factor)) for c in color)  # type: ignore[return-value]


def import_pygame() -> Any:
    """Import pygame quietly (no banner); initialises nothing."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    return pygame


class Canvas:
    """A square pygame surface showing a ``world_size`` x ``world_size`` world, drawn supersampled.

    Coordinates passed to the drawing methods are world units (x right, y down, as in the physics);
    ``to_array`` box-filters the supersampled surface down to ``size`` pixels, which anti-aliases
    every edge.
    """

    def __init__(self, size: int, world_size: float, background: Color = WHITE) -> None:
        if int(size) < 1:
            raise ValueError(f"render size: expected a positive number of pixels, got {size!r}")
        self.pygame = import_pygame()
        self.size = int(size)
        self.supersample = 2 if self.size >= 256 else 4
        side = self.size * self.supersample
        self.scale = side / float(world_size)
        self.surface = self.pygame.Surface((side, side))
        self.surface.fill(background)

    def _px(self, points: np.ndarray) -> list[tuple[float, float]]:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2) * self.scale
        return [(float(x), float(y)) for x, y in pts]

    def polygon(
        self,
        points: np.ndarray,
        fill: Color,
        outline: Color | None = None,
        outline_width: float = 0.0,
    ) -> None:
        """Fill a polygon given as (N, 2) world points; optionally outline it ``outline_width``
        world units wide."""
        pts = self._px(points)
        self.pygame.draw.polygon(self.surface, fill, pts)
        if outline is not None and outline_width > 0:
            self.polyline(points, outline, outline_width, closed=True)

    def polyline(
        self, points: np.ndarray, color: Color, width: float, closed: bool = False
    ) -> None:
        """A thick line with round joins and caps through (N, 2) world points."""
        pts = self._px(points)
        w = max(1, round(width * self.scale))
        self.pygame.draw.lines(self.surface, color, closed, pts, w)
        for p in pts:
            self.pygame.draw.circle(self.surface, color, p, w / 2)

    def circle(self, center: Sequence[float], radius: float, color: Color) -> None:
        """A filled disk; centre and radius in world units."""
        cx, cy = float(center[0]) * self.scale, float(center[1]) * self.scale
        self.pygame.draw.circle(self.surface, color, (cx, cy), radius * self.scale)

    def ring(self, center: Sequence[float], radius: float, color: Color, width: float) -> None:
        """A circle outline ``width`` world units wide, inside the circle of ``radius``."""
        cx, cy = float(center[0]) * self.scale, float(center[1]) * self.scale
        w = max(1, round(width * self.scale))
        self.pygame.draw.circle(self.surface, color, (cx, cy), radius * self.scale, w)

    def cross(self, center: Sequence[float], half: float, color: Color, width: float) -> None:
        """An x-shaped marker of half-size ``half`` (world units)."""
        c = np.asarray(center, dtype=np.float64)
        d = np.array([[-half, -half], [half, half]])
        self.polyline(c + d, color, width)
        self.polyline(c + d * [1, -1], color, width)

    def to_array(self) -> np.ndarray:
        """The canvas as an (size, size, 3) uint8 RGB image (rows = y)."""
        small = self.pygame.transform.smoothscale(self.surface, (self.size, self.size))
        return np.ascontiguousarray(self.pygame.surfarray.array3d(small).transpose(1, 0, 2))


class HumanWindow:
    """The pygame window of ``render_mode="human"``: shows frames at the task's frame rate.

    Works under ``SDL_VIDEODRIVER=dummy`` (nothing is shown, nothing fails).
    """

    def __init__(self, title: str, size: int, fps: float) -> None:
        self.pygame = import_pygame()
        self.pygame.display.init()
        self.window = self.pygame.display.set_mode((size, size))
        self.pygame.display.set_caption(title)
        self.clock = self.pygame.time.Clock()
        self.fps = fps

    def show(self, frame: np.ndarray) -> None:
        """Blit an (H, W, 3) uint8 frame, process window events and wait for the next frame time."""
        surface = self.pygame.surfarray.make_surface(np.ascontiguousarray(frame.transpose(1, 0, 2)))
        if surface.get_size() != self.window.get_size():
            surface = self.pygame.transform.smoothscale(surface, self.window.get_size())
        self.window.blit(surface, (0, 0))
        self.pygame.event.pump()
        self.pygame.display.flip()
        self.clock.tick(self.fps)

    def close(self) -> None:
        self.pygame.display.quit()


class RenderModes:
    """``render()`` and ``close()`` for envs that draw themselves with ``render_frame(size)``:
    "rgb_array" returns the frame, "human" shows it in a pygame window at ``render_fps``."""

    render_mode: str | None
    render_size: int
    _window: HumanWindow | None

    def render(self) -> np.ndarray | None:
        name = type(self).__name__
        if self.render_mode is None:
            import gymnasium as gym

            gym.logger.warn(f"{name}.render() called without a render_mode (rgb_array or human).")
            return None
        frame = self.render_frame(self.render_size)
        if self.render_mode == "rgb_array":
            return frame
        if self._window is None:
            self._window = HumanWindow(
                f"dp-agent {name}", self.render_size, self.metadata["render_fps"]
            )
        self._window.show(frame)
        return None

    def close(self) -> None:
        if self._window is not None:
            self._window.close()
            self._window = None


# ------------------------------------------------------------- the reference PushT observation
# gym-pusht draws its observation image on a 512 x 512 pygame surface in world pixels, with
# vertices rounded to whole pixels and nothing antialiased (pymunk's debug drawing, outlines as
# "fat segments": a 4 px line, a quad and two round caps), then shrinks it with OpenCV's bilinear
# resize. An image policy sees exactly those edges, so the observation is drawn the same way here.


def fat_segment(surface: Any, a: Sequence[float], b: Sequence[float], radius: float, color: Color):
    """A segment ``radius`` wide on each side with round ends, as the reference draws walls and
    the block's outline: a line of width 2r, the quad around it, a disk at each end."""
    pygame = import_pygame()
    p1, p2 = (round(a[0]), round(a[1])), (round(b[0]), round(b[1]))
    r = round(max(1, radius * 2))
    pygame.draw.lines(surface, color, False, [p1, p2], r)
    if r <= 2:
        return
    dx, dy = abs(p2[1] - p1[1]), abs(p2[0] - p1[0])  # |normal| (unsigned, as the reference)
    if dx == 0 and dy == 0:
        return
    scale = radius / math.hypot(dx, dy)
    ox, oy = round(dx * scale), round(dy * scale)
    quad = [
        (p1[0] - ox, p1[1] - oy),
        (p1[0] + ox, p1[1] + oy),
        (p2[0] + ox, p2[1] + oy),
        (p2[0] - ox, p2[1] - oy),
    ]
    pygame.draw.polygon(surface, color, quad)
    for p in (p1, p2):
        pygame.draw.circle(surface, color, p, round(radius))


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, C) uint8 -> (size, size, C) uint8 by bilinear interpolation between pixel centres,
    in the 11-bit fixed point of OpenCV's ``resize(..., INTER_LINEAR)`` (within 1 level of it)."""
    h, w = image.shape[:2]

    def taps(n_src: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f = (np.arange(size) + 0.5) * (n_src / size) - 0.5
        i = np.floor(f).astype(np.int64)
        frac = f - i
        frac[i < 0], i[i < 0] = 0.0, 0
        last = i >= n_src - 1
        frac[last], i[last] = 1.0, n_src - 2  # all weight on the last pixel
        c = np.round(frac * 2048).astype(np.int64)
        return i, 2048 - c, c

    ry, wy0, wy1 = taps(h)
    rx, wx0, wx1 = taps(w)
    src = image.astype(np.int64)
    rows = src[ry] * wy0[:, None, None] + src[ry + 1] * wy1[:, None, None]  # (size, W, C)
    both = rows[:, rx] * wx0[None, :, None] + rows[:, rx + 1] * wx1[None, :, None]
    return ((both + (1 << 21)) >> 22).astype(np.uint8)
