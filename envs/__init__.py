"""2D Gymnasium tasks of dp-agent (PushT, TreeDetour, Maze2D) and their registration with Gymnasium.

Importing this package loads neither pymunk, shapely nor pygame: the environment classes load on
first use (``gym.make`` or attribute access).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium as gym

if TYPE_CHECKING:  # pragma: no cover
    from .maze2d import Maze2D
    from .pusht import PushT
    from .tree_detour import TreeDetour

__all__ = [
    "Maze2D",
    "PushT",
    "TreeDetour",
    "register_envs",
    "PUSHT_ID",
    "TREE_DETOUR_ID",
    "MAZE2D_ID",
    "MAZE2D_IDS",
]

PUSHT_ID = "dp_agent/PushT-v0"
TREE_DETOUR_ID = "dp_agent/TreeDetour-v0"
MAZE2D_ID = "dp_agent/Maze2D-v0"
# One id per layout, each with D4RL's step limit (maze2d-umaze/medium/large-v1: 300/600/800).
MAZE2D_IDS = {
    "umaze": "dp_agent/Maze2D-umaze-v0",
    "medium": "dp_agent/Maze2D-medium-v0",
    "large": "dp_agent/Maze2D-large-v0",
}
_MAZE2D_STEPS = {"umaze": 300, "medium": 600, "large": 800}


def register_envs() -> None:
    """Register ``dp_agent/PushT-v0`` (300 steps), ``dp_agent/TreeDetour-v0`` (200 steps, 20 s at
    10 Hz) and the mazes with Gymnasium. Calling it again does nothing.

    Mazes: ``dp_agent/Maze2D-v0`` takes ``maze="umaze" | "medium" | "large"`` (default umaze) and
    allows 800 steps, enough for every layout; ``dp_agent/Maze2D-umaze-v0``, ``-medium-v0`` and
    ``-large-v0`` fix the layout with 300, 600 and 800 steps. ``gym.make(...,
    max_episode_steps=N)`` overrides any of them."""
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
    if MAZE2D_ID not in gym.registry:
        gym.register(
            id=MAZE2D_ID,
            entry_point="dp_agent.envs.maze2d:Maze2D",
            max_episode_steps=max(_MAZE2D_STEPS.values()),
        )
    for maze, env_id in MAZE2D_IDS.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="dp_agent.envs.maze2d:Maze2D",
                max_episode_steps=_MAZE2D_STEPS[maze],
                kwargs={"maze": maze},
            )


def __getattr__(name: str) -> Any:
    if name == "PushT":
        from .pusht import PushT

        return PushT
    if name == "TreeDetour":
        from .tree_detour import TreeDetour

        return TreeDetour
    if name == "Maze2D":
        from .maze2d import Maze2D

        return Maze2D
    raise AttributeError(f"module 'dp_agent.envs' has no attribute {name!r}")
