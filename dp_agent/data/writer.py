"""DemoWriter: adds and removes episodes of a demonstration file, each change durable when it
returns (an append goes to the journal, other changes rewrite the file once).

New episodes are checked and converted to the stored dtypes before anything is written; datasets
are chunked and compressed for reading random training windows.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dp_agent.files import atomic_path, fsync_dir, remove_stale_temp_files
from dp_agent.observations import is_image

from .errors import _error, _hdf5_errors
from .journal import (
    _JOURNAL_ID_ATTR,
    _entry_journal_id,
    _entry_next_index,
    _journal_entries,
    _journal_id,
    _remove_entries,
    _remove_stale_entry_temps,
    journal_dir,
)
from .layout import (
    _DEMO_NAME,
    _NEXT_INDEX_ATTR,
    GYM_ENV_TYPE,
    Episode,
    _check_episode_shapes,
    _check_inside,
    _demo_index,
    _demo_layout,
    _finite_float32,
    _mask_entries,
    _next_index,
    _open_hdf5,
    _Schema,
    _sorted_demo_names,
)
from .reader import DemoReader

__all__ = ["DemoWriter"]

_CHUNK_BYTES = 1 << 18  # ~256 KiB per chunk: a whole low-dim episode, ~10 images
_GZIP_LEVEL = 4
# HDF5 1.10 object formats: ~3x smaller files than the 1.8 defaults for many small episodes
# (single-chunk datasets need no B-tree); readable by any HDF5 >= 1.10 (h5py >= 2.8, robomimic).
_LIBVER = ("v110", "v110")


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


def _copy_without(
    path: Path, src: h5py.File, dst: h5py.File, name: str, mask_names: list[str]
) -> None:
    """Copy all of ``src`` (the file ``path``) into the empty ``dst`` except episode ``name`` and
    its mask entries."""
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
        kept = [n for n in _mask_entries(path, src, mask_name) if n != name]
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
        remove_stale_temp_files(self.path.parent)
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
        with _open_hdf5(self.path, None) as f:  # checked whole when the writer opened it
            _check_inside(self.path, f, "data", walk=False)  # what this reads
            with _hdf5_errors(self.path, "data attributes"):
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
            existing = self.path.exists()
            if existing:
                shutil.copyfile(self.path, tmp)
                with _hdf5_errors(self.path, "superblock and root group", "opened for writing"):
                    f = h5py.File(tmp, "r+", libver=_LIBVER)
            else:
                f = h5py.File(tmp, "w", libver=_LIBVER)
            with f:  # closed on every path, before the rename or the removal of the copy
                if existing:
                    _check_inside(self.path, f)  # the copy holds what the file holds now
                else:
                    _init_data(f, self.env_args, uuid.uuid4().hex)
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
        # Only what this reads is checked to be inside the file (the data group and one
        # episode), not the whole file: an append costs the same for any size of file.
        with _open_hdf5(self.path, None) as f, _hdf5_errors(self.path, "data"):
            _check_inside(self.path, f, "data", walk=False)
            data = f["data"]
            journal_id = _journal_id(data)
            if journal_id is None or _NEXT_INDEX_ATTR not in data.attrs:
                return None
            # Every rewrite of a file with a journal id keeps next_demo_index above its names.
            index = int(data.attrs[_NEXT_INDEX_ATTR])
            some = next((name for name in data if _DEMO_NAME.match(name)), None)
            if some is None:
                return None
            _check_inside(self.path, f, f"data/{some}")
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
                    _copy_without(self.path, reader._file, dst, name, reader.mask_names)
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
