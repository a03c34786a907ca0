"""What the point-mass tasks (TreeDetour, Maze2D) share: the agent's and the goal's state read
as copies, with one clear message before the first reset."""

from __future__ import annotations

import numpy as np


class PointMassState:
    """Mixin over ``_pos``, ``_vel`` and ``_goal`` (lists of two floats; ``_pos`` is None until
    ``reset``)."""

    _pos: list[float] | None
    _vel: list[float]
    _goal: list[float]

    @property
    def agent_position(self) -> np.ndarray:
        """Agent centre (2,) float64, world units."""
        if self._pos is None:
            raise RuntimeError(f"{type(self).__name__}: call reset() before using the environment")
        return np.array(self._pos, dtype=np.float64)

    @property
    def agent_velocity(self) -> np.ndarray:
        """Agent velocity (2,) float64, world units per second."""
        return np.array(self._vel, dtype=np.float64)

    @property
    def goal_position(self) -> np.ndarray:
        """Goal centre (2,) float64."""
        return np.array(self._goal, dtype=np.float64)
