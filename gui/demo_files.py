"""Reading demo files for the app, through ``dp_agent.data.DemoReader`` only. A file that cannot
be read, for whatever reason, raises one ``DemoError`` whose message names the file and says
what is wrong: the panels show that message, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dp_agent.data import DemoError, DemoReader, Episode


@contextmanager
def open_demos(path: str | Path, expected_env_id: str | None = None) -> Iterator[DemoReader]:
    """``DemoReader(path)``; any failure while opening or reading becomes a ``DemoError``."""
    try:
        with DemoReader(path, expected_env_id=expected_env_id) as reader:
            yield reader
    except DemoError:
        raise
    except Exception as exc:  # noqa: BLE001  (h5py or OS errors of a damaged file: one message)
        raise DemoError(f"{path}: cannot be read as a demo file ({exc})") from exc


@dataclass
class DemoContents:
    """What the app shows of a demo file: the episode table and every episode's actions."""

    path: Path
    env_id: str | None
    rows: list[dict]  # DemoReader.summary(): name, length, return, success, seed, source
    actions: list[np.ndarray]  # (T, Da) float32 per episode, in ``rows`` order

    @property
    def steps(self) -> int:
        return sum(r["length"] for r in self.rows)


def read_contents(path: str | Path, expected_env_id: str | None = None) -> DemoContents:
    """The summary and the actions of every episode (values checked: NaN raises DemoError)."""
    with open_demos(path, expected_env_id) as reader:
        rows = reader.summary()
        actions = [reader.actions(name) for name in reader.names]
        return DemoContents(Path(path), reader.env_id, rows, actions)


def read_episode(path: str | Path, name: str) -> Episode:
    with open_demos(path) as reader:
        return reader.episode(name)


def check_demo_file(path: str | Path, expected_env_id: str | None = None) -> None:
    """Raise DemoError unless ``path`` opens as a demo file (of ``expected_env_id``)."""
    with open_demos(path, expected_env_id):
        pass


def episode_count(path: str | Path | None) -> int | None:
    """Number of episodes in a demo file, 0 if it does not exist, None if it cannot be read."""
    if path is None:
        return None
    if not Path(path).exists():
        return 0
    try:
        with open_demos(path) as reader:
            return reader.num_episodes
    except DemoError:  # shown as unknown; opening the file in the Demos tab says why
        return None


def preferred_file(files: list[Path], last_used: Path | None = None) -> Path | None:
    """The file a tab opens first: the last one used, else the last of ``files`` that exists
    (they are listed shipped first, then the user's own)."""
    if last_used is not None and Path(last_used).is_file():
        return Path(last_used)
    existing = [Path(f) for f in files if Path(f).is_file()]
    return existing[-1] if existing else None
