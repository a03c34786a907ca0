"""The files that ship inside the package: demonstrations and pretrained policies per task."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# Gymnasium id -> short name of the shipped files: tree_detour.hdf5,
# pretrained/tree_detour.safetensors
SHIPPED_TASKS: dict[str, str] = {
    "dp_agent/TreeDetour-v0": "tree_detour",
    "dp_agent/PushT-v0": "pusht",
}


def package_dir() -> Path:
    return Path(str(resources.files("dp_agent.demos")))


def shipped_demos(env_id: str) -> Path | None:
    """The shipped demonstration file for a task, or None."""
    name = SHIPPED_TASKS.get(env_id)
    path = package_dir() / f"{name}.hdf5" if name else None
    return path if path is not None and path.is_file() else None


def shipped_policy(env_id: str) -> Path | None:
    """The shipped pretrained checkpoint for a task, or None."""
    name = SHIPPED_TASKS.get(env_id)
    path = package_dir() / "pretrained" / f"{name}.safetensors" if name else None
    return path if path is not None and path.is_file() else None
