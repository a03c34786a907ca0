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

Needs pyarrow and av, the optional ``[lerobot]`` extra; without them every command raises
MissingExtraError naming the extra. Bad input raises DemoError naming the file and the field.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DemoError

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


def _bad(path: Path | str, where: str, what: str) -> DemoError:
    return DemoError(f"{path}: {where}: {what}")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
