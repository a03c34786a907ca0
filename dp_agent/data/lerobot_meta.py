"""Reading a LeRobot dataset's description: ``meta/info.json`` (checked), the episodes table (where
each episode's frame rows and video spans lie) and which features become which of our obs keys.
Every path it gives lies inside the dataset folder (``_inside``); a bad folder is a DatasetError."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DatasetError
from .lerobot_format import (
    CAMERA_DTYPES,
    CHUNKS_SIZE,
    READ_VERSIONS,
    _bad,
    _fill_template,
    _inside,
    _Libs,
    _one_line,
)

_PART_NAME = re.compile(r"^(.+)\[(\d+)\]$")  # our export's state names, e.g. "agent_pos[1]"


# ----------------------------------------------------------------------------------------------
# Reading: meta/info.json and the episodes table


def _read_text(path: Path, what: str) -> str:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found; expected {what}")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read it ({_one_line(exc)}); expected {what}") from exc


def _read_json(path: Path, what: str) -> Any:
    text = _read_text(path, what)
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({_one_line(exc)}); expected {what}") from exc


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
    path = _inside(root, "meta/info.json", str(root))
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


def _template_path(root: Path, info: dict[str, Any], template: str, **fields: int | str) -> Path:
    """The file that ``info[template]`` names for ``fields``, inside ``root`` (a template with
    other fields, or a path that leaves the folder, is a DatasetError naming the template)."""
    where = f"{root / 'meta' / 'info.json'}: {template}"
    return _inside(root, _fill_template(info[template], where, **fields), where)


def _is_count(value: Any, least: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _task_strings(path: Path, where: str, tasks: Any) -> tuple[str, ...]:
    """An episode's tasks: a list of strings (or nothing)."""
    if tasks is None:
        return ()
    if not isinstance(tasks, list | tuple) or not all(isinstance(t, str) for t in tasks):
        raise _bad(path, where, f"expected a list of task strings, got {tasks!r:.80}")
    return tuple(tasks)


def _read_parquet(libs: _Libs, path: Path, what: str) -> Any:
    """The whole table of one parquet file; a missing or damaged file is one DatasetError."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found; expected {what}")
    try:
        return libs.pq.read_table(path)
    except (OSError, libs.pa.ArrowException) as exc:
        raise DatasetError(
            f"{path}: damaged or unreadable parquet file, cannot read it ({_one_line(exc)})"
        ) from exc


def _column_values(
    path: Path, table: Any, name: str, least: int = 0, seconds: bool = False
) -> list[Any]:
    """Column ``name`` of an episodes table as a list, checked: present, no nulls, and counts
    (whole numbers >= ``least``) or, with ``seconds``, finite times >= 0."""
    if name not in table.column_names:
        raise _bad(path, f"column {name}", "missing; expected it in the episodes table")
    values = table.column(name).to_pylist()
    if any(v is None for v in values):
        raise _bad(path, f"column {name}", "has empty (null) values")
    for v in values:
        if seconds and (
            isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0
        ):
            raise _bad(path, f"column {name}", f"expected times in seconds >= 0, got {v!r:.80}")
        if not seconds and not _is_count(v, least):
            raise _bad(
                path, f"column {name}", f"expected counts (whole numbers >= {least}), got {v!r:.80}"
            )
    return values


def _video_span(root: Path, info: dict, key: str, row: dict[str, Any]) -> tuple[Path, float]:
    """(mp4 file, from_timestamp) of camera ``key`` for one row of a v3.0 episodes table."""
    path = _template_path(
        root,
        info,
        "video_path",
        video_key=key,
        chunk_index=row[f"videos/{key}/chunk_index"],
        file_index=row[f"videos/{key}/file_index"],
    )
    return path, float(row[f"videos/{key}/from_timestamp"])


def _episodes_v3(
    libs: _Libs, root: Path, info: dict, video_keys: Sequence[str]
) -> list[_EpisodeRef]:
    """The episodes of a v3.0 dataset from ``meta/episodes/chunk-*/file-*.parquet``."""
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise DatasetError(
            f"{root / 'meta' / 'episodes'}: no chunk-*/file-*.parquet files; expected the "
            "episodes table of a v3.0 dataset"
        )
    refs = []
    for path in (_inside(root, f.relative_to(root).as_posix(), str(root)) for f in files):
        table = _read_parquet(libs, path, "an episodes table")
        cols = {
            name: _column_values(path, table, name, least=int(name == "length"))
            for name in ("episode_index", "length", "data/chunk_index", "data/file_index")
        }
        for key in video_keys:
            for name in ("chunk_index", "file_index"):
                cols[f"videos/{key}/{name}"] = _column_values(path, table, f"videos/{key}/{name}")
            name = f"videos/{key}/from_timestamp"
            cols[name] = _column_values(path, table, name, seconds=True)
        tasks = table.column("tasks").to_pylist() if "tasks" in table.column_names else None
        for i, index in enumerate(cols["episode_index"]):
            row = {name: values[i] for name, values in cols.items()}
            data_file = _template_path(
                root,
                info,
                "data_path",
                chunk_index=row["data/chunk_index"],
                file_index=row["data/file_index"],
            )
            videos = {key: _video_span(root, info, key, row) for key in video_keys}
            ep_tasks = _task_strings(path, f"column tasks row {i}", tasks[i]) if tasks else ()
            refs.append(_EpisodeRef(index, row["length"], data_file, videos, ep_tasks))
    return refs


def _episodes_v2(root: Path, info: dict, video_keys: Sequence[str]) -> list[_EpisodeRef]:
    """The episodes of a v2.0/v2.1 dataset from ``meta/episodes.jsonl`` (one file each)."""
    path = _inside(root, "meta/episodes.jsonl", str(root))
    refs = []
    text = _read_text(path, "the episodes of a v2 dataset")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            index, length = row["episode_index"], row["length"]
        except (json.JSONDecodeError, RecursionError, KeyError, TypeError) as exc:
            raise _bad(
                path, f"line {number}", f"expected {{episode_index, tasks, length}} ({exc})"
            ) from exc
        if not _is_count(index) or not _is_count(length, 1):
            what = f"expected a count episode_index and a length >= 1, got {index!r}, {length!r}"
            raise _bad(path, f"line {number}", what)
        fields = {
            "episode_chunk": index // info.get("chunks_size", CHUNKS_SIZE),
            "episode_index": index,
        }
        data_file = _template_path(root, info, "data_path", **fields)
        videos = {
            key: (_template_path(root, info, "video_path", video_key=key, **fields), 0.0)
            for key in video_keys
        }
        tasks = _task_strings(path, f"line {number}: tasks", row.get("tasks"))
        refs.append(_EpisodeRef(index, length, data_file, videos, tasks))
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
