"""DemoReader: a validated, read-only view of a demonstration file and its journal's pending
episodes; it also opens files written by robomimic."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .errors import _error, _hdf5_errors
from .journal import _journal_entries, _journal_id, _read_entry
from .layout import (
    Episode,
    _attr_value,
    _demo_index,
    _demo_layout,
    _finite_float32,
    _mask_entries,
    _member,
    _next_index,
    _open_hdf5,
    _parse_env_args,
    _read_whole,
    _require_env,
    _sorted_demo_names,
)

__all__ = ["DemoReader"]


class DemoReader:
    """Read-only view of a demonstration file and its journal's pending episodes, validated on
    open.

    Opening checks that the file holds its own data (no external link or storage, no virtual
    dataset, no soft link out of its episode) and the structure from metadata (every episode has
    actions and obs of matching lengths, one action dimension and one set of obs keys across
    episodes, env_args JSON, the env id); a dataset is read only if its declared size fits in
    what the file stores; ``episode()`` also checks the values (no NaN/inf). Bad input, a
    damaged file or journal entry included, raises DemoError. Holds the file open until
    ``close()`` (or the end of a ``with`` block), so later rewrites do not change what it reads;
    a journal entry is opened while it is read (a reader holds one file however many appends are
    pending), and one that a compaction has folded since is read from the compacted file.
    """

    def __init__(self, path: str | os.PathLike, expected_env_id: str | None = None):
        self.path = Path(path)
        self._file = _open_hdf5(self.path)
        try:
            self._load_index(expected_env_id)
        except BaseException:
            self._file.close()
            raise

    def _load_index(self, expected_env_id: str | None) -> None:
        with _hdf5_errors(self.path, "data"):
            data = _member(self._file, "data")
            if not isinstance(data, h5py.Group):
                raise _error(
                    self.path,
                    "data",
                    "missing group; expected the robomimic layout data/demo_N/...",
                )
            self.env_args: dict[str, Any] = _parse_env_args(self.path, data)
            names = _sorted_demo_names(data)
            masks = _member(self._file, "mask")
            masks = masks.items() if isinstance(masks, h5py.Group) else []
            self._mask_names = sorted(k for k, v in masks if isinstance(v, h5py.Dataset))
        if expected_env_id is not None:
            _require_env(self.path, self.env_id, expected_env_id)
        self._demos = {name: _demo_layout(self.path, data, name) for name in names}
        self._entries: dict[str, Path] = {}  # pending episode -> the journal entry holding it
        self.ignored_journal_files: list[Path] = []  # entries of another file
        self._load_journal(data)
        self.names: list[str] = sorted(self._demos, key=_demo_index)
        self._schema = self._demos[self.names[0]].schema if self.names else None
        for name in self.names[1:]:
            self._schema.require_like(self._holder(name), f"data/{name}/", self._demos[name].schema)

    def _load_journal(self, data: h5py.Group) -> None:
        """Add the journal's pending episodes: its entries from the file's next demo index on
        that carry the file's journal id. Lower ones were folded into the file by a compaction
        killed before it removed them, and are skipped."""
        with _hdf5_errors(self.path, "data attributes"):
            first, journal_id = _next_index(data), _journal_id(data)
        for index, entry in _journal_entries(self.path):
            if index < first:
                continue
            layouts = _read_entry(entry, index, self.env_id, journal_id)
            if layouts is None:
                self.ignored_journal_files.append(entry)
                continue
            for name, layout in layouts.items():
                if name in self._demos:
                    where = f"data/{name}"
                    raise _error(
                        entry, where, f"expected a new episode, {self._holder(name)} has one"
                    )
                self._demos[name] = layout
                self._entries[name] = entry

    def _holder(self, name: str) -> Path:
        """The file that holds episode ``name``: the demo file or one of its journal entries."""
        return self._entries.get(name, self.path)

    @contextmanager
    def _episode_group(self, name: str) -> Iterator[tuple[h5py.Group, Path]]:
        """``data/<name>`` and the path of the file it is in, for the duration of the block."""
        entry = self._entries.get(name)
        if entry is None:
            with _hdf5_errors(self.path, f"data/{name}"):
                group = self._file["data"][name]
            yield group, self.path
            return
        path = entry if entry.exists() else self.path  # folded since: read from the compacted file
        with _open_hdf5(path) as f:
            with _hdf5_errors(path, f"data/{name}"):
                group = _member(f["data"], name)
            if group is None:
                raise _error(path, f"data/{name}", "deleted since this reader opened the file")
            yield group, path

    # -- metadata -------------------------------------------------------------------------------

    @property
    def num_episodes(self) -> int:
        return len(self.names)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def env_id(self) -> str | None:
        return self.env_args.get("env_name")

    @property
    def obs_keys(self) -> list[str]:
        """Observation keys, sorted (empty for a file without episodes)."""
        return sorted(self._schema.obs) if self._schema else []

    @property
    def obs_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-step shape of each observation key, e.g. {"state": (5,)}."""
        return {k: v[0] for k, v in self._schema.obs.items()} if self._schema else {}

    @property
    def obs_dtypes(self) -> dict[str, np.dtype]:
        """Stored dtype of each observation key."""
        return {k: v[1] for k, v in self._schema.obs.items()} if self._schema else {}

    @property
    def action_dim(self) -> int | None:
        return self._schema.action_dim if self._schema else None

    @property
    def lengths(self) -> list[int]:
        """Number of steps of each episode, in ``names`` order."""
        return [self._demos[name].length for name in self.names]

    @property
    def total_steps(self) -> int:
        return sum(self.lengths)

    @property
    def pending_names(self) -> list[str]:
        """Episodes held in the journal, not yet folded into the file (``DemoWriter.compact``)."""
        return [name for name in self.names if name in self._entries]

    @property
    def journal_files(self) -> list[Path]:
        """The journal entries holding ``pending_names``, oldest first."""
        return sorted(set(self._entries.values()), key=lambda p: _demo_index(p.stem))

    @property
    def mask_names(self) -> list[str]:
        return list(self._mask_names)

    def mask(self, name: str) -> list[str]:
        """Demo names listed in ``mask/<name>`` (e.g. "train", "valid")."""
        where = f"mask/{name}"
        if name not in self._mask_names:
            raise _error(self.path, where, f"missing; the file has masks {self.mask_names}")
        with _hdf5_errors(self.path, where):
            names = _mask_entries(self.path, self._file, name)
            unknown = sorted(set(names) - set(self.names))
        if unknown:
            raise _error(self.path, where, f"lists {unknown[:5]}, expected names of data/demo_N")
        return names

    def require_same_kind(self, other: DemoReader) -> None:
        """Raise DemoError unless ``other``'s episodes can be stored with this file's (merge): one
        env, one action dimension and one set of observation keys and shapes."""
        _require_env(other.path, other.env_id, self.env_id, f" like {self.path}")
        if self._schema is not None and other._schema is not None:
            like = replace(self._schema, source=f"{self._schema.source} of {self.path}")
            like.require_like(other.path, f"{other._schema.source}/", other._schema)

    # -- episodes -------------------------------------------------------------------------------

    def _name_of(self, key: int | str) -> str:
        if isinstance(key, (int, np.integer)):
            return self.names[key]  # IndexError when out of range, like a list
        if key not in self.names:
            raise _error(self.path, f"data/{key}", f"no such episode; expected one of {self.names}")
        return key

    def actions(self, key: int | str) -> np.ndarray:
        """(T, Da) float32 actions of one episode, read without its observations (cheap for
        image datasets); checked finite."""
        name = self._name_of(key)
        with self._episode_group(name) as (group, path):
            return _read_float32(group, path, f"data/{name}", "actions")

    def episode(self, key: int | str) -> Episode:
        """Episode by position in ``names`` or by name; values are checked (finite floats)."""
        name = self._name_of(key)
        layout, where = self._demos[name], f"data/{name}"
        with self._episode_group(name) as (group, path):
            obs = {}
            for k in self._schema.obs:  # every episode has these keys (checked on open)
                arr = _read_dataset(group, path, where, f"obs/{k}")
                obs[k] = (
                    _finite_float32(path, f"{where}/obs/{k}", arr) if arr.dtype.kind == "f" else arr
                )
            actions = _read_float32(group, path, where, "actions")
            if "rewards" in layout.optional:
                rewards = _read_float32(group, path, where, "rewards")
            else:
                rewards = np.zeros(layout.length, np.float32)
            if "dones" in layout.optional:
                dones = _read_dataset(group, path, where, "dones").astype(bool)
            else:
                dones = np.zeros(layout.length, bool)
                dones[-1] = True
            attrs = _group_attrs(group, path, where)
        return Episode(name, obs, actions, rewards, dones, attrs)

    def __iter__(self) -> Iterator[Episode]:
        for name in self.names:
            yield self.episode(name)

    def summary(self) -> list[dict[str, Any]]:
        """Per episode: name, length, return (sum of rewards), success (bool or None when not
        recorded), seed and source (None when not recorded). Reads attributes and rewards only."""
        rows = []
        for name in self.names:
            layout, where = self._demos[name], f"data/{name}"
            with self._episode_group(name) as (group, path):
                attrs = _group_attrs(group, path, where)
                ret = 0.0
                if "rewards" in layout.optional:
                    rewards = _read_dataset(group, path, where, "rewards")
                    ret = float(np.sum(rewards, dtype=np.float64))
            success = attrs.get("success")
            rows.append(
                {
                    "name": name,
                    "length": layout.length,
                    "return": ret,
                    "success": bool(success) if success is not None else None,
                    "seed": attrs.get("seed"),
                    "source": attrs.get("source"),
                }
            )
        return rows

    def action_bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Element-wise min and max of all actions, each (Da,) float32 (None without episodes).
        Reads the actions only; non-finite values raise DemoError."""
        lo = hi = None
        for name in self.names:
            actions = self.actions(name)
            a_lo, a_hi = actions.min(axis=0), actions.max(axis=0)
            lo = a_lo if lo is None else np.minimum(lo, a_lo)
            hi = a_hi if hi is None else np.maximum(hi, a_hi)
        return None if lo is None else (lo, hi)

    # -- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> DemoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DemoReader({str(self.path)!r}, env={self.env_id!r}, episodes={self.num_episodes})"


def _read_dataset(group: h5py.Group, path: Path, where: str, field: str) -> np.ndarray:
    """The whole dataset ``field`` of episode group ``where`` (in the file ``path``)."""
    with _hdf5_errors(path, f"{where}/{field}"):
        return _read_whole(path, f"{where}/{field}", group[field])


def _read_float32(group: h5py.Group, path: Path, where: str, field: str) -> np.ndarray:
    """Dataset ``field`` of episode group ``where`` as float32, checked finite."""
    return _finite_float32(path, f"{where}/{field}", _read_dataset(group, path, where, field))


def _group_attrs(group: h5py.Group, path: Path, where: str) -> dict[str, Any]:
    """An episode group's attributes as plain Python values."""
    with _hdf5_errors(path, f"{where} attributes"):
        return {k: _attr_value(v) for k, v in group.attrs.items()}
