"""Input checks shared by the 2D tasks: one clear message naming the field and what was expected."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_state_vector(value: Any, size: int, where: str, names: str) -> np.ndarray:
    """``value`` as a (size,) float64 vector of finite numbers, or a ValueError saying what was
    expected (``where`` names the argument, ``names`` the layout)."""
    try:
        state = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        state = None
    if state is None or state.shape != (size,) or not np.all(np.isfinite(state)):
        raise ValueError(f"{where}: expected {size} finite numbers {names}, got {value!r}")
    return state
