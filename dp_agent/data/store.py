"""HDF5 demonstration store in the robomimic layout: a writer whose saved episodes survive a kill
at any moment, and a validating reader that also opens files written by robomimic.

Layout (robomimic)::

    data                      attrs: total (int), env_args (JSON: env_name, type, env_kwargs)
    data/demo_N               attrs: num_samples (int), optional success, seed, source, ...
    data/demo_N/obs/<key>     (T, ...) float32 (or uint8 images)
    data/demo_N/actions       (T, Da) float32
    data/demo_N/rewards       (T,) float32
    data/demo_N/dones         (T,) uint8
    mask/<name>               optional, byte strings of demo names (e.g. mask/train, mask/valid)

Durability: HDF5 is not crash-safe (a kill during a metadata write can corrupt the whole file), so
the writer never modifies a file in place. An append writes its episodes as a new small file in
the robomimic layout, a *journal entry* ``FILE.hdf5.journal/demo_N.hdf5`` (N: its first
episode), through ``dp_agent.files.atomic_path``: a private temp file, fsynced, then renamed into
place and the folder fsynced. The rename is the commit: a kill before it leaves a temp file that
no reader looks at (the next writer removes it), after it the episodes are there. So an append
costs its episodes, whatever the size of the file (the old way, a copy of the whole file per
append, took 0.7 s per episode at 166 MB). Readers see the file's episodes followed by the
pending ones of its journal, with the same names, order and checks.

Rewrites (``delete_episode``, ``set_masks``, ``compact``; an append to a file that has no journal
id yet) work on a private copy of the file into which the journal is folded, renamed over the
file; then the folded entries are removed. A kill between the two leaves entries whose episodes
are in the file; they are recognised and skipped, since an entry is pending only if it starts at
or after the file's next demo index (``next_demo_index``: names are never reused) and carries the
file's ``journal_id`` (an entry of a file that was replaced by another one is ignored, never
deleted). Compaction is therefore idempotent, and a kill at any moment loses at most the change in
progress.

The journal belongs to its file: copy or move ``FILE.hdf5.journal`` with it, or run
``dp-agent demos compact FILE`` first (``demos generate`` compacts when it is done).

Damage: every h5py call runs inside ``_hdf5_errors``, so a damaged file or journal entry
(truncated, overwritten bytes) gives one DemoError naming that file and the group or dataset being
read, whichever of h5py's exceptions the broken structure led to.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dp_agent.files import atomic_path, fsync_dir, remove_stale_temp_files
from dp_agent.observations import is_image

__all__ = [
    "GYM_ENV_TYPE",
    "DemoError",
    "DemoReader",
    "DemoWriter",
    "Episode",
    "journal_dir",
    "stack_obs",
]

GYM_ENV_TYPE = 2  # robomimic's EnvType.GYM_TYPE, the "type" in env_args for Gymnasium envs
_DEMO_NAME = re.compile(r"^demo_(\d+)$")
_NEXT_INDEX_ATTR = "next_demo_index"  # keeps demo_N names unique after deletes
_JOURNAL_ID_ATTR = "journal_id"  # data attribute: the id a journal entry carries to belong here
_ENTRY_NAME = re.compile(r"^demo_(\d+)\.hdf5$")  # a committed journal entry
_ENTRY_TEMP = re.compile(r"^\.(demo_\d+\.hdf5)\.\d+\.tmp$")  # one being written (atomic_path)
_CHUNK_BYTES = 1 << 18  # ~256 KiB per chunk: a whole low-dim episode, ~10 images
_GZIP_LEVEL = 4
# HDF5 1.10 object formats: ~3x smaller files than the 1.8 defaults for many small episodes
# (single-chunk datasets need no B-tree); readable by any HDF5 >= 1.10 (h5py >= 2.8, robomimic).
_LIBVER = ("v110", "v110")


class DemoError(ValueError):
    """A bad demonstration file or episode; the message names the file, the field and what was
    expected."""


def _error(path: str | os.PathLike, where: str, what: str) -> DemoError:
    return DemoError(f"{path}: {where}: {what}")


# h5py reports a damaged file with whichever exception the broken structure leads to: OSError
# (an unreadable header or chunk), KeyError (a link that no longer resolves), RuntimeError,
# ValueError or TypeError (nonsense in a header or an attribute).
_HDF5_ERRORS = (OSError, KeyError, RuntimeError, ValueError, TypeError)


def _one_line(exc: BaseException) -> str:
    # str(KeyError) adds quotes; HDF5 messages may span lines, and the CLI prints one line
    text = exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str) else str(exc)
    return " ".join(text.split()) or type(exc).__name__


@contextmanager
def _hdf5_errors(path: Path, where: str, doing: str = "read") -> Iterator[None]:
    """The store's h5py calls run inside this: an h5py exception becomes one DemoError naming the
    file and ``where`` (the group or dataset being read or written); DemoErrors pass unchanged."""
    try:
        yield
    except DemoError:
        raise
    except _HDF5_ERRORS as exc:
        if doing == "read":
            what = f"damaged or unreadable HDF5 file, cannot read it ({_one_line(exc)})"
        else:
            what = f"cannot be {doing}, the file is unchanged ({_one_line(exc)}); is it damaged?"
        raise _error(path, where, what) from exc


@dataclass(eq=False)
class Episode:
    """One demonstration. ``obs[key]`` is (T, ...) (float32, or uint8 for images), ``actions`` is
    (T, Da) float32 in env units, ``rewards`` (T,) float32, ``dones`` (T,) bool; ``obs[key][t]`` is
    the observation on which ``actions[t]`` was taken. ``attrs`` holds the episode's HDF5
    attributes (``num_samples`` and optional ``success``, ``seed``, ``source``, ...)."""

    name: str
    obs: dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.actions)


def stack_obs(observations: Sequence[Any], obs_type: str | None = None) -> dict[str, np.ndarray]:
    """Per-step observations of one of our envs -> store keys with (T, ...) arrays.

    A flat Box observation becomes ``state`` (``keypoints`` when ``obs_type == "keypoints"``); a
    dict observation keeps its keys (so a policy trained on the file takes the env's dicts).
    """
    if not observations:
        raise ValueError("stack_obs needs at least one observation")
    first = observations[0]
    if isinstance(first, Mapping):
        return {k: np.stack([np.asarray(o[k]) for o in observations]) for k in first}
    key = "keypoints" if obs_type == "keypoints" else "state"
    return {key: np.stack([np.asarray(o) for o in observations])}


# ----------------------------------------------------------------------------------------------
# Validation: one structure rule for the episodes of a file (reader), new episodes (writer) and
# the files of a merge


def _numeric(dtype: np.dtype) -> bool:
    return dtype.kind in "biuf"


def _described(arr: Any) -> str:
    return f"{tuple(arr.shape)} {arr.dtype}"


@dataclass(frozen=True)
class _Schema:
    """What every episode of a file shares: obs keys with per-step shapes and dtypes, action dim."""

    obs: dict[str, tuple[tuple[int, ...], np.dtype]]
    action_dim: int
    source: str  # the episode the schema was taken from, for messages

    @classmethod
    def of(cls, obs: Mapping[str, Any], actions: Any, source: str) -> _Schema:
        """The schema of one episode; ``obs`` values and ``actions`` are arrays or datasets."""
        obs_info = {k: (tuple(a.shape[1:]), a.dtype) for k, a in obs.items()}
        return cls(obs_info, int(actions.shape[1]), source)

    def require_like(self, path: Path, prefix: str, other: _Schema) -> None:
        """Raise DemoError unless ``other`` (fields named ``prefix + "actions"`` etc. in ``path``)
        has this schema's action dimension, observation keys and per-step shapes."""
        like = f"like {self.source}"
        if other.action_dim != self.action_dim:
            raise _error(
                path,
                f"{prefix}actions",
                f"expected action dimension {self.action_dim} {like}, got {other.action_dim}",
            )
        if set(other.obs) != set(self.obs):
            raise _error(
                path,
                f"{prefix}obs",
                f"expected keys {sorted(self.obs)} {like}, got {sorted(other.obs)}",
            )
        for key, (shape, _) in other.obs.items():
            if shape != self.obs[key][0]:
                raise _error(
                    path,
                    f"{prefix}obs/{key}",
                    f"expected per-step shape {self.obs[key][0]} {like}, got {shape}",
                )


def _check_episode_shapes(
    path: Path,
    prefix: str,
    obs: Mapping[str, Any],
    actions: Any,
    per_step: Mapping[str, Any],
    source: str,
) -> _Schema:
    """The structure every episode has, checked on arrays before they are written and on datasets
    when a file is opened (their metadata; no data is read): numeric actions (T, Da) with T >= 1,
    at least one observation key, each numeric (T, ...), and ``per_step`` (rewards, dones) numeric
    (T,). Fields are named ``prefix + "actions"`` etc. Returns the episode's schema."""
    if actions.ndim != 2 or actions.shape[0] == 0 or not _numeric(actions.dtype):
        raise _error(
            path,
            f"{prefix}actions",
            f"expected numeric actions of shape (T, Da) with T >= 1, got {_described(actions)}",
        )
    T = actions.shape[0]
    if not obs:
        raise _error(path, f"{prefix}obs", "expected at least one observation key")
    for key, arr in obs.items():
        if arr.ndim < 1 or arr.shape[0] != T or not _numeric(arr.dtype):
            raise _error(
                path,
                f"{prefix}obs/{key}",
                f"expected numeric shape ({T}, ...), one step per action, got {_described(arr)}",
            )
    for key, arr in per_step.items():
        if arr.shape != (T,) or not _numeric(arr.dtype):
            raise _error(
                path,
                f"{prefix}{key}",
                f"expected numeric shape ({T},) like actions, got {_described(arr)}",
            )
    return _Schema.of(obs, actions, source)


def _require_env(path: Path, env_id: str | None, expected: str, like: str = "") -> None:
    if env_id != expected:
        raise _error(
            path,
            "data attribute env_args",
            f"holds episodes of env {env_id!r}, expected {expected!r}{like}",
        )


def _finite_float32(path: Path, where: str, values: np.ndarray) -> np.ndarray:
    """``values`` as float32; NaN or inf raise DemoError (read episodes and new ones alike)."""
    values = values.astype(np.float32, copy=False)
    if not np.isfinite(values).all():
        bad = np.argwhere(~np.isfinite(values))[0]
        raise _error(
            path,
            where,
            f"expected finite values, found {values[tuple(bad)]} at step {int(bad[0])}",
        )
    return values


# ----------------------------------------------------------------------------------------------
# Reading


def _attr_value(value: Any) -> Any:
    """An HDF5 attribute as a plain Python value (str, bool, int, float, list)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return _attr_value(value.item())
    if isinstance(value, np.ndarray):
        return [_attr_value(v) for v in value.tolist()]
    return value


def _demo_index(name: str) -> int:
    return int(_DEMO_NAME.match(name).group(1))


def _sorted_demo_names(data: h5py.Group) -> list[str]:
    """``demo_N`` members sorted by N (demo_10 after demo_9); other members are ignored."""
    return sorted((n for n in data if _DEMO_NAME.match(n)), key=_demo_index)


def _mask_entries(f: h5py.File, mask_name: str) -> list[str]:
    return [_attr_value(v) for v in np.atleast_1d(f[f"mask/{mask_name}"][()]).tolist()]


def _member(group: h5py.Group, name: str) -> Any:
    """``group[name]``, or None when there is no such member. (h5py's ``get`` also says None
    when the member is there but its header is damaged: that must raise, not read as missing.)"""
    return group[name] if name in group else None


def _open_hdf5(path: Path) -> h5py.File:
    """Open ``path`` read-only, or raise one DemoError saying why it is not a demo file."""
    expected = "expected an HDF5 demonstration file (robomimic layout)"
    if not path.exists():
        raise DemoError(f"{path}: file not found; {expected}")
    if not path.is_file():
        raise DemoError(f"{path}: not a regular file; {expected}")
    if path.stat().st_size == 0:
        raise DemoError(f"{path}: file is empty (0 bytes); {expected}")
    with _hdf5_errors(path, "superblock and root group"):
        if not h5py.is_hdf5(path):
            raise DemoError(f"{path}: not an HDF5 file (no HDF5 signature); {expected}")
        return h5py.File(path, "r")


def _parse_env_args(path: Path, data: h5py.Group) -> dict[str, Any]:
    where = "data attribute env_args"
    expected = 'expected a JSON object like {"env_name": ..., "type": ..., "env_kwargs": {...}}'
    if "env_args" not in data.attrs:
        raise _error(path, where, f"missing; {expected}")
    raw = _attr_value(data.attrs["env_args"])
    if not isinstance(raw, str):
        raise _error(path, where, f"not a string; {expected}")
    try:
        env_args = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _error(path, where, f"not valid JSON ({exc}); {expected}") from exc
    if not isinstance(env_args, dict) or not isinstance(env_args.get("env_name"), str):
        raise _error(path, where, f"has no string env_name; {expected}")
    return env_args


@dataclass(frozen=True)
class _DemoLayout:
    """One episode as found on open (from metadata): its length, schema and optional datasets."""

    length: int
    schema: _Schema
    optional: frozenset[str]  # which of rewards, dones it has


def _demo_layout(path: Path, data: h5py.Group, name: str) -> _DemoLayout:
    """Check the structure of ``data/<name>`` from metadata only (no data is read)."""
    where = f"data/{name}"
    with _hdf5_errors(path, where):
        g = data[name]
        if not isinstance(g, h5py.Group):
            raise _error(path, where, "expected a group with obs/<key>, actions, rewards, dones")
        actions = _member(g, "actions")
        if not isinstance(actions, h5py.Dataset):
            raise _error(path, f"{where}/actions", "missing dataset; expected (T, Da) actions")
        obs = _member(g, "obs")
        if not isinstance(obs, h5py.Group) or len(obs) == 0:
            raise _error(
                path, f"{where}/obs", "missing group; expected obs/<key> of shape (T, ...)"
            )
        obs = dict(obs.items())
        per_step = {k: g[k] for k in ("rewards", "dones") if k in g}  # optional (robomimic)
        for key, member in [*(("obs/" + k, v) for k, v in obs.items()), *per_step.items()]:
            if not isinstance(member, h5py.Dataset):
                raise _error(path, f"{where}/{key}", "expected a dataset, got a group")
        schema = _check_episode_shapes(path, f"{where}/", obs, actions, per_step, where)
        T = actions.shape[0]
        if "num_samples" in g.attrs and int(g.attrs["num_samples"]) != T:
            raise _error(
                path,
                f"{where} attribute num_samples",
                f"expected {T} (the number of actions), got {int(g.attrs['num_samples'])}",
            )
    return _DemoLayout(T, schema, frozenset(per_step))


def _next_index(data: h5py.Group) -> int:
    """The N of the next ``demo_N``: above every name this file has ever given (deleted ones
    too, through the ``next_demo_index`` attribute)."""
    indices = [_demo_index(n) for n in _sorted_demo_names(data)]
    counter = int(data.attrs.get(_NEXT_INDEX_ATTR, 0))
    return max([counter, *(i + 1 for i in indices)])


# ----------------------------------------------------------------------------------------------
# The journal: pending appends, one small robomimic-layout file each, beside the file


def journal_dir(path: str | os.PathLike) -> Path:
    """The folder of a demo file's pending appends: ``FILE.hdf5.journal`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.name}.journal")


def _journal_entries(path: Path) -> list[tuple[int, Path]]:
    """The committed entries of ``path``'s journal as (N, file of ``demo_N.hdf5``), by N. A temp
    file (``.demo_N.hdf5.<pid>.tmp``, an entry being written or left by a killed writer) is not
    an entry."""
    folder = journal_dir(path)
    if not folder.is_dir():
        return []
    found = [(m, entry) for entry in folder.iterdir() if (m := _ENTRY_NAME.match(entry.name))]
    return sorted((int(m.group(1)), entry) for m, entry in found)


def _journal_id(data: h5py.Group) -> str | None:
    value = data.attrs.get(_JOURNAL_ID_ATTR)
    return None if value is None else str(_attr_value(value))


def _read_entry(
    entry: Path, index: int, env_id: str | None, journal_id: str | None
) -> dict[str, _DemoLayout] | None:
    """Check journal entry ``entry`` (``demo_<index>.hdf5``) from metadata, as a file is checked
    on open; returns its episodes' layouts, or None when it does not carry ``journal_id`` (an
    entry of a file that this one replaced: not this file's)."""
    with _open_hdf5(entry) as f:
        with _hdf5_errors(entry, "data"):
            data = _member(f, "data")
            if not isinstance(data, h5py.Group):
                raise _error(entry, "data", "missing group; expected a journal entry data/demo_N")
            if journal_id is None or _journal_id(data) != journal_id:
                return None
            env_args = _parse_env_args(entry, data)
            names = _sorted_demo_names(data)
        _require_env(entry, env_args.get("env_name"), env_id, " like the file it belongs to")
        if not names or names[0] != f"demo_{index}":
            raise _error(
                entry, "data", f"expected episodes from demo_{index} on (its name), got {names[:3]}"
            )
        return {name: _demo_layout(entry, data, name) for name in names}


class DemoReader:
    """Read-only view of a demonstration file and its journal's pending episodes, validated on
    open.

    Opening checks the structure from metadata (every episode has actions and obs of matching
    lengths, one action dimension and one set of obs keys across episodes, env_args JSON, the env
    id); ``episode()`` also checks the values (no NaN/inf). Bad input, a damaged file or journal
    entry included, raises DemoError. Holds the file open until ``close()`` (or the end of a
    ``with`` block), so later rewrites do not change what it reads; a journal entry is opened
    while it is read (a reader holds one file however many appends are pending), and one that a
    compaction has folded since is read from the compacted file.
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
            names = _mask_entries(self._file, name)
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
                    with _hdf5_errors(path, f"{where}/rewards"):
                        ret = float(np.sum(group["rewards"][()], dtype=np.float64))
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
        return group[field][()]


def _read_float32(group: h5py.Group, path: Path, where: str, field: str) -> np.ndarray:
    """Dataset ``field`` of episode group ``where`` as float32, checked finite."""
    return _finite_float32(path, f"{where}/{field}", _read_dataset(group, path, where, field))


def _group_attrs(group: h5py.Group, path: Path, where: str) -> dict[str, Any]:
    """An episode group's attributes as plain Python values."""
    with _hdf5_errors(path, f"{where} attributes"):
        return {k: _attr_value(v) for k, v in group.attrs.items()}


# ----------------------------------------------------------------------------------------------
# Writing


def _normalise_env_args(env_args: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(env_args, Mapping) or not isinstance(env_args.get("env_name"), str):
        raise ValueError(
            'env_args: expected a dict like {"env_name": "dp_agent/PushT-v0", "env_kwargs": {...}}'
        )
    out = {"env_name": env_args["env_name"], "type": GYM_ENV_TYPE, "env_kwargs": {}}
    out.update(env_args)
    try:
        json.dumps(out)
    except TypeError as exc:
        raise ValueError(f"env_args: expected JSON-serialisable values ({exc})") from exc
    return out


def _chunks(arr: np.ndarray) -> tuple[int, ...]:
    """HDF5 chunk shape: one frame per chunk for images (a random training window reads only
    its frames), else rows of about ``_CHUNK_BYTES``."""
    if is_image(arr.shape[1:], arr.dtype):
        return (1, *arr.shape[1:])
    row_bytes = max(1, arr[:1].nbytes)
    rows = int(max(1, min(len(arr), _CHUNK_BYTES // row_bytes)))
    return (rows, *arr.shape[1:])


def _create_dataset(group: h5py.Group, name: str, arr: np.ndarray) -> None:
    group.create_dataset(
        name,
        data=arr,
        chunks=_chunks(arr),
        compression="gzip",
        compression_opts=_GZIP_LEVEL,
        shuffle=arr.dtype.itemsize > 1,
    )


def _set_attr(obj: h5py.HLObject, key: str, value: Any) -> None:
    if isinstance(value, str):
        # Fixed-length: a variable-length string would start a 4 KiB global heap collection in
        # every write session, doubling the size of a file of small episodes.
        encoded = value.encode("utf-8")
        obj.attrs.create(key, encoded, dtype=h5py.string_dtype("utf-8", max(1, len(encoded))))
    else:
        obj.attrs[key] = value


def _attr_ok(value: Any) -> bool:
    if isinstance(value, (str, bool, int, float, np.generic)):
        return True
    if isinstance(value, (list, tuple, np.ndarray)):
        arr = np.asarray(value)
        return arr.dtype.kind in "biuf" and arr.ndim == 1
    return False


@dataclass(eq=False)
class _PreparedEpisode:
    obs: dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    attrs: dict[str, Any]
    schema: _Schema


def _prepare_attrs(path: Path, attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    clean = {}
    for key, value in (attrs or {}).items():
        if key == "num_samples":
            continue  # set by the store
        if not _attr_ok(value):
            raise _error(
                path,
                f"new episode attrs[{key!r}]",
                f"expected str, bool, int, float or a 1-D numeric list, got {type(value).__name__}",
            )
        clean[key] = value
    return clean


def _stored_obs(path: Path, where: str, arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind == "f":
        return _finite_float32(path, where, arr)
    return arr.astype(np.uint8) if arr.dtype.kind == "b" else arr


def _prepare(
    path: Path,
    obs: Mapping[str, np.ndarray] | np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    dones: np.ndarray,
    attrs: Mapping[str, Any] | None,
) -> _PreparedEpisode:
    """Validate a new episode and convert it to the stored dtypes (before anything is written)."""
    where = "new episode "
    obs = {
        k: np.asarray(v) for k, v in (obs.items() if isinstance(obs, Mapping) else [("state", obs)])
    }
    for key in obs:
        if not isinstance(key, str) or not key or "/" in key:
            raise _error(path, f"{where}obs", f"expected key names without '/', got {key!r}")
    actions, rewards, dones = np.asarray(actions), np.asarray(rewards), np.asarray(dones)
    per_step = {"rewards": rewards, "dones": dones}
    schema = _check_episode_shapes(path, where, obs, actions, per_step, "the first new episode")
    return _PreparedEpisode(
        obs={k: _stored_obs(path, f"{where}obs/{k}", arr) for k, arr in obs.items()},
        actions=_finite_float32(path, f"{where}actions", actions),
        rewards=_finite_float32(path, f"{where}rewards", rewards),
        dones=dones.astype(bool).astype(np.uint8),
        attrs=_prepare_attrs(path, attrs),
        schema=schema,
    )


def _recount_total(data: h5py.Group) -> int:
    return int(sum(int(data[n]["actions"].shape[0]) for n in _sorted_demo_names(data)))


def _write_episode(data: h5py.Group, name: str, ep: _PreparedEpisode) -> None:
    g = data.create_group(name)
    obs_group = g.create_group("obs")
    for key, arr in ep.obs.items():
        _create_dataset(obs_group, key, arr)
    _create_dataset(g, "actions", ep.actions)
    _create_dataset(g, "rewards", ep.rewards)
    _create_dataset(g, "dones", ep.dones)
    g.attrs["num_samples"] = len(ep.actions)
    for key, value in ep.attrs.items():
        _set_attr(g, key, value)


def _copy_attrs(src: h5py.HLObject, dst: h5py.HLObject) -> None:
    for key, value in src.attrs.items():
        dst.attrs[key] = value


def _copy_without(src: h5py.File, dst: h5py.File, name: str, mask_names: list[str]) -> None:
    """Copy all of ``src`` into the empty ``dst`` except episode ``name`` and its mask entries."""
    _copy_attrs(src, dst)
    for key in src:
        if key not in ("data", "mask"):
            src.copy(src[key], dst, name=key)
    data = dst.create_group("data")
    _copy_attrs(src["data"], data)
    for key in src["data"]:
        if key != name:
            src.copy(src["data"][key], data, name=key)
    data.attrs["total"] = _recount_total(data)
    data.attrs[_NEXT_INDEX_ATTR] = _next_index(src["data"])
    for mask_name in mask_names:
        kept = [n for n in _mask_entries(src, mask_name) if n != name]
        dst.create_dataset(f"mask/{mask_name}", data=np.array(kept, dtype="S"))


def _init_data(f: h5py.File, env_args: Mapping[str, Any], journal_id: str) -> h5py.Group:
    """The ``data`` group of a new file or journal entry, without episodes."""
    data = f.create_group("data")
    data.attrs["env_args"] = json.dumps(env_args)
    data.attrs["total"] = 0
    _set_attr(data, _JOURNAL_ID_ATTR, journal_id)
    return data


def _first_schema(path: Path, data: h5py.Group) -> _Schema | None:
    names = _sorted_demo_names(data)
    return _demo_layout(path, data, names[0]).schema if names else None


def _write_batch(
    path: Path,
    data: h5py.Group,
    index: int,
    schema: _Schema | None,
    episodes: Iterable[_PreparedEpisode],
) -> list[str]:
    """Write ``episodes`` into ``data`` as ``demo_<index>``, ``demo_<index + 1>``, ... (each of
    ``schema``, or of the first one's when None); errors name ``path``. Returns the names."""
    names: list[str] = []
    added = 0
    # The caller's episodes are produced outside _hdf5_errors: their errors are their own.
    for ep in episodes:
        if schema is None:
            schema = ep.schema
        schema.require_like(path, "new episode ", ep.schema)
        name = f"demo_{index + len(names)}"
        with _hdf5_errors(path, f"data/{name}", "written"):
            _write_episode(data, name, ep)
        names.append(name)
        added += len(ep.actions)
    if not names:
        raise ValueError("append_episodes: expected at least one episode")
    with _hdf5_errors(path, "data attributes", "written"):
        total = int(data.attrs["total"]) + added if "total" in data.attrs else None
        data.attrs["total"] = _recount_total(data) if total is None else total
        data.attrs[_NEXT_INDEX_ATTR] = index + len(names)
    return names


def _entry_next_index(entry: Path) -> int:
    """The next demo index after the episodes of journal entry ``entry``."""
    with _open_hdf5(entry) as f, _hdf5_errors(entry, "data"):
        return _next_index(f["data"])


def _entry_journal_id(entry: Path) -> str | None:
    """The journal id an entry carries; None when it cannot be read."""
    try:
        with h5py.File(entry, "r") as f:
            return _journal_id(f["data"])
    except _HDF5_ERRORS:
        return None


def _remove_entries(path: Path, entries: list[Path]) -> None:
    """Remove journal entries whose episodes the file now holds, and the journal folder once it
    is empty. A kill part-way leaves entries that readers skip (below the next demo index)."""
    if not entries:
        return
    folder = journal_dir(path)
    for entry in entries:
        entry.unlink(missing_ok=True)
    fsync_dir(folder)
    if not any(folder.iterdir()):
        try:
            folder.rmdir()
        except OSError:  # an append came in meanwhile: the folder stays
            return
        fsync_dir(path.parent)


def _remove_stale_entry_temps(path: Path) -> None:
    """Remove the temp files of journal entries left by writers that were killed."""
    folder = journal_dir(path)
    if folder.is_dir():
        stems = {m.group(1) for e in folder.iterdir() if (m := _ENTRY_TEMP.match(e.name))}
        for stem in stems:
            remove_stale_temp_files(folder / stem)


@dataclass(frozen=True)
class _Tail:
    """Where an append to the journal goes: its first demo index, the file's episode schema and
    journal id."""

    index: int
    schema: _Schema
    journal_id: str


class DemoWriter:
    """Adds and removes episodes of a demonstration file; every call is durable when it returns.

    ``DemoWriter(path, env_args)`` creates the file on the first append (``env_args`` =
    {"env_name": gym id, "env_kwargs": {...}}, "type" defaults to robomimic's gym type); an
    existing file is validated (DemoError if it is not a good demo file, damaged included) and
    its env must match. A kill at any moment loses at most the change in progress, and a failed
    change leaves the file as it was. Cost: an append (one episode or a batch) writes its
    episodes to the journal, whatever the size of the file; ``delete_episode``, ``set_masks`` and
    ``compact`` rewrite the file once, folding the journal in. One writer per file at a time.
    Nothing is held open between calls.
    """

    def __init__(self, path: str | os.PathLike, env_args: Mapping[str, Any] | None = None):
        self.path = Path(path)
        self._journal_synced = False  # the journal folder's entry is durable in the parent
        remove_stale_temp_files(self.path)
        _remove_stale_entry_temps(self.path)
        if self.path.exists():
            expected = None if env_args is None else env_args.get("env_name")
            with DemoReader(self.path, expected_env_id=expected) as reader:
                self.env_args = reader.env_args
            self._remove_folded_entries()
        elif env_args is None:
            raise _error(self.path, "env_args", "needed to create a new file, got None")
        else:
            self.env_args = _normalise_env_args(env_args)

    def _remove_folded_entries(self) -> None:
        """Remove the journal entries of a compaction that was killed after it had replaced the
        file (their episodes are in the file, below its next demo index)."""
        entries = _journal_entries(self.path)
        if not entries:
            return
        with _open_hdf5(self.path) as f, _hdf5_errors(self.path, "data attributes"):
            first, journal_id = _next_index(f["data"]), _journal_id(f["data"])
        if journal_id is not None:
            folded = [e for i, e in entries if i < first and _entry_journal_id(e) == journal_id]
            _remove_entries(self.path, folded)

    def _fold_journal(self, f: h5py.File, skip: str | None = None) -> list[Path]:
        """Copy the journal's pending episodes (but ``skip``) into ``f``, the private copy of
        the file being rewritten, and give it a journal id if it has none. Returns the folded
        entries, to be removed once the copy has replaced the file."""
        with _hdf5_errors(self.path, "data attributes", "written"):
            data = f["data"]
            first = next_index = _next_index(data)
            journal_id = _journal_id(data)
            if journal_id is None:  # a file written elsewhere: no entry can be its own
                _set_attr(data, _JOURNAL_ID_ATTR, uuid.uuid4().hex)
        folded = []
        for index, entry in _journal_entries(self.path):
            if index < first:
                continue
            with _open_hdf5(entry) as src, _hdf5_errors(entry, "data", "copied"):
                if journal_id is None or _journal_id(src["data"]) != journal_id:
                    continue  # another file's entry: left as it is
                for name in _sorted_demo_names(src["data"]):
                    next_index = max(next_index, _demo_index(name) + 1)
                    if name != skip:
                        src.copy(src["data"][name], data, name=name)
            folded.append(entry)
        with _hdf5_errors(self.path, "data attributes", "written"):
            data.attrs[_NEXT_INDEX_ATTR] = next_index
            data.attrs["total"] = _recount_total(data)
        return folded

    @contextmanager
    def _rewrite(self) -> Iterator[h5py.File]:
        """A writable private copy of the file (a new file when there is none) with the journal
        folded in; when the block exits normally it replaces the file (fsync + atomic rename)
        and the folded entries are removed, otherwise it is discarded."""
        with atomic_path(self.path) as tmp:
            if self.path.exists():
                shutil.copyfile(self.path, tmp)
                with _hdf5_errors(self.path, "superblock and root group", "opened for writing"):
                    f = h5py.File(tmp, "r+", libver=_LIBVER)
            else:
                f = h5py.File(tmp, "w", libver=_LIBVER)
                _init_data(f, self.env_args, uuid.uuid4().hex)
            with f:
                folded = self._fold_journal(f)
                yield f
        _remove_entries(self.path, folded)

    def append_episode(
        self,
        obs: Mapping[str, np.ndarray] | np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        dones: np.ndarray,
        attrs: Mapping[str, Any] | None = None,
    ) -> str:
        """Append one episode; returns its name (``demo_N``). ``obs`` is a dict of (T, ...) arrays
        or one (T, Do) array (stored as ``obs/state``); actions (T, Da); rewards, dones (T,).
        ``attrs`` are optional scalars such as success, seed, source ("expert"/"human")."""
        ep = _prepare(self.path, obs, actions, rewards, dones, attrs)
        return self._append([ep])[0]

    def append_episodes(self, episodes: Iterable[Episode]) -> list[str]:
        """Append several episodes as one atomic batch (all or none are saved); their ``name`` is
        ignored and new names are given. Accepts a generator (episodes are written one by one)."""

        def prepared() -> Iterator[_PreparedEpisode]:
            for ep in episodes:
                yield _prepare(self.path, ep.obs, ep.actions, ep.rewards, ep.dones, ep.attrs)

        return self._append(prepared())

    def _append(self, episodes: Iterable[_PreparedEpisode]) -> list[str]:
        """One journal entry, or, for a new or empty file or one without a journal id, one
        rewrite (which costs no more than the entry, or once per file written elsewhere)."""
        tail = self._journal_tail()
        if tail is None:
            with self._rewrite() as f:
                data = f["data"]
                with _hdf5_errors(self.path, "data"):
                    index, schema = _next_index(data), _first_schema(self.path, data)
                return _write_batch(self.path, data, index, schema, episodes)
        folder = journal_dir(self.path)
        if not folder.is_dir():  # the first append since the file was made or compacted
            folder.mkdir(exist_ok=True)
            self._journal_synced = False
        if not self._journal_synced:  # the folder's own entry must be durable too
            fsync_dir(self.path.parent)
            self._journal_synced = True
        with atomic_path(folder / f"demo_{tail.index}.hdf5") as tmp:
            with h5py.File(tmp, "w", libver=_LIBVER) as f:
                data = _init_data(f, self.env_args, tail.journal_id)
                return _write_batch(self.path, data, tail.index, tail.schema, episodes)

    def _journal_tail(self) -> _Tail | None:
        """Where the next journal entry goes, from a few attributes of the file, the metadata of
        one of its episodes and the newest entry, so it costs the same for any size of file.
        None when the file does not exist yet, has no episodes or has no journal id: then the
        append rewrites it."""
        if not self.path.exists():
            return None
        with _open_hdf5(self.path) as f, _hdf5_errors(self.path, "data"):
            data = f["data"]
            journal_id = _journal_id(data)
            if journal_id is None or _NEXT_INDEX_ATTR not in data.attrs:
                return None
            # Every rewrite of a file with a journal id keeps next_demo_index above its names.
            index = int(data.attrs[_NEXT_INDEX_ATTR])
            some = next((name for name in data if _DEMO_NAME.match(name)), None)
            if some is None:
                return None
            schema = _demo_layout(self.path, data, some).schema  # every episode has it
        entries = _journal_entries(self.path)
        if entries:  # above every entry, another file's too: an entry's name is never reused
            newest_index, newest = entries[-1]
            index = max(index, newest_index + 1, _entry_next_index(newest))
        return _Tail(index, schema, journal_id)

    def compact(self) -> int:
        """Fold the journal's pending episodes into the file, in one atomic rewrite of the file;
        returns how many there were. (``delete_episode`` and ``set_masks`` do it on the way.)"""
        if not self.path.exists():
            return 0
        with DemoReader(self.path) as reader:
            pending = len(reader.pending_names)
        if pending:
            with self._rewrite():
                pass
        return pending

    def delete_episode(self, name: str) -> None:
        """Remove one episode (and its entries in masks); other names are kept. The file is
        rebuilt without it (which also reclaims its space) with the journal folded in, then
        atomically replaces the old one."""
        with atomic_path(self.path) as tmp:  # the rename comes after the reader has closed
            with DemoReader(self.path) as reader, h5py.File(tmp, "w", libver=_LIBVER) as dst:
                if name not in reader.names:
                    raise _error(self.path, f"data/{name}", f"no such episode in {reader.names}")
                with _hdf5_errors(self.path, "data", "copied"):
                    _copy_without(reader._file, dst, name, reader.mask_names)
                folded = self._fold_journal(dst, skip=name)
        _remove_entries(self.path, folded)

    def set_masks(self, masks: Mapping[str, Sequence[str]]) -> None:
        """Write ``mask/<name>`` lists of demo names (e.g. {"train": [...], "valid": [...]}) in
        one atomic change, replacing masks of the same names."""
        with self._rewrite() as f:
            with _hdf5_errors(self.path, "data"):
                known = set(_sorted_demo_names(f["data"]))
            for mask_name, names in masks.items():
                key = f"mask/{mask_name}"
                unknown = sorted(set(names) - known)
                if unknown:
                    raise _error(self.path, key, f"expected names of episodes, got {unknown}")
                with _hdf5_errors(self.path, key, "written"):
                    if key in f:
                        del f[key]
                    f.create_dataset(key, data=np.array(list(names), dtype="S"))
