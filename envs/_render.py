"""Drawing for the 2D tasks: a supersampled off-screen pygame canvas in world units, and the window.

pygame is imported on first use, so importing the environments never touches it; nothing here
needs a display (drawing goes to a plain ``pygame.Surface``; only ``HumanWindow`` opens one).
"""

from __future__ import annotations

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
    """The reference renderer's fill colour: each channel times ``factor``, capped at 255."""
    return tuple(min(255, int(c * factor)) for c in color)  # type: ignore[return-value]


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
