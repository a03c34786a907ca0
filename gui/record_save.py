"""Saving recorded episodes off the GUI thread: the save thread (``EpisodeSaver``) and the
Record tab's side of it (start a save, apply its result when it is done)."""

from __future__ import annotations

import concurrent.futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SaveResult:
    """What the save thread sends back: the file, the episode's name and its steps."""

    path: Path
    name: str
    steps: int


class EpisodeSaver:
    """Appends episodes to demo files in a thread of its own, one at a time and in order. Keeps
    the DemoWriter of the last file: making one validates the file (every episode's metadata),
    which is done once per file rather than once per save; ``forget`` makes the next save
    validate again (another tab changed the file)."""

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="record-save")
        self._writer = None  # a DemoWriter, used in the save thread only
        self._forget = False  # set by the GUI thread, read by the save thread

    def save(self, path: Path, env_args: dict, episode: dict[str, Any]) -> Future:
        """Append ``episode`` (obs, actions, rewards, dones, attrs) to ``path``; the Future's
        result is a SaveResult, once the episode is durable in the file."""
        return self._thread.submit(self._append, path, env_args, episode)

    def forget(self) -> None:
        self._forget = True

    def close(self) -> None:
        """Finish the saves handed in; none is taken after this."""
        self._thread.shutdown(wait=True)

    def _append(self, path: Path, env_args: dict, episode: dict[str, Any]) -> SaveResult:
        from dp_agent.data import DemoWriter

        if self._forget or self._writer is None or self._writer.path != path:
            self._forget = False
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = DemoWriter(path, env_args)
        try:
            name = self._writer.append_episode(**episode)
        except BaseException:
            self._writer = None  # the next save looks at the file afresh
            raise
        return SaveResult(path, name, len(episode["actions"]))


class RecordSavingMixin:
    """RecordPanel's saves (see ``record_panel``)."""

    # ------------------------------------------------------------------ saving
    def save_episode(self) -> Future | None:
        """Start appending the episode to the demo file in the save thread; returns the save's
        Future (its result a SaveResult), or None if nothing was started. The task view stays
        live meanwhile; when the save is done a new episode starts, or, if it failed, the error
        is shown and the episode is kept (save again, or choose another file)."""
        if self.state == "saving":
            self.message.emit("Still saving the last episode.")
            return None
        if self.task is None or not self._actions:
            self.message.emit("Nothing to save: record some steps first.")
            return None
        if self.path is None:
            self.show_error("Choose a demo file to record into first.")
            return None
        from dp_agent.data import stack_obs

        dones = np.asarray(self._dones, bool)
        dones[-1] = True
        episode = {
            "obs": stack_obs(self._obs, self.task.env_args["env_kwargs"].get("obs_type")),
            "actions": np.asarray(self._actions, np.float32),
            "rewards": np.asarray(self._rewards, np.float32),
            "dones": dones,
            "attrs": {
                "seed": -1 if self._seed is None else int(self._seed),
                "success": bool(self._info.get("is_success", False)),
                "source": "human",
                "input": "+".join(sorted(self.used_inputs)) or "none",
            },
        }
        self._state_before_save = "ended" if self.state == "ended" else "paused"
        self.state = "saving"
        self._update_labels(self._info)
        future = self._saver.save(self.path, dict(self.task.env_args), episode)
        self._saving = future
        future.add_done_callback(self._emit_save_done)
        return future

    def _emit_save_done(self, future: Future) -> None:
        """In the save thread: hand the finished save to the GUI thread (a queued signal)."""
        try:
            self._save_done.emit(future)
        except RuntimeError:  # the panel was deleted (the app closed): nothing left to update
            pass

    def _on_save_done(self, future: Future) -> None:
        if future is not self._saving:
            return  # already applied (wait_for_save)
        self._saving = None
        try:
            result: SaveResult = future.result()
        except Exception as exc:  # noqa: BLE001  (DemoError, OSError: shown, episode kept)
            self.state = self._state_before_save
            self._update_labels(self._info)
            self.show_error(f"Could not save the episode: {exc}")
            return
        self.show_error("")
        self.message.emit(f"Saved {result.name} ({result.steps} steps) to {result.path}")
        if self._episodes is not None and result.path == self.path:
            self._episodes += 1
            self._show_count()
        self.demos_changed.emit(str(result.path))
        self._new_episode()

    def wait_for_save(self) -> str | None:
        """Block until the save in progress, if any, is done and applied (before a task or file
        change, at shutdown, and for scripts); returns the name it saved, None if none or failed."""
        future = self._saving
        if future is None:
            return None
        concurrent.futures.wait([future])
        self._on_save_done(future)
        return None if future.exception() is not None else future.result().name

    @property
    def saving(self) -> bool:
        return self._saving is not None
