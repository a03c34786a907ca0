"""Still pictures of the denoising: sampled action trajectories drawn over a task frame, one panel
per denoising step, from pure noise to the final plans (used by the quickstart and the README)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def step_colour(frac: float) -> tuple[int, int, int]:
    """Noisy (purple) -> clean (orange/yellow), a viridis-like ramp without matplotlib."""
    stops = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]])
    x = np.clip(frac, 0, 1) * (len(stops) - 1)
    i = min(int(x), len(stops) - 2)
    return tuple(int(v) for v in stops[i] + (stops[i + 1] - stops[i]) * (x - i))


def denoising_strip(
    frame: np.ndarray,
    trajectory: np.ndarray,
    world_size: float,
    panels: int = 5,
    panel_size: int = 320,
) -> np.ndarray:
    """An image (panel_size, panels * panel_size, 3) uint8.

    frame: (H, W, 3) the task; trajectory: (K+1, N, Tp, 2) world (x, y) of every iterate.
    """
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    import pygame

    k = len(trajectory) - 1
    steps = np.unique(np.linspace(0, k, panels).round().astype(int))
    scale = panel_size / world_size
    base = pygame.transform.smoothscale(
        pygame.surfarray.make_surface(np.ascontiguousarray(frame.swapaxes(0, 1))),
        (panel_size, panel_size),
    )
    strip = pygame.Surface((panel_size * len(steps), panel_size))
    pygame.font.init()
    font = pygame.font.SysFont(None, 22)
    for p, step in enumerate(steps):
        panel = base.copy()
        colour = step_colour(step / max(k, 1))
        for path in trajectory[step]:
            pts = [(float(x) * scale, float(y) * scale) for x, y in path]
            pygame.draw.lines(panel, colour, False, pts, 2)
            for pt in pts[:1]:
                pygame.draw.circle(panel, colour, pt, 3)
        label = font.render(f"step {step}/{k}", True, (20, 20, 20))
        box = label.get_rect(topleft=(8, 6)).inflate(8, 4)
        pygame.draw.rect(panel, (255, 255, 255), box, border_radius=3)
        panel.blit(label, (8, 6))
        pygame.draw.rect(panel, (90, 90, 90), panel.get_rect(), 1)
        strip.blit(panel, (p * panel_size, 0))
    return pygame.surfarray.array3d(strip).swapaxes(0, 1).copy()


def save_png(image: np.ndarray, path: str | Path) -> Path:
    import pygame

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pygame.image.save(pygame.surfarray.make_surface(image.swapaxes(0, 1)), str(path))
    return path
