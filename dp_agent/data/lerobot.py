"""LeRobot datasets in and out: ``dp-agent demos import-lerobot`` and ``export-lerobot``.

A LeRobotDataset is a folder: ``meta/info.json`` (codebase_version, fps, features with dtype, shape
and names, the data_path and video_path templates), an episodes table, frame rows in parquet files
and one mp4 file per camera holding many episodes one after the other. Reading takes the layout of
v3.0 (``meta/episodes/chunk-*/file-*.parquet``, ``data/chunk-*/file-*.parquet``,
``videos/<key>/chunk-*/file-*.mp4``, an episode's frames at its [from_timestamp, to_timestamp) span)
and of v2.0/v2.1 (``meta/episodes.jsonl``, one parquet and one mp4 per episode). Writing makes v3.0.

Key mapping, LeRobot -> ours: ``observation.state`` -> ``obs/state`` (split back into its parts when
every name is ``<part>[i]``, as our export writes them), ``observation.image`` -> ``obs/image``,
``observation.images.<cam>`` -> ``obs/<cam>``, any other ``observation.<name>`` -> ``obs/<name>``
(``.`` -> ``_``), ``action`` -> ``actions``, ``next.reward`` -> ``rewards`` and ``next.done`` ->
``dones`` (zeros and a done at each episode's last step when absent), ``next.success`` -> the
episode's ``success``; the episode's first task string, its LeRobot episode_index and the fps go
into the episode's attributes. Ours -> LeRobot is the inverse: every vector part is flattened and
concatenated (in key order) into ``observation.state`` with names ``<part>[i]``; a uint8 (H, W, 3)
part named ``image`` becomes ``observation.image``, any other one ``observation.images.<key>``.

Videos are H.264 (libx264, yuv420p, crf 18, a keyframe every 2 frames), so images come back with
a small loss: chroma is stored at half resolution, YUV is rounded both ways and the codec
quantises. Mean absolute error per 8-bit value: about 0.5 on PushT's 96x96 frames, about 1.7 on
smooth 32x32 gradients (1.3 of it without any codec), more on fine colour detail.

Needs pyarrow and av, the optional ``[lerobot]`` extra; without them every command raises
MissingExtraError naming the extra. Bad input raises DemoError naming the file and the field.
"""

from __future__ import annotations

import importlib
import io
import itertools
import json
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dp_agent.files import atomic_path, fsync_dir, fsync_path, temp_path_for

from .store import GYM_ENV_TYPE, DemoError, DemoReader, DemoWriter, Episode

__all__ = [
    "EXTRA_INSTALL",
    "LeRobotSource",
    "MissingExtraError",
    "export_lerobot",
    "lerobot_libs",
]

EXTRA_INSTALL = 'pip install "dp-agent[lerobot]"'
READ_VERSIONS = ("v2.0", "v2.1", "v3.0")
WRITE_VERSION = "v3.0"
CHUNKS_SIZE = 1000  # LeRobot's defaults, recorded in info.json
DATA_FILES_SIZE_IN_MB, VIDEO_FILES_SIZE_IN_MB = 100, 200
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
VIDEO_CODEC, VIDEO_PIX_FMT, VIDEO_CRF, VIDEO_GOP = "libx264", "yuv420p", 18, 2
CAMERA_DTYPES = ("video", "image")
_PART_NAME = re.compile(r"^(.+)\[(\d+)\]$")  # our export's state names, e.g. "agent_pos[1]"


class MissingExtraError(RuntimeError):
    """pyarrow or av, the ``[lerobot]`` extra, is not installed."""


@dataclass(frozen=True)
class _Libs:
    """The extra's modules: pyarrow (parquet tables) and av (mp4 video, PNG frames)."""

    pa: Any
    pq: Any
    pc: Any
    av: Any


def lerobot_libs() -> _Libs:
    """Import pyarrow and av on first use (they are optional); MissingExtraError names the extra."""
    modules, missing = {}, []
    for name in ("pyarrow", "pyarrow.parquet", "pyarrow.compute", "av"):
        try:
            modules[name] = importlib.import_module(name)
        except ImportError:
            top = name.split(".")[0]
            missing += [] if top in missing else [top]
    if missing:
        raise MissingExtraError(
            f"LeRobot datasets need {' and '.join(missing)} (the [lerobot] extra); "
            f"install it with: {EXTRA_INSTALL}"
        )
    return _Libs(
        modules["pyarrow"], modules["pyarrow.parquet"], modules["pyarrow.compute"], modules["av"]
    )


def _bad(path: Path | str, where: str, what: str) -> DemoError:
    return DemoError(f"{path}: {where}: {what}")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# ----------------------------------------------------------------------------------------------
# Reading: meta/info.json and the episodes table


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise DemoError(f"{path}: file not found; expected {what}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DemoError(f"{path}: not valid JSON ({_one_line(exc)}); expected {what}") from exc


def _check_feature(path: Path, key: str, feature: Any) -> None:
    where = f"features.{key}"
    if not isinstance(feature, dict) or not isinstance(feature.get("dtype"), str):
        raise _bad(path, where, 'expected an object with "dtype", "shape" and "names"')
    shape = feature.get("shape")
    if not isinstance(shape, list | tuple) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape
    ):
        raise _bad(path, f"{where}.shape", f"expected a list of positive sizes, got {shape!r}")


def read_info(root: Path) -> dict[str, Any]:
    """``root/meta/info.json``, checked: a known codebase_version, fps, path templates, features."""
    path = root / "meta" / "info.json"
    info = _read_json(path, "a LeRobot dataset folder with meta/info.json")
    if not isinstance(info, dict):
        raise _bad(path, "top level", "expected a JSON object")
    version = info.get("codebase_version")
    if version not in READ_VERSIONS:
        raise _bad(
            path, "codebase_version", f"expected one of {', '.join(READ_VERSIONS)}, got {version!r}"
        )
    fps = info.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, int | float) or fps <= 0:
        raise _bad(path, "fps", f"expected a positive number of frames per second, got {fps!r}")
    if not isinstance(info.get("features"), dict) or not info["features"]:
        raise _bad(path, "features", "expected an object of features (dtype, shape, names)")
    for key, feature in info["features"].items():
        _check_feature(path, key, feature)
    needs_video = any(f["dtype"] == "video" for f in info["features"].values())
    for name in ("data_path", *(["video_path"] if needs_video else [])):
        if not isinstance(info.get(name), str):
            raise _bad(path, name, f"expected a path template, got {info.get(name)!r}")
    chunks = info.get("chunks_size", CHUNKS_SIZE)
    if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1:
        raise _bad(path, "chunks_size", f"expected a positive number, got {chunks!r}")
    return info


@dataclass(frozen=True)
class _EpisodeRef:
    """Where one LeRobot episode lies: its rows in a data file and its start in each mp4 file."""

    index: int
    length: int
    data_file: Path
    videos: dict[str, tuple[Path, float]]  # video key -> (mp4 file, from_timestamp in seconds)
    tasks: tuple[str, ...]


def _template_path(root: Path, info: dict[str, Any], template: str, **fields: Any) -> Path:
    """``root / info[template].format(**fields)``; a template needing other fields is bad input."""
    try:
        return root / info[template].format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise _bad(
            root / "meta" / "info.json", template, f"cannot fill in {info[template]!r} ({exc})"
        ) from exc


def _read_parquet(libs: _Libs, path: Path, what: str) -> Any:
    """The whole table of one parquet file; a missing or damaged file is one DemoError."""
    if not path.is_file():
        raise DemoError(f"{path}: file not found; expected {what}")
    try:
        return libs.pq.read_table(path)
    except (OSError, libs.pa.ArrowException) as exc:
        raise DemoError(
            f"{path}: damaged or unreadable parquet file, cannot read it ({_one_line(exc)})"
        ) from exc


def _column_values(path: Path, table: Any, name: str) -> list[Any]:
    """Column ``name`` of an episodes table as a list, checked: present, no nulls."""
    if name not in table.column_names:
        raise _bad(path, f"column {name}", "missing; expected it in the episodes table")
    values = table.column(name).to_pylist()
    if any(v is None for v in values):
        raise _bad(path, f"column {name}", "has empty (null) values")
    return values


def _video_span(root: Path, info: dict, key: str, row: dict[str, Any]) -> tuple[Path, float]:
    """(mp4 file, from_timestamp) of camera ``key`` for one row of a v3.0 episodes table."""
    path = _template_path(
        root, info, "video_path", video_key=key, chunk_index=row[f"videos/{key}/chunk_index"],
        file_index=row[f"videos/{key}/file_index"],
    )  # fmt: skip
    return path, float(row[f"videos/{key}/from_timestamp"])


def _episodes_v3(
    libs: _Libs, root: Path, info: dict, video_keys: Sequence[str]
) -> list[_EpisodeRef]:
    """The episodes of a v3.0 dataset from ``meta/episodes/chunk-*/file-*.parquet``."""
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise DemoError(
            f"{root / 'meta' / 'episodes'}: no chunk-*/file-*.parquet files; expected the "
            "episodes table of a v3.0 dataset"
        )
    refs = []
    for path in files:
        table = _read_parquet(libs, path, "an episodes table")
        cols = {
            name: _column_values(path, table, name)
            for name in ("episode_index", "length", "data/chunk_index", "data/file_index")
        }
        for key in video_keys:
            for name in ("chunk_index", "file_index", "from_timestamp"):
                cols[f"videos/{key}/{name}"] = _column_values(path, table, f"videos/{key}/{name}")
        tasks = table.column("tasks").to_pylist() if "tasks" in table.column_names else None
        for i, index in enumerate(cols["episode_index"]):
            row = {name: values[i] for name, values in cols.items()}
            data_file = _template_path(
                root, info, "data_path", chunk_index=row["data/chunk_index"],
                file_index=row["data/file_index"],
            )  # fmt: skip
            videos = {key: _video_span(root, info, key, row) for key in video_keys}
            ep_tasks = tuple(tasks[i] or ()) if tasks else ()
            refs.append(_EpisodeRef(index, row["length"], data_file, videos, ep_tasks))
    return refs


def _episodes_v2(root: Path, info: dict, video_keys: Sequence[str]) -> list[_EpisodeRef]:
    """The episodes of a v2.0/v2.1 dataset from ``meta/episodes.jsonl`` (one file each)."""
    path = root / "meta" / "episodes.jsonl"
    if not path.is_file():
        raise DemoError(f"{path}: file not found; expected the episodes of a v2 dataset")
    refs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            index, length = int(row["episode_index"]), int(row["length"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise _bad(
                path, f"line {number}", f"expected {{episode_index, tasks, length}} ({exc})"
            ) from exc
        fields = {
            "episode_chunk": index // info.get("chunks_size", CHUNKS_SIZE),
            "episode_index": index,
            "total_episodes": info.get("total_episodes", 0),
        }
        data_file = _template_path(root, info, "data_path", **fields)
        videos = {
            key: (_template_path(root, info, "video_path", video_key=key, **fields), 0.0)
            for key in video_keys
        }
        refs.append(_EpisodeRef(index, length, data_file, videos, tuple(row.get("tasks") or ())))
    return refs


# ----------------------------------------------------------------------------------------------
# Reading: which features become which parts


def _our_key(lerobot_key: str) -> str:
    """Our obs key for a LeRobot feature: observation.state -> state, observation.images.top ->
    top, observation.image -> image, other dots -> underscores."""
    for prefix in ("observation.images.", "observation."):
        if lerobot_key.startswith(prefix):
            lerobot_key = lerobot_key[len(prefix) :]
            break
    return lerobot_key.replace(".", "_").replace("/", "_")


def _state_parts(our_key: str, feature: dict) -> list[tuple[str, slice]]:
    """Our parts of one vector feature: ``<part>[i]`` names (our export) give one part each, in
    order; any other names give one part under ``our_key``."""
    width = int(np.prod(feature["shape"]))
    names = feature.get("names")
    matches = [_PART_NAME.match(n) for n in names] if isinstance(names, list) else [None]
    if len(matches) != width or not all(matches):
        return [(our_key, slice(0, width))]
    parts: list[tuple[str, slice]] = []
    for column, m in enumerate(matches):
        part, i = m.group(1), int(m.group(2))
        if parts and parts[-1][0] == part and i == column - parts[-1][1].start:
            parts[-1] = (part, slice(parts[-1][1].start, column + 1))
        elif i == 0 and part not in (p for p, _ in parts):
            parts.append((part, slice(column, column + 1)))
        else:
            return [(our_key, slice(0, width))]
    return parts


def _camera_shape(path: Path, key: str, feature: dict) -> tuple[int, int, int]:
    """(H, W, C) of a camera feature; info.json writes (H, W, C) or, by its names, (C, H, W)."""
    shape, names = tuple(feature["shape"]), feature.get("names") or []
    if len(shape) != 3:
        raise _bad(path, f"features.{key}.shape", f"expected (H, W, C) or (C, H, W), got {shape}")
    channels_first = bool(names) and str(names[0]).lower() in ("c", "channel", "channels")
    h, w, c = (shape[1], shape[2], shape[0]) if channels_first else shape
    if c != 3:
        raise _bad(path, f"features.{key}.shape", f"expected 3 colour channels, got {shape}")
    return h, w, c


def _feature(path: Path, features: dict, key: str, option: str, camera: bool) -> dict:
    if key not in features:
        raise _bad(path, "features", f"no feature {key!r} ({option}); it has {sorted(features)}")
    feature = features[key]
    if (feature["dtype"] in CAMERA_DTYPES) != camera:
        kind = "a video or image" if camera else "a numeric vector"
        raise _bad(
            path,
            f"features.{key}",
            f"expected {kind} feature ({option}), got dtype {feature['dtype']}",
        )
    if not camera and (len(feature["shape"]) != 1 or feature["dtype"] in ("string", "bool")):
        raise _bad(
            path,
            f"features.{key}",
            f"expected a numeric vector, got {feature['dtype']} {feature['shape']}",
        )
    return feature


@dataclass(frozen=True)
class _ImportPlan:
    """Which LeRobot features become which parts of our episodes."""

    vectors: dict[str, list[tuple[str, slice]]]  # vector feature -> (our obs key, its columns)
    cameras: dict[str, tuple[str, tuple[int, int, int]]]  # camera feature -> (our key, (H, W, C))
    action: str
    action_shape: tuple[int, ...]
    has: frozenset[str]  # which of next.reward, next.done, next.success the dataset has


def _plan_import(
    path: Path,
    features: dict,
    state_keys: Sequence[str] | None,
    image_keys: Sequence[str] | None,
    action_key: str,
) -> _ImportPlan:
    """Our parts for the chosen features (defaults: observation.state, every camera, action)."""
    if state_keys is None:
        state_keys = ["observation.state"] if "observation.state" in features else []
    if image_keys is None:
        image_keys = [k for k, f in features.items() if f["dtype"] in CAMERA_DTYPES]
    vectors = {
        k: _state_parts(_our_key(k), _feature(path, features, k, "--state-key", False))
        for k in state_keys
    }
    cameras = {
        k: (_our_key(k), _camera_shape(path, k, _feature(path, features, k, "--image-key", True)))
        for k in image_keys
    }
    action = _feature(path, features, action_key, "--action-key", False)
    ours = [p for parts in vectors.values() for p, _ in parts] + [k for k, _ in cameras.values()]
    if not ours:
        raise _bad(path, "features", "no observation features; pass --state-key or --image-key")
    if len(set(ours)) != len(ours):
        raise _bad(path, "features", f"these features give clashing obs keys {ours}")
    has = frozenset(k for k in ("next.reward", "next.done", "next.success") if k in features)
    return _ImportPlan(vectors, cameras, action_key, tuple(action["shape"]), has)


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
            raise DemoError(f"{path}: file not found; expected the video of {self.key}")
        self._path, self._last_time = path, float("-inf")
        with self._errors():
            self._container = self.libs.av.open(str(path))
            self._frames = self._container.decode(self._container.streams.video[0])

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (self.libs.av.error.FFmpegError, OSError, IndexError) as exc:
            raise DemoError(
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
            raise DemoError(f"{self.root}: not a folder; expected a LeRobot dataset folder")
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
            raise DemoError(f"{self.root}: no episodes in the episodes table")

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


# ----------------------------------------------------------------------------------------------
# Writing: a v3.0 dataset folder

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


def _camera_feature_key(our_key: str) -> str:
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
                raise _bad(reader.path, f"obs/{key}", what)
            cameras[_camera_feature_key(key)] = key
        elif dtype == np.uint8 and len(shape) >= 2:
            what = f"expected (H, W, 3) uint8 images or vectors, got {shape} uint8"
            raise _bad(reader.path, f"obs/{key}", what)
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
            path = root / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)
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
        raise DemoError(f"{root}: exists; pass --force to replace it")
    if root.exists() and not root.is_dir():
        raise DemoError(f"{root}: exists and is not a folder; expected a dataset folder to replace")
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
        raise _bad(reader.path, "data", "no episodes to export")
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
