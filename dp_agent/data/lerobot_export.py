"""``dp-agent demos export-lerobot``: export_lerobot writes a demonstration file as a new LeRobot
v3.0 dataset folder (frame rows in parquet, each camera in one H.264 mp4, the meta files). It
writes only inside that folder: a camera's obs key, which becomes a folder name, is refused
(DemoError) when it holds ``/``, ``\\`` or NUL."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dp_agent.files import fsync_dir, fsync_path, temp_path_for

from .errors import DatasetError, DemoError
from .layout import Episode
from .lerobot_format import (
    CHUNKS_SIZE,
    DATA_FILES_SIZE_IN_MB,
    DATA_PATH,
    EPISODES_PATH,
    EXTRA_INSTALL,
    VIDEO_CODEC,
    VIDEO_CRF,
    VIDEO_FILES_SIZE_IN_MB,
    VIDEO_GOP,
    VIDEO_PATH,
    VIDEO_PIX_FMT,
    WRITE_VERSION,
    MissingExtraError,
    _inside,
    _Libs,
    _one_line,
    lerobot_libs,
)
from .reader import DemoReader

__all__ = ["export_lerobot"]

DEFAULT_FPS = 10
FRAME_FEATURES = {  # LeRobot's per-frame bookkeeping, then our rewards and dones
    "timestamp": "float32",
    "frame_index": "int64",
    "episode_index": "int64",
    "index": "int64",
    "task_index": "int64",
    "next.reward": "float32",
    "next.done": "bool",
}
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def _bad_obs(reader: DemoReader, key: str, what: str) -> DemoError:
    return DemoError(f"{reader.path}: obs/{key}: {what}")


def _camera_feature_key(reader: DemoReader, our_key: str) -> str:
    """observation.image or observation.images.<our_key>, a folder name of the videos."""
    if any(c in our_key for c in "/\\\0"):
        what = (
            f"expected a name for one folder of the dataset (no '/', '\\' or NUL), got {our_key!r}"
        )
        raise _bad_obs(reader, our_key, what)
    return "observation.image" if our_key == "image" else f"observation.images.{our_key}"


@dataclass(frozen=True)
class _ExportPlan:
    """How our parts become LeRobot features (``features`` is info.json's, in column order)."""

    state_parts: list[tuple[str, int]]  # our obs key, its width once flattened
    cameras: dict[str, str]  # LeRobot video key -> our obs key
    features: dict[str, dict[str, Any]]
    fps: int


def _video_feature(shape: tuple[int, ...], fps: int) -> dict[str, Any]:
    h, w, c = shape
    info = {
        "video.height": h,
        "video.width": w,
        "video.codec": "h264",
        "video.pix_fmt": VIDEO_PIX_FMT,
        "video.is_depth_map": False,
        "video.fps": fps,
        "video.channels": c,
        "has_audio": False,
    }
    return {
        "dtype": "video",
        "shape": [h, w, c],
        "names": ["height", "width", "channels"],
        "info": info,
    }


def _plan_export(reader: DemoReader, fps: int, with_success: bool) -> _ExportPlan:
    """Vector parts -> observation.state, (H, W, 3) uint8 parts -> videos, actions -> action."""
    state_parts, cameras = [], {}
    for key in reader.obs_keys:
        shape, dtype = reader.obs_shapes[key], reader.obs_dtypes[key]
        if dtype == np.uint8 and len(shape) == 3 and shape[2] == 3:
            if shape[0] % 2 or shape[1] % 2:
                what = f"libx264 with yuv420p needs an even height and width, got {shape}"
                raise _bad_obs(reader, key, what)
            cameras[_camera_feature_key(reader, key)] = key
        elif dtype == np.uint8 and len(shape) >= 2:
            what = f"expected (H, W, 3) uint8 images or vectors, got {shape} uint8"
            raise _bad_obs(reader, key, what)
        else:
            state_parts.append((key, int(np.prod(shape))))
    features: dict[str, dict[str, Any]] = {}
    if state_parts:
        names = [f"{key}[{i}]" for key, width in state_parts for i in range(width)]
        features["observation.state"] = {"dtype": "float32", "shape": [len(names)], "names": names}
    features["action"] = {
        "dtype": "float32",
        "shape": [reader.action_dim],
        "names": [f"action[{i}]" for i in range(reader.action_dim)],
    }
    for lerobot_key, key in cameras.items():
        features[lerobot_key] = _video_feature(reader.obs_shapes[key], fps)
    frame_features = {**FRAME_FEATURES, **({"next.success": "bool"} if with_success else {})}
    features |= {k: {"dtype": d, "shape": [1], "names": None} for k, d in frame_features.items()}
    return _ExportPlan(state_parts, cameras, features, fps)


class _RunningStats:
    """min, max, mean, std and count of one feature over all frames, as LeRobot's stats.json
    has them: per value for vectors, per channel for videos (shape (C, 1, 1), values in [0, 1])."""

    def __init__(self, camera: bool):
        self.camera = camera
        self.count = 0  # frames
        self.rows = 0  # values per column summed (frames, or frames x pixels for videos)
        self.sum = self.sum_sq = self.min = self.max = None

    def add(self, values: np.ndarray) -> None:
        """Values of some frames: (n, ...) for vectors and scalars, (n, H, W, C) for videos."""
        x = values.astype(np.float64)
        x = x.reshape(-1, x.shape[-1]) / 255.0 if self.camera else x.reshape(len(x), -1)
        parts = (x.sum(0), (x * x).sum(0), x.min(0), x.max(0))
        if self.sum is None:
            self.sum, self.sum_sq, self.min, self.max = parts
        else:
            self.sum, self.sum_sq = self.sum + parts[0], self.sum_sq + parts[1]
            self.min, self.max = np.minimum(self.min, parts[2]), np.maximum(self.max, parts[3])
        self.count += len(values)
        self.rows += len(x)

    def result(self) -> dict[str, list]:
        mean = self.sum / self.rows
        std = np.sqrt(np.maximum(self.sum_sq / self.rows - mean**2, 0.0))
        shape = (-1, 1, 1) if self.camera else (-1,)
        stats = {"min": self.min, "max": self.max, "mean": mean, "std": std}
        return {k: v.reshape(shape).tolist() for k, v in stats.items()} | {"count": [self.count]}


class _VideoWriter:
    """One camera's mp4 file: H.264 frames at ``fps``, each episode's after the last one's."""

    def __init__(self, libs: _Libs, path: Path, shape: tuple[int, ...], fps: int):
        self.libs = libs
        self.frames = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self.container = libs.av.open(str(path), "w")
        try:
            options = {"g": str(VIDEO_GOP), "crf": str(VIDEO_CRF)}
            self.stream = self.container.add_stream(VIDEO_CODEC, rate=fps, options=options)
        except (libs.av.error.FFmpegError, ValueError, KeyError) as exc:
            self.container.close()
            raise MissingExtraError(
                f"this PyAV has no {VIDEO_CODEC} encoder ({_one_line(exc)}); PyPI's av wheels "
                f"have it: {EXTRA_INSTALL}"
            ) from exc
        self.stream.height, self.stream.width = shape[0], shape[1]
        self.stream.pix_fmt = VIDEO_PIX_FMT

    def add(self, images: np.ndarray) -> None:
        """Append (T, H, W, 3) uint8 frames; frame n is shown at n / fps seconds."""
        for image in images:
            frame = self.libs.av.VideoFrame.from_ndarray(
                np.ascontiguousarray(image), format="rgb24"
            )
            frame.pts = self.frames
            self.frames += 1
            self.container.mux(self.stream.encode(frame))

    def close(self, flush: bool = True) -> None:
        if self.container is None:
            return
        try:
            if flush:
                self.container.mux(self.stream.encode())
        finally:
            self.container.close()
            self.container = None


def _frame_schema(libs: _Libs, features: dict[str, dict[str, Any]]) -> Any:
    """The arrow schema of the frame rows: a scalar per (1,) feature, a fixed-size list per vector
    (what LeRobot's datasets.Features make of info.json); videos are not in the rows."""
    fields = []
    for key, feature in features.items():
        if feature["dtype"] == "video":
            continue
        value = libs.pa.from_numpy_dtype(np.dtype(feature["dtype"]))
        shape = feature["shape"]
        fields.append((key, value if shape == [1] else libs.pa.list_(value, shape[0])))
    return libs.pa.schema(fields)


class _DatasetWriter:
    """Writes a v3.0 dataset into an empty folder, episode by episode: frame rows into one data
    parquet file, each camera into one mp4 file (episodes one after the other); ``finish`` adds
    meta/info.json, the episodes table, tasks.parquet, stats.json and a dataset card."""

    def __init__(self, libs: _Libs, root: Path, plan: _ExportPlan):
        self.libs, self.root, self.plan = libs, root, plan
        self.tasks: dict[str, int] = {}
        self.episode_rows: list[dict[str, Any]] = []
        self.frames = 0
        self.stats = {k: _RunningStats(f["dtype"] == "video") for k, f in plan.features.items()}
        self.schema = _frame_schema(libs, plan.features)
        data_path = root / DATA_PATH.format(chunk_index=0, file_index=0)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        self._data = libs.pq.ParquetWriter(data_path, self.schema, compression="snappy")
        self._videos: dict[str, _VideoWriter] = {}
        for key in plan.cameras:
            relative = VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)
            path = _inside(root, relative, f"{root}: the video of {key}")
            self._videos[key] = _VideoWriter(libs, path, plan.features[key]["shape"], plan.fps)

    def __enter__(self) -> _DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(flush=False)

    def close(self, flush: bool = True) -> None:
        if self._data is not None:
            self._data.close()
            self._data = None
        for video in self._videos.values():
            video.close(flush)

    def _frame_columns(self, ep: Episode, task_index: int) -> dict[str, np.ndarray]:
        T, frame_index = len(ep), np.arange(len(ep), dtype=np.int64)
        columns = {}
        if self.plan.state_parts:
            parts = [ep.obs[k].reshape(T, -1).astype(np.float32) for k, _ in self.plan.state_parts]
            columns["observation.state"] = np.concatenate(parts, axis=1)
        columns["action"] = ep.actions.astype(np.float32)
        columns |= {
            "timestamp": (frame_index / self.plan.fps).astype(np.float32),
            "frame_index": frame_index,
            "episode_index": np.full(T, len(self.episode_rows), np.int64),
            "index": self.frames + frame_index,
            "task_index": np.full(T, task_index, np.int64),
            "next.reward": ep.rewards.astype(np.float32),
            "next.done": ep.dones.astype(bool),
        }
        if "next.success" in self.plan.features:
            columns["next.success"] = (frame_index == T - 1) & bool(ep.attrs.get("success"))
        return columns

    def _table(self, columns: dict[str, np.ndarray]) -> Any:
        pa = self.libs.pa
        arrays = []
        for field in self.schema:
            values = columns[field.name]
            if pa.types.is_fixed_size_list(field.type):
                flat = pa.array(values.ravel(), type=field.type.value_type)
                arrays.append(pa.FixedSizeListArray.from_arrays(flat, field.type.list_size))
            else:  # a (1,) feature, e.g. a 1-D action: one value per frame
                arrays.append(pa.array(values.ravel(), type=field.type))
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def add(self, ep: Episode, task: str) -> None:
        """Append one episode (its frames, videos and its row of the episodes table)."""
        T, fps = len(ep), self.plan.fps
        columns = self._frame_columns(ep, self.tasks.setdefault(task, len(self.tasks)))
        self._data.write_table(self._table(columns))
        row = {
            "episode_index": len(self.episode_rows),
            "tasks": [task],
            "length": T,
            "data/chunk_index": 0,
            "data/file_index": 0,
            "dataset_from_index": self.frames,
            "dataset_to_index": self.frames + T,
        }
        for key, ours in self.plan.cameras.items():
            self._videos[key].add(ep.obs[ours])
            columns[key] = ep.obs[ours]
            row |= {f"videos/{key}/chunk_index": 0, f"videos/{key}/file_index": 0}
            row[f"videos/{key}/from_timestamp"] = self.frames / fps
            row[f"videos/{key}/to_timestamp"] = (self.frames + T) / fps
        for key, values in columns.items():
            self.stats[key].add(values)
        self.episode_rows.append(
            row | {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
        )
        self.frames += T

    def finish(self, repo_id: str, source: Path) -> None:
        """Close the data and video files, then write the meta files."""
        self.close()
        pa, pq, meta = self.libs.pa, self.libs.pq, self.root / "meta"
        meta.mkdir(exist_ok=True)
        info = {
            "codebase_version": WRITE_VERSION,
            "robot_type": None,
            "total_episodes": len(self.episode_rows),
            "total_frames": self.frames,
            "total_tasks": len(self.tasks),
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB,
            "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB,
            "fps": self.plan.fps,
            "splits": {"train": f"0:{len(self.episode_rows)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if self.plan.cameras else None,
            "features": self.plan.features,
        }
        (meta / "info.json").write_text(json.dumps(info, indent=4) + "\n", encoding="utf-8")
        stats = {k: s.result() for k, s in self.stats.items()}
        (meta / "stats.json").write_text(json.dumps(stats, indent=4) + "\n", encoding="utf-8")
        pq.write_table(_tasks_table(self.libs, self.tasks), meta / "tasks.parquet")
        episodes = meta / EPISODES_PATH.removeprefix("meta/")
        episodes.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(self.episode_rows), episodes)
        card = _dataset_card(repo_id, source, info)
        (self.root / "README.md").write_text(card, encoding="utf-8")


def _tasks_table(libs: _Libs, tasks: dict[str, int]) -> Any:
    """meta/tasks.parquet as pandas writes LeRobot's: task_index, indexed by the task strings."""
    pa = libs.pa
    table = pa.table(
        {
            "task_index": pa.array(list(tasks.values()), pa.int64()),
            "__index_level_0__": pa.array(list(tasks), pa.string()),
        }
    )
    columns = [
        {"name": "task_index", "field_name": "task_index", "pandas_type": "int64"},
        {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode"},
    ]
    for column, numpy_type in zip(columns, ("int64", "object"), strict=True):
        column |= {"numpy_type": numpy_type, "metadata": None}
    pandas = {"index_columns": ["__index_level_0__"], "column_indexes": [], "columns": columns}
    return table.replace_schema_metadata({"pandas": json.dumps(pandas)})


def _dataset_card(repo_id: str, source: Path, info: dict[str, Any]) -> str:
    """README.md in the shape of LeRobot's dataset cards (front matter, then how to load it)."""
    return (
        "---\ntask_categories:\n- robotics\ntags:\n- LeRobot\n- dp-agent\n"
        "configs:\n- config_name: default\n  data_files: data/*/*.parquet\n---\n\n"
        f"# {repo_id}\n\n"
        f"Exported by dp-agent from `{source.name}`: {info['total_episodes']} episodes, "
        f"{info['total_frames']} frames at {info['fps']} fps (LeRobot {WRITE_VERSION} layout; "
        f"videos {VIDEO_CODEC} {VIDEO_PIX_FMT} crf {VIDEO_CRF}).\n\n"
        "```python\nfrom lerobot.datasets.lerobot_dataset import LeRobotDataset\n\n"
        f'dataset = LeRobotDataset("{repo_id}", root="path/to/this/folder")\n```\n'
    )


@contextmanager
def _new_folder(root: Path, force: bool) -> Iterator[Path]:
    """A private temporary folder next to ``root``, renamed to ``root`` (every file fsynced
    first) when the block exits normally, removed on an exception; so ``root`` appears whole.
    An existing ``root`` is refused unless ``force``, then replaced."""
    if root.exists() and not force:
        raise DatasetError(f"{root}: exists; pass --force to replace it")
    if root.exists() and not root.is_dir():
        raise DatasetError(
            f"{root}: exists and is not a folder; expected a dataset folder to replace"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(root)
    old = tmp.with_suffix(".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        for path in tmp.rglob("*"):
            if path.is_file():
                fsync_path(path)
        if root.exists():
            os.replace(root, old)
        os.replace(tmp, root)
        fsync_dir(root.parent)
        if old.is_symlink():  # ROOT was a link: remove the link, not the folder it points to
            old.unlink()
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export_lerobot(
    reader: DemoReader,
    root: str | os.PathLike,
    fps: int | None = None,
    repo_id: str | None = None,
    force: bool = False,
    progress: Any = None,
) -> dict[str, Any]:
    """Write every episode of ``reader`` as a LeRobot v3.0 dataset in the new folder ``root``.
    ``fps`` defaults to the one import-lerobot recorded, else 10; ``repo_id`` to
    ``local/<folder name>``. Returns a summary (episodes, frames, fps, videos, repo_id)."""
    libs = lerobot_libs()
    root = Path(root)
    repo_id = repo_id or f"local/{root.resolve().name}"
    if not _REPO_ID.match(repo_id):
        raise DemoError(f"--repo-id: expected owner/name (e.g. local/pusht), got {repo_id!r}")
    if fps is not None and fps < 1:
        raise DemoError(f"--fps: expected a positive number of frames per second, got {fps}")
    if reader.num_episodes == 0:
        raise DemoError(f"{reader.path}: data: no episodes to export")
    episodes = iter(reader)
    first = next(episodes)
    fps = fps or int(round(float(first.attrs.get("fps") or DEFAULT_FPS)))
    with_success = all(row["success"] is not None for row in reader.summary())
    plan = _plan_export(reader, fps, with_success)
    with _new_folder(root, force) as tmp, _DatasetWriter(libs, tmp, plan) as writer:
        for n, ep in enumerate(itertools.chain([first], episodes), 1):
            writer.add(ep, str(ep.attrs.get("task") or reader.env_id))
            if progress is not None:
                progress.update(n, frames=writer.frames)
        writer.finish(repo_id, reader.path)
    summary = {"path": str(root), "episodes": len(writer.episode_rows), "frames": writer.frames}
    return summary | {"fps": fps, "videos": list(plan.cameras), "repo_id": repo_id}
