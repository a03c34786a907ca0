"""The files that ship inside the package: demonstrations and pretrained policies (or planners)
per task, looked up by the task's Gymnasium id; a task whose files are not there yet has none."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# Gymnasium id -> short name of the shipped files: tree_detour.hdf5,
# pretrained/tree_detour.safetensors (for Maze2D a trajectory planner: maze2d_umaze.safetensors)
SHIPPED_TASKS: dict[str, str] = {
    "dp_agent/TreeDetour-v0": "tree_detour",
    "dp_agent/PushT-v0": "pusht",
    "dp_agent/Maze2D-umaze-v0": "maze2d_umaze",
    "dp_agent/Maze2D-medium-v0": "maze2d_medium",
    "dp_agent/Maze2D-large-v0": "maze2d_large",
}


def package_dir() -> Path:
    return Path(str(resources.files("dp_agent.demos")))


def shipped_demos(env_id: str) -> Path | None:
    """The shipped demonstration file for a task, or None."""
    name = SHIPPED_TASKS.get(env_id)
    path = package_dir() / f"{name}.hdf5" if name else None
    return path if path is not None and path.is_file() else None


def shipped_policy(env_id: str) -> Path | None:
    """The shipped pretrained checkpoint (a policy, or a planner) for a task, or None."""
    name = SHIPPED_TASKS.get(env_id)
    path = package_dir() / "pretrained" / f"{name}.safetensors" if name else None
    return path if path is not None and path.is_file() else None
