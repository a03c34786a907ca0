"""What reading and writing LeRobot datasets share: their layout and our key mapping (below),
LeRobot's defaults, the optional ``[lerobot]`` extra's modules and the error helpers.

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

A folder is read only inside itself: every file the reader opens (meta/info.json, the episodes
table, the data and video files the templates name) must lie inside the dataset folder once its
links are resolved, and a filled-in template must be a relative path without ``..``. Templates are
filled with LeRobot's documented fields only (``episode_chunk``, ``episode_index``, ``video_key``,
``chunk_index``, ``file_index``; an integer may have a spec like ``:03d``): no attribute access,
indexing or conversion, as ``str.format`` would allow. The export writes only inside its folder
(an obs key becomes one folder name: no ``/``, ``\\`` or NUL).

Needs pyarrow and av, the optional ``[lerobot]`` extra; without them every command raises
MissingExtraError naming the extra. A bad dataset folder raises DatasetError (a DemoError) naming
the file and the field; a bad demo file to export raises DemoError.
"""

from __future__ import annotations

import importlib
import re
import string
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any

from .errors import DatasetError

__all__ = ["EXTRA_INSTALL", "MissingExtraError", "lerobot_libs"]

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


def _bad(path: Path | str, where: str, what: str) -> DatasetError:
    return DatasetError(f"{path}: {where}: {what}")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# ----------------------------------------------------------------------------------------------
# Paths inside the dataset folder

TEMPLATE_FIELDS = ("episode_chunk", "episode_index", "video_key", "chunk_index", "file_index")
_INTEGER_SPEC = re.compile(r"(0?[0-9]{1,2})?d?")  # "", "d", "03d", "06d": a width below 100


def _fill_template(template: str, where: str, **fields: int | str) -> str:
    """``template`` with ``{name}`` or ``{name:03d}`` replaced by ``fields[name]``; any other
    replacement field (another name, ``.attribute``, ``[index]``, ``!r``, a nested or wide spec)
    is a DatasetError from ``where`` (the file and the template's name)."""
    allowed = ", ".join(fields)
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise DatasetError(
            f"{where}: not a path template ({_one_line(exc)}): {template!r}"
        ) from exc
    filled = []
    for literal, name, spec, conversion in parsed:
        filled.append(literal)
        if name is None:
            continue
        value = fields.get(name)
        spec_ok = spec == "" or (isinstance(value, int) and _INTEGER_SPEC.fullmatch(spec))
        if name not in fields or name not in TEMPLATE_FIELDS or conversion or not spec_ok:
            field = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise DatasetError(
                f"{where}: {template!r} has the field {{{field}}}; expected only the fields "
                f"{allowed} (an integer may have a width, e.g. :03d)"
            )
        filled.append(format(value, spec))
    return "".join(filled)


def _inside(root: Path, relative: str, where: str) -> Path:
    """``root / relative``, checked to lie inside the dataset folder ``root``: ``relative`` is a
    relative path without ``..`` (else a DatasetError from ``where``, the file and field it came
    from) and, its links resolved, the path is under ``root``'s real path. The check is made when
    the folder is opened; a folder changed while it is read is not guarded against."""
    parts = relative.replace("\\", "/").split("/")
    if "\0" in relative or Path(relative).is_absolute() or PureWindowsPath(relative).anchor:
        raise DatasetError(
            f"{where}: {relative!r} is outside the dataset folder {root}; expected a relative path"
        )
    if ".." in parts:
        raise DatasetError(
            f"{where}: {relative!r} is outside the dataset folder {root}; expected a path inside "
            "it, without '..'"
        )
    path = root / relative
    try:
        real, real_root = path.resolve(), root.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a loop of links
        raise DatasetError(f"{path}: cannot resolve its links ({_one_line(exc)})") from exc
    if not real.is_relative_to(real_root):
        raise DatasetError(
            f"{path}: a link to {real}, outside the dataset folder {root}; expected the "
            "dataset's files inside its folder"
        )
    return path
