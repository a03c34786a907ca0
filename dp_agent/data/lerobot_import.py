"""``dp-agent demos import-lerobot``: LeRobotSource reads a LeRobot dataset folder (v2.0, v2.1 or
v3.0) as our Episodes, decoding frame rows and video frames as they are needed. It reads only files
inside the folder; a bad folder raises DatasetError (a DemoError) naming the file and the field."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from dp_agent.files import atomic_path

from .errors import DatasetError
from .layout import GYM_ENV_TYPE, Episode
from .lerobot_format import _bad, _Libs, _one_line, lerobot_libs
from .lerobot_meta import (
    _EpisodeRef,
    _episodes_v2,
    _episodes_v3,
    _plan_import,
    _read_parquet,
    read_info,
)
from .writer import DemoWriter

__all__ = ["DatasetError", "LeRobotSource"]


# ----------------------------------------------------------------------------------------------
# Reading: frame rows and video frames


def _frame_array(libs: _Libs, path: Path, table: Any, key: str, shape: Sequence[int]) -> np.ndarray:
    """Column ``key`` of some frame rows as an (n, *shape) array, checked against info.json."""
    if key not in table.column_names:
        raise _bad(path, f"column {key}", "missing; meta/info.json lists this feature")
    column = table.column(key).combine_chunks()
    if column.null_count:
        raise _bad(path, f"column {key}", "has empty (null) values")
    types = libs.pa.types
    n, per_frame, size = len(column), (), int(np.prod(shape))
    while (
        types.is_list(column.type)
        or types.is_large_list(column.type)
        or (types.is_fixed_size_list(column.type))
    ):  # a vector (or nested lists): one list per frame
        lengths = libs.pc.list_value_length(column).to_numpy(zero_copy_only=False)
        if len(lengths) and (lengths != lengths[0]).any():
            raise _bad(path, f"column {key}", "rows of different lengths")
        per_frame += (int(lengths[0]) if len(lengths) else 0,)
        column = column.flatten()
    values = column.to_numpy(zero_copy_only=False)
    if int(np.prod(per_frame)) != size or len(values) != n * size:
        raise _bad(
            path,
            f"column {key}",
            f"expected {tuple(shape)} per frame as meta/info.json says, got {per_frame or (1,)}",
        )
    return values.reshape(n, *shape)


def _finite_frames(
    libs: _Libs, path: Path, table: Any, key: str, shape: Sequence[int]
) -> np.ndarray:
    """A numeric column as float32 (n, *shape), as we store them; NaN or inf is bad input."""
    values = _frame_array(libs, path, table, key, shape).astype(np.float32)
    bad = np.argwhere(~np.isfinite(values.reshape(len(values), -1)))
    if len(bad):
        frame, column = bad[0]
        found = values.reshape(len(values), -1)[frame, column]
        raise _bad(path, f"column {key}", f"expected finite values, found {found} at frame {frame}")
    return values


class _DataFiles:
    """Frame rows of the data parquet files; one file is kept in memory at a time, which reads
    each file once when the episodes come in file order (they do in LeRobot's datasets)."""

    def __init__(self, libs: _Libs):
        self.libs = libs
        self._path: Path | None = None
        self._table: Any = None
        self._episode_of_row: np.ndarray | None = None

    def rows(self, ref: _EpisodeRef) -> Any:
        """The table of episode ``ref``'s frames, in frame_index order (checked: 0 .. length-1)."""
        path = ref.data_file
        if path != self._path:
            table = _read_parquet(self.libs, path, "frame rows")
            episode_index = _frame_array(self.libs, path, table, "episode_index", [1])
            self._path, self._table, self._episode_of_row = path, table, episode_index[:, 0]
        rows = np.flatnonzero(self._episode_of_row == ref.index)
        if len(rows) != ref.length:
            raise _bad(
                path,
                f"episode_index {ref.index}",
                f"expected {ref.length} frame rows (its length in the episodes), found {len(rows)}",
            )
        table = self._table.take(rows)
        if "frame_index" in table.column_names:
            frame_index = _frame_array(self.libs, path, table, "frame_index", [1])[:, 0]
            order = np.argsort(frame_index, kind="stable")
            if (frame_index[order] != np.arange(ref.length)).any():
                raise _bad(
                    path, f"episode_index {ref.index}: frame_index", "expected 0, 1, ... length-1"
                )
            table = table.take(order)
        return table


class _VideoFrames:
    """Decoded frames of one camera, read forward through its mp4 files: the frame nearest each
    asked-for time (within a quarter frame), reopening a file only to go back in it."""

    def __init__(self, libs: _Libs, key: str, shape: tuple[int, int, int], fps: float):
        self.libs, self.key, self.shape = libs, key, shape
        self.tolerance = 0.25 / fps
        self._path: Path | None = None
        self._container: Any = None
        self._frames: Iterator[Any] | None = None
        self._pending: Any = None  # the next decoded frame, not yet used
        self._last_time = float("-inf")

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = self._frames = self._pending = None

    def _open(self, path: Path) -> None:
        self.close()
        if not path.is_file():
            raise DatasetError(f"{path}: file not found; expected the video of {self.key}")
        self._path, self._last_time = path, float("-inf")
        with self._errors():
            self._container = self.libs.av.open(str(path))
            self._frames = self._container.decode(self._container.streams.video[0])

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (self.libs.av.error.FFmpegError, OSError, IndexError) as exc:
            raise DatasetError(
                f"{self._path}: damaged or unreadable video ({_one_line(exc)})"
            ) from exc

    def _next_frame(self) -> Any:
        if self._pending is None:
            with self._errors():
                self._pending = next(self._frames, None)
        return self._pending

    def _time(self, frame: Any) -> float:
        if frame.time is None:
            raise _bad(self._path, self.key, "a frame without a timestamp (pts)")
        return float(frame.time)

    def _frame_at(self, t: float) -> np.ndarray:
        """The decoded frame within the tolerance of ``t``, skipping earlier ones."""
        while (frame := self._next_frame()) is not None and self._time(frame) < t - self.tolerance:
            self._pending = None
        if frame is None or self._time(frame) > t + self.tolerance:
            found = "the video ends" if frame is None else f"the next is at {frame.time:.4f} s"
            raise _bad(self._path, self.key, f"no frame at {t:.4f} s ({found})")
        self._last_time = self._time(frame)
        with self._errors():
            return frame.to_ndarray(format="rgb24")

    def at(self, path: Path, times: np.ndarray) -> np.ndarray:
        """(len(times), H, W, C) uint8 frames of ``path`` at ``times`` (seconds, increasing)."""
        if path != self._path or self._container is None or times[0] < self._last_time:
            self._open(path)
        frames = np.stack([self._frame_at(float(t)) for t in times])
        return _checked_frames(path, self.key, frames, self.shape)


def _checked_frames(path: Path, key: str, frames: np.ndarray, shape: tuple) -> np.ndarray:
    if frames.shape[1:] != tuple(shape):
        what = f"expected frames {tuple(shape)} as meta/info.json says, got {frames.shape[1:]}"
        raise _bad(path, key, what)
    return frames


def _png_frames(libs: _Libs, path: Path, table: Any, key: str, shape: tuple) -> np.ndarray:
    """An ``image`` feature: PNG (or JPEG) bytes in the parquet rows, decoded to (n, H, W, C)."""
    frames = []
    for row, cell in enumerate(table.column(key).to_pylist()):
        data = cell.get("bytes") if isinstance(cell, dict) else None
        if not data:
            raise _bad(path, f"column {key} row {row}", "expected the image's bytes")
        try:
            with libs.av.open(io.BytesIO(data)) as container:
                frames.append(next(container.decode(video=0)).to_ndarray(format="rgb24"))
        except (libs.av.error.FFmpegError, OSError, StopIteration) as exc:
            raise _bad(
                path, f"column {key} row {row}", f"not a readable image ({_one_line(exc)})"
            ) from exc
    return _checked_frames(path, key, np.stack(frames), shape)


# ----------------------------------------------------------------------------------------------
# Reading: a whole dataset


class LeRobotSource:
    """A LeRobotDataset folder opened for import: ``meta/info.json`` and the episodes table are
    read and checked here; ``episodes()`` then yields our Episodes one by one (frames decoded as
    they are needed). ``state_keys``/``image_keys``/``action_key`` choose the LeRobot features."""

    def __init__(
        self,
        root: str | os.PathLike,
        state_keys: Sequence[str] | None = None,
        image_keys: Sequence[str] | None = None,
        action_key: str = "action",
    ):
        self.libs = lerobot_libs()
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: not a folder; expected a LeRobot dataset folder")
        self.info = read_info(self.root)
        self.version: str = self.info["codebase_version"]
        self.fps: float = self.info["fps"]
        features = self.info["features"]
        self.plan = _plan_import(
            self.root / "meta" / "info.json", features, state_keys, image_keys, action_key
        )
        video_keys = [k for k in self.plan.cameras if features[k]["dtype"] == "video"]
        if self.version == "v3.0":
            refs = _episodes_v3(self.libs, self.root, self.info, video_keys)
        else:
            refs = _episodes_v2(self.root, self.info, video_keys)
        self.refs = sorted(refs, key=lambda r: r.index)
        if not self.refs:
            raise DatasetError(f"{self.root}: no episodes in the episodes table")

    @property
    def num_episodes(self) -> int:
        return len(self.refs)

    @property
    def obs_keys(self) -> list[str]:
        """Our obs keys, in the order they are made."""
        vectors = [p for parts in self.plan.vectors.values() for p, _ in parts]
        return vectors + [k for k, _ in self.plan.cameras.values()]

    def episodes(self) -> Iterator[Episode]:
        """Our episodes, in episode_index order."""
        data = _DataFiles(self.libs)
        videos = {
            k: _VideoFrames(self.libs, k, shape, self.fps)
            for k, (_, shape) in self.plan.cameras.items()
            if self.info["features"][k]["dtype"] == "video"
        }
        try:
            for ref in self.refs:
                yield self._episode(ref, data.rows(ref), videos)
        finally:
            for video in videos.values():
                video.close()

    def _episode(self, ref: _EpisodeRef, rows: Any, videos: dict[str, _VideoFrames]) -> Episode:
        """Episode ``ref`` from its frame ``rows`` and its spans of the ``videos``."""
        libs, path, plan, T = self.libs, ref.data_file, self.plan, ref.length
        obs = {}
        for key, parts in plan.vectors.items():
            values = _finite_frames(libs, path, rows, key, self.info["features"][key]["shape"])
            obs |= {part: values[:, columns] for part, columns in parts}
        if "timestamp" in rows.column_names:
            times = _frame_array(libs, path, rows, "timestamp", [1])[:, 0].astype(np.float64)
        else:
            times = np.arange(T) / self.fps
        for key, (ours, shape) in plan.cameras.items():
            if key in videos:
                video_file, start = ref.videos[key]
                obs[ours] = videos[key].at(video_file, start + times)
            else:
                obs[ours] = _png_frames(libs, path, rows, key, shape)
        extra = {k: _finite_frames(libs, path, rows, k, [1])[:, 0] for k in plan.has}
        attrs: dict[str, Any] = {"source": "lerobot", "lerobot_episode_index": ref.index}
        attrs["fps"] = self.fps
        if ref.tasks:
            attrs["task"] = ref.tasks[0]
        if "next.success" in extra:
            attrs["success"] = bool(extra["next.success"].any())
        return Episode(
            name="",
            obs=obs,
            actions=_finite_frames(libs, path, rows, plan.action, plan.action_shape).reshape(T, -1),
            rewards=extra.get("next.reward", np.zeros(T, np.float32)),
            dones=extra["next.done"] > 0 if "next.done" in extra else np.arange(T) == T - 1,
            attrs=attrs,
        )

    def write_demos(
        self, out: str | os.PathLike, env_id: str | None, progress: Any
    ) -> dict[str, Any]:
        """Write every episode to the demonstration file ``out`` (whole or not at all); returns a
        summary (path, episodes, steps). ``env_id`` (default ``lerobot/<folder name>``) becomes
        the file's env_name."""
        env_name = env_id or f"lerobot/{self.root.resolve().name}"
        env_args = {"env_name": env_name, "type": GYM_ENV_TYPE, "env_kwargs": {}}
        counted = [0, 0]

        def counting() -> Iterator[Episode]:
            for ep in self.episodes():
                yield ep
                counted[0] += 1
                counted[1] += len(ep)
                progress.update(counted[0], steps=counted[1])

        with atomic_path(out) as tmp:  # OUT appears whole or not at all
            DemoWriter(tmp, env_args).append_episodes(counting())
        return {"path": str(out), "episodes": counted[0], "steps": counted[1]}
