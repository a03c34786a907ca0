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
the writer never modifies the file in place. Every change (append, batch append, delete, masks)
is made on a private copy next to the file, which is fsynced and then atomically renamed over the
original (and the directory fsynced). A kill at any moment leaves either the old or the new file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

__all__ = [
    "GYM_ENV_TYPE",
    "DemoError",
    "DemoReader",
    "DemoWriter",
    "Episode",
    "stack_obs",
]

GYM_ENV_TYPE = 2  # robomimic's EnvType.GYM_TYPE, the "type" in env_args for Gymnasium envs
_DEMO_NAME = re.compile(r"^demo_(\d+)$")
_NEXT_INDEX_ATTR = "next_demo_index"  # keeps demo_N names unique after deletes
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
    dict observation keeps its keys, except ``pixels`` which becomes ``image``.
    """
    if not observations:
        raise ValueError("stack_obs needs at least one observation")
    first = observations[0]
    if isinstance(first, Mapping):
        return {
            ("image" if k == "pixels" else k): np.stack([np.asarray(o[k]) for o in observations])
            for k in first
        }
    key = "keypoints" if obs_type == "keypoints" else "state"
    return {key: np.stack([np.asarray(o) for o in observations])}


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


def _open_hdf5(path: Path) -> h5py.File:
    """Open ``path`` read-only, or raise one DemoError saying why it is not a demo file."""
    expected = "expected an HDF5 demonstration file (robomimic layout)"
    if not path.exists():
        raise DemoError(f"{path}: file not found; {expected}")
    if not path.is_file():
        raise DemoError(f"{path}: not a regular file; {expected}")
    if path.stat().st_size == 0:
        raise DemoError(f"{path}: file is empty (0 bytes); {expected}")
    if not h5py.is_hdf5(path):
        raise DemoError(f"{path}: not an HDF5 file (no HDF5 signature); {expected}")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DemoError(f"{path}: damaged HDF5 file, cannot be opened ({exc}); {expected}") from exc


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


@dataclass
class _Schema:
    """What every episode of a file shares: obs keys with per-step shapes and dtypes, action dim."""

    obs: dict[str, tuple[tuple[int, ...], np.dtype]]
    action_dim: int
    source: str  # the episode the schema was taken from, for messages


def _numeric(dtype: np.dtype) -> bool:
    return dtype.kind in "biuf"


def _check_demo_structure(path: Path, g: h5py.Group, schema: _Schema | None) -> tuple[int, _Schema]:
    """Check one demo group's structure from metadata only (no data read). Returns (T, schema)."""
    name = g.name.lstrip("/")
    if not isinstance(g, h5py.Group):
        raise _error(path, name, "expected a group with obs/<key>, actions, rewards, dones")
    actions = g.get("actions")
    if not isinstance(actions, h5py.Dataset):
        raise _error(path, f"{name}/actions", "missing dataset; expected actions of shape (T, Da)")
    if actions.ndim != 2 or actions.shape[0] == 0 or not _numeric(actions.dtype):
        raise _error(
            path,
            f"{name}/actions",
            f"expected numeric actions of shape (T, Da) with T >= 1, got shape {actions.shape} "
            f"{actions.dtype}",
        )
    T, action_dim = actions.shape
    obs = g.get("obs")
    if not isinstance(obs, h5py.Group) or len(obs) == 0:
        raise _error(
            path, f"{name}/obs", "missing group; expected observations obs/<key> of shape (T, ...)"
        )
    obs_info: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    for key, ds in obs.items():
        field_name = f"{name}/obs/{key}"
        if not isinstance(ds, h5py.Dataset) or ds.ndim < 1 or not _numeric(ds.dtype):
            raise _error(path, field_name, "expected a numeric dataset of shape (T, ...)")
        if ds.shape[0] != T:
            raise _error(
                path, field_name, f"expected {T} steps (one per action), got {ds.shape[0]}"
            )
        obs_info[key] = (tuple(ds.shape[1:]), ds.dtype)
    for key in ("rewards", "dones"):  # optional (robomimic always writes them)
        ds = g.get(key)
        if ds is None:
            continue
        if not isinstance(ds, h5py.Dataset) or ds.shape != (T,) or not _numeric(ds.dtype):
            got = ds.shape if isinstance(ds, h5py.Dataset) else "a group"
            raise _error(path, f"{name}/{key}", f"expected shape ({T},) like actions, got {got}")
    if "num_samples" in g.attrs and int(g.attrs["num_samples"]) != T:
        raise _error(
            path,
            f"{name} attribute num_samples",
            f"expected {T} (the number of actions), got {int(g.attrs['num_samples'])}",
        )
    if schema is None:
        return T, _Schema(obs_info, action_dim, name)
    if action_dim != schema.action_dim:
        raise _error(
            path,
            f"{name}/actions",
            f"expected action dimension {schema.action_dim} like {schema.source}, got {action_dim}",
        )
    if set(obs_info) != set(schema.obs):
        raise _error(
            path,
            f"{name}/obs",
            f"expected keys {sorted(schema.obs)} like {schema.source}, got {sorted(obs_info)}",
        )
    for key, (shape, _) in obs_info.items():
        if shape != schema.obs[key][0]:
            raise _error(
                path,
                f"{name}/obs/{key}",
                f"expected per-step shape {schema.obs[key][0]} like {schema.source}, got {shape}",
            )
    return T, schema


def _check_finite(path: Path, where: str, values: np.ndarray) -> None:
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        bad = np.argwhere(~np.isfinite(values))[0]
        raise _error(
            path,
            where,
            f"expected finite values, found {values[tuple(bad)]} at step {int(bad[0])}",
        )


class DemoReader:
    """Read-only view of a demonstration file, validated on open.

    Opening checks the structure from metadata (every episode has actions and obs of matching
    lengths, one action dimension and one set of obs keys across episodes, env_args JSON, the env
    id); ``episode()`` also checks the values (no NaN/inf). Bad input raises DemoError.
    Holds the file open until ``close()`` (or the end of a ``with`` block).
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
        data = self._file.get("data")
        if not isinstance(data, h5py.Group):
            raise _error(
                self.path, "data", "missing group; expected the robomimic layout data/demo_N/..."
            )
        self._data = data
        self.env_args: dict[str, Any] = _parse_env_args(self.path, data)
        if expected_env_id is not None and self.env_id != expected_env_id:
            raise _error(
                self.path,
                "data attribute env_args",
                f"episodes were recorded in env {self.env_id!r}, expected {expected_env_id!r}",
            )
        self.names: list[str] = _sorted_demo_names(data)
        self._lengths: list[int] = []
        schema = None
        for name in self.names:
            length, schema = _check_demo_structure(self.path, data[name], schema)
            self._lengths.append(length)
        self._schema = schema

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
        return list(self._lengths)

    @property
    def total_steps(self) -> int:
        return sum(self._lengths)

    @property
    def mask_names(self) -> list[str]:
        masks = self._file.get("mask")
        return sorted(masks) if isinstance(masks, h5py.Group) else []

    def mask(self, name: str) -> list[str]:
        """Demo names listed in ``mask/<name>`` (e.g. "train", "valid")."""
        where = f"mask/{name}"
        ds = self._file.get(where)
        if not isinstance(ds, h5py.Dataset):
            raise _error(self.path, where, f"missing; the file has masks {self.mask_names}")
        names = _mask_entries(self._file, name)
        unknown = sorted(set(names) - set(self.names))
        if unknown:
            raise _error(self.path, where, f"lists {unknown[:5]}, expected names of data/demo_N")
        return names

    # -- episodes -------------------------------------------------------------------------------

    def _name_of(self, key: int | str) -> str:
        if isinstance(key, (int, np.integer)):
            return self.names[key]  # IndexError when out of range, like a list
        if key not in self.names:
            raise _error(self.path, f"data/{key}", f"no such episode; expected one of {self.names}")
        return key

    def episode(self, key: int | str) -> Episode:
        """Episode by position in ``names`` or by name; values are checked (finite floats)."""
        name = self._name_of(key)
        g = self._data[name]
        where = f"data/{name}"
        obs = {}
        for k, ds in g["obs"].items():
            arr = ds[()]
            if arr.dtype.kind == "f":
                arr = arr.astype(np.float32, copy=False)
                _check_finite(self.path, f"{where}/obs/{k}", arr)
            obs[k] = arr
        actions = g["actions"][()].astype(np.float32, copy=False)
        _check_finite(self.path, f"{where}/actions", actions)
        T = len(actions)
        if "rewards" in g:
            rewards = g["rewards"][()].astype(np.float32, copy=False)
            _check_finite(self.path, f"{where}/rewards", rewards)
        else:
            rewards = np.zeros(T, np.float32)
        if "dones" in g:
            dones = g["dones"][()].astype(bool)
        else:
            dones = np.zeros(T, bool)
            dones[-1] = True
        attrs = {k: _attr_value(v) for k, v in g.attrs.items()}
        return Episode(name, obs, actions, rewards, dones, attrs)

    def __iter__(self) -> Iterator[Episode]:
        for name in self.names:
            yield self.episode(name)

    def summary(self) -> list[dict[str, Any]]:
        """Per episode: name, length, return (sum of rewards), success (bool or None when not
        recorded), seed and source (None when not recorded). Reads attributes and rewards only."""
        rows = []
        for name, length in zip(self.names, self._lengths, strict=True):
            g = self._data[name]
            ret = float(np.sum(g["rewards"][()], dtype=np.float64)) if "rewards" in g else 0.0
            attrs = g.attrs
            success = _attr_value(attrs["success"]) if "success" in attrs else None
            rows.append(
                {
                    "name": name,
                    "length": length,
                    "return": ret,
                    "success": bool(success) if success is not None else None,
                    "seed": _attr_value(attrs["seed"]) if "seed" in attrs else None,
                    "source": _attr_value(attrs["source"]) if "source" in attrs else None,
                }
            )
        return rows

    def action_bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Element-wise min and max of all actions, each (Da,) float32 (None without episodes).
        Reads the actions only; non-finite values raise DemoError."""
        lo = hi = None
        for name in self.names:
            actions = self._data[name]["actions"][()].astype(np.float32, copy=False)
            _check_finite(self.path, f"data/{name}/actions", actions)
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


# ----------------------------------------------------------------------------------------------
# Writing


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    if os.name == "nt":  # directories cannot be opened (or fsynced) on Windows
        return
    _fsync_path(directory)


def replace_durably(src: Path, dst: Path) -> None:
    """fsync ``src``, rename it atomically over ``dst`` and fsync the directory: after this
    returns, ``dst`` holds the new content even if the machine loses power."""
    _fsync_path(src)
    os.replace(src, dst)
    _fsync_dir(dst.parent)


def temp_path_for(path: Path) -> Path:
    """A private temporary file next to ``path`` (same filesystem, so the rename is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _remove_stale_temp_files(path: Path) -> None:
    """Remove temporary files left next to ``path`` by writers that were killed."""
    if os.name == "nt" or not path.parent.is_dir():
        return
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.tmp$")
    for entry in path.parent.iterdir():
        m = pattern.match(entry.name)
        if not m or int(m.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            entry.unlink(missing_ok=True)
        except OSError:  # alive but not ours (PermissionError): leave it
            pass


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


def _prepare(
    path: Path,
    obs: Mapping[str, np.ndarray] | np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    dones: np.ndarray,
    attrs: Mapping[str, Any] | None,
) -> _PreparedEpisode:
    """Validate a new episode and convert it to the stored dtypes (before anything is written)."""
    where = "new episode"
    actions = np.asarray(actions)
    if actions.ndim != 2 or len(actions) == 0 or not _numeric(actions.dtype):
        raise _error(
            path,
            f"{where} actions",
            f"expected numeric shape (T, Da) with T >= 1, got {actions.shape} {actions.dtype}",
        )
    T = len(actions)
    actions = actions.astype(np.float32)
    _check_finite(path, f"{where} actions", actions)
    obs_dict = dict(obs) if isinstance(obs, Mapping) else {"state": obs}
    if not obs_dict:
        raise _error(path, f"{where} obs", "expected at least one observation key")
    stored_obs = {}
    for key, value in obs_dict.items():
        arr = np.asarray(value)
        if not isinstance(key, str) or not key or "/" in key:
            raise _error(path, f"{where} obs", f"expected key names without '/', got {key!r}")
        if arr.ndim < 1 or len(arr) != T or not _numeric(arr.dtype):
            raise _error(
                path,
                f"{where} obs/{key}",
                f"expected numeric shape ({T}, ...) (one per action), got {arr.shape} {arr.dtype}",
            )
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
            _check_finite(path, f"{where} obs/{key}", arr)
        elif arr.dtype.kind == "b":
            arr = arr.astype(np.uint8)
        stored_obs[key] = arr
    rewards = np.asarray(rewards)
    if rewards.shape != (T,) or not _numeric(rewards.dtype):
        raise _error(path, f"{where} rewards", f"expected shape ({T},), got {rewards.shape}")
    rewards = rewards.astype(np.float32)
    _check_finite(path, f"{where} rewards", rewards)
    dones = np.asarray(dones)
    if dones.shape != (T,) or not _numeric(dones.dtype):
        raise _error(path, f"{where} dones", f"expected shape ({T},), got {dones.shape}")
    dones = dones.astype(bool).astype(np.uint8)
    clean_attrs = {}
    for key, value in (attrs or {}).items():
        if key == "num_samples":
            continue  # set by the store
        if not _attr_ok(value):
            raise _error(
                path,
                f"{where} attrs[{key!r}]",
                f"expected str, bool, int, float or a 1-D numeric list, got {type(value).__name__}",
            )
        clean_attrs[key] = value
    return _PreparedEpisode(stored_obs, actions, rewards, dones, clean_attrs)


def _check_against_schema(path: Path, ep: _PreparedEpisode, schema: _Schema) -> None:
    where = "new episode"
    if ep.actions.shape[1] != schema.action_dim:
        raise _error(
            path,
            f"{where} actions",
            f"expected action dimension {schema.action_dim} like {schema.source}, "
            f"got {ep.actions.shape[1]}",
        )
    if set(ep.obs) != set(schema.obs):
        raise _error(
            path,
            f"{where} obs",
            f"expected keys {sorted(schema.obs)} like {schema.source}, got {sorted(ep.obs)}",
        )
    for key, arr in ep.obs.items():
        if tuple(arr.shape[1:]) != schema.obs[key][0]:
            raise _error(
                path,
                f"{where} obs/{key}",
                f"expected per-step shape {schema.obs[key][0]} like {schema.source}, "
                f"got {tuple(arr.shape[1:])}",
            )


def _file_schema(path: Path, data: h5py.Group) -> _Schema | None:
    names = _sorted_demo_names(data)
    return _check_demo_structure(path, data[names[0]], None)[1] if names else None


def _next_index(data: h5py.Group) -> int:
    indices = [_demo_index(n) for n in _sorted_demo_names(data)]
    counter = int(data.attrs.get(_NEXT_INDEX_ATTR, 0))
    return max([counter, *(i + 1 for i in indices)])


def _recount_total(data: h5py.Group) -> int:
    return int(sum(int(data[n]["actions"].shape[0]) for n in _sorted_demo_names(data)))


class DemoWriter:
    """Adds and removes episodes of a demonstration file; every call is durable when it returns.

    ``DemoWriter(path, env_args)`` creates the file on the first append (``env_args`` =
    {"env_name": gym id, "env_kwargs": {...}}, "type" defaults to robomimic's gym type); an
    existing file is validated and its env must match. Each change works on a private copy that
    is atomically renamed over the file, so a kill at any moment loses at most the change in
    progress. Cost: one copy of the file per call, so batch with ``append_episodes`` when
    writing many large (image) episodes. One writer per file at a time.
    """

    def __init__(self, path: str | os.PathLike, env_args: Mapping[str, Any] | None = None):
        self.path = Path(path)
        _remove_stale_temp_files(self.path)
        if self.path.exists():
            with DemoReader(self.path) as reader:
                self.env_args = reader.env_args
            if env_args is not None and env_args.get("env_name") != reader.env_id:
                raise _error(
                    self.path,
                    "data attribute env_args",
                    f"file holds episodes of env {reader.env_id!r}, "
                    f"cannot add episodes of {env_args.get('env_name')!r}",
                )
        elif env_args is None:
            raise _error(self.path, "env_args", "needed to create a new file, got None")
        else:
            self.env_args = _normalise_env_args(env_args)

    @contextmanager
    def _rewrite(self) -> Iterator[h5py.File]:
        """A writable private copy of the file (a new file when there is none); committed with
        fsync + atomic rename when the block exits normally, discarded otherwise."""
        tmp = temp_path_for(self.path)
        try:
            if self.path.exists():
                shutil.copyfile(self.path, tmp)
                f = h5py.File(tmp, "r+", libver=_LIBVER)
            else:
                f = h5py.File(tmp, "w", libver=_LIBVER)
                data = f.create_group("data")
                data.attrs["env_args"] = json.dumps(self.env_args)
                data.attrs["total"] = 0
            with f:
                yield f
            replace_durably(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

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
        names: list[str] = []
        with self._rewrite() as f:
            data = f["data"]
            schema = _file_schema(self.path, data)
            index = _next_index(data)
            added = 0
            for ep in episodes:
                if schema is None:
                    obs_info = {k: (tuple(a.shape[1:]), a.dtype) for k, a in ep.obs.items()}
                    schema = _Schema(obs_info, ep.actions.shape[1], "the first new episode")
                else:
                    _check_against_schema(self.path, ep, schema)
                name = f"demo_{index}"
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
                names.append(name)
                added += len(ep.actions)
                index += 1
            if not names:
                raise ValueError("append_episodes: expected at least one episode")
            total = int(data.attrs["total"]) + added if "total" in data.attrs else None
            data.attrs["total"] = _recount_total(data) if total is None else total
            data.attrs[_NEXT_INDEX_ATTR] = index
        return names

    def delete_episode(self, name: str) -> None:
        """Remove one episode (and its entries in masks); other names are kept. The file is
        rebuilt without it (which also reclaims its space), then atomically replaces the old one."""
        tmp = temp_path_for(self.path)
        try:
            with DemoReader(self.path) as reader, h5py.File(tmp, "w", libver=_LIBVER) as dst:
                if name not in reader.names:
                    raise _error(self.path, f"data/{name}", f"no such episode in {reader.names}")
                src = reader._file
                for key, value in src.attrs.items():
                    dst.attrs[key] = value
                for key in src:
                    if key not in ("data", "mask"):
                        src.copy(src[key], dst, name=key)
                data = dst.create_group("data")
                for key, value in src["data"].attrs.items():
                    data.attrs[key] = value
                for key in src["data"]:
                    if key != name:
                        src.copy(src["data"][key], data, name=key)
                data.attrs["total"] = _recount_total(data)
                data.attrs[_NEXT_INDEX_ATTR] = _next_index(src["data"])
                for mask_name in reader.mask_names:
                    kept = [n for n in _mask_entries(src, mask_name) if n != name]
                    dst.create_dataset(f"mask/{mask_name}", data=np.array(kept, dtype="S"))
            replace_durably(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def set_masks(self, masks: Mapping[str, Sequence[str]]) -> None:
        """Write ``mask/<name>`` lists of demo names (e.g. {"train": [...], "valid": [...]}) in
        one atomic change, replacing masks of the same names."""
        with self._rewrite() as f:
            known = set(_sorted_demo_names(f["data"]))
            for mask_name, names in masks.items():
                unknown = sorted(set(names) - known)
                if unknown:
                    raise _error(
                        self.path, f"mask/{mask_name}", f"expected names of episodes, got {unknown}"
                    )
                key = f"mask/{mask_name}"
                if key in f:
                    del f[key]
                f.create_dataset(key, data=np.array(list(names), dtype="S"))

    def close(self) -> None:
        """Nothing is held open between calls; present for symmetry with ``with``."""

    def __enter__(self) -> DemoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mask_entries(f: h5py.File, mask_name: str) -> list[str]:
    return [_attr_value(v) for v in np.atleast_1d(f[f"mask/{mask_name}"][()]).tolist()]
