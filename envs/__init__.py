"""2D Gymnasium tasks of dp-agent (PushT, TreeDetour) and their registration with Gymnasium.

Importing this package loads neither pymunk, shapely nor pygame: the environment classes load on
first use (``gym.make`` or attribute access).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium as gym

if TYPE_CHECKING:  # pragma: no cover
    from .pusht import PushT
    from .tree_detour import TreeDetour

__all__ = ["PushT", "TreeDetour", "register_envs", "PUSHT_ID", "TREE_DETOUR_ID"]

PUSHT_ID = "dp_agent/PushT-v0"
TREE_DETOUR_ID = "dp_agent/TreeDetour-v0"


def register_envs() -> None:
    """Register ``dp_agent/PushT-v0`` (300 steps) and ``dp_agent/TreeDetour-v0`` (200 steps, 20 s at
    10 Hz) with Gymnasium. Calling it again does nothing."""
    if PUSHT_ID not in gym.registry:
        gym.register(
            id=PUSHT_ID,
            entry_point="dp_agent.envs.pusht:PushT",
            max_episode_steps=300,
        )
    if TREE_DETOUR_ID not in gym.registry:
        gym.register(
            id=TREE_DETOUR_ID,
            entry_point="dp_agent.envs.tree_detour:TreeDetour",
            max_episode_steps=200,
        )


def __getattr__(name: str) -> Any:
    if name == "PushT":
        from .pusht import PushT

        return PushT
    if name == "TreeDetour":
        from .tree_detour import TreeDetour

        return TreeDetour
    raise AttributeError(f"module 'dp_agent.envs' has no attribute {name!r}")
