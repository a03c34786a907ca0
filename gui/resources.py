"""Where the app finds the shipped files (demos, pretrained policies) and keeps the user's own.

The user's files live under ``$DP_AGENT_HOME`` (default ``~/.dp_agent``); the shipped files in the
``dp_agent.data`` package are only ever read.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from dp_agent.data.shipped import SHIPPED_TASKS, package_dir, shipped_demos, shipped_policy
from dp_agent.files import write_text_atomic

__all__ = [
    "DEFAULT_TASK",
    "SHIPPED_TASKS",
    "app_home",
    "is_shipped",
    "is_users",
    "load_settings",
    "new_run_dir",
    "package_dir",
    "save_settings",
    "shipped_demos",
    "shipped_policy",
    "task_name",
    "user_demo_path",
]

DEFAULT_TASK = "dp_agent/TreeDetour-v0"


def app_home() -> Path:
    """The folder for the user's demos, runs and settings (``$DP_AGENT_HOME`` or ~/.dp_agent)."""
    return Path(os.environ.get("DP_AGENT_HOME", "~/.dp_agent")).expanduser()


def task_name(env_id: str) -> str:
    """A short file-name-safe name for a task: 'tree_detour' for dp_agent/TreeDetour-v0."""
    if env_id in SHIPPED_TASKS:
        return SHIPPED_TASKS[env_id]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", env_id).strip("_") or "task"


def _inside(path: str | os.PathLike, folder) -> bool:
    try:
        Path(path).expanduser().resolve().relative_to(folder().resolve())
    except (ValueError, ModuleNotFoundError, TypeError):
        return False
    return True


def is_shipped(path: str | os.PathLike) -> bool:
    """True when ``path`` lies inside the installed ``dp_agent.data`` package (read-only data)."""
    return _inside(path, package_dir)


def is_users(path: str | os.PathLike) -> bool:
    """True when ``path`` lies in the user's own folder (``app_home()``)."""
    return _inside(path, app_home)


def user_demo_path(env_id: str, obs_type: str | None = None) -> Path:
    """Default file that recordings of ``env_id`` are appended to; one per observation type
    other than the env's default (a file holds one kind of observation)."""
    suffix = f"_{obs_type}" if obs_type and obs_type != "state" else ""
    return app_home() / "demos" / f"{task_name(env_id)}{suffix}.hdf5"


def new_run_dir(env_id: str) -> Path:
    """A fresh output folder for a training run: ~/.dp_agent/runs/<task>-<YYYYmmdd-HHMMSS>."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return app_home() / "runs" / f"{task_name(env_id)}-{stamp}"


def _settings_path() -> Path:
    return app_home() / "gui.json"


def load_settings() -> dict[str, Any]:
    """The app's remembered choices (last task, files); {} on first start or if unreadable."""
    try:
        data = json.loads(_settings_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_settings(settings: dict[str, Any]) -> None:
    """Write the settings crash-safely (``write_text_atomic``: a kill or power loss leaves the old
    file or the new one); a failure (read-only home, full disk) is ignored."""
    try:
        write_text_atomic(_settings_path(), json.dumps(settings, indent=2))
    except OSError:
        pass
