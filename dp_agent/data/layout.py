"""What a demonstration file holds: the robomimic layout, ``Episode`` (one episode in memory) and
the one set of structure checks shared by reading, writing and merging.

Layout (robomimic)::

    data                      attrs: total (int), env_args (JSON: env_name, type, env_kwargs)
    data/demo_N               attrs: num_samples (int), optional success, seed, source, ...
    data/demo_N/obs/<key>     (T, ...) float32 (or uint8 images)
    data/demo_N/actions       (T, Da) float32
    data/demo_N/rewards       (T,) float32
    data/demo_N/dones         (T,) uint8
    mask/<name>               optional, byte strings of demo names (e.g. mask/train, mask/valid)

A file is read only inside itself: on open, before any data is read, every link of the file is
walked and external links, soft links that leave their episode, external raw storage and virtual
datasets are refused; and a dataset is read only once its declared size is known to fit in what
the file stores (a few KB cannot declare terabytes).
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .errors import _HDF5_ERRORS, DemoError, _error, _hdf5_errors

__all__ = ["GYM_ENV_TYPE", "Episode", "stack_obs"]

GYM_ENV_TYPE = 2  # robomimic's EnvType.GYM_TYPE, the "type" in env_args for Gymnasium envs
_DEMO_NAME = re.compile(r"^demo_(\d+)$")
_NEXT_INDEX_ATTR = "next_demo_index"  # keeps demo_N names unique after deletes


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
# The layout as found in a file: names, attributes, env_args and the structure of an episode


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


def _mask_entries(path: Path, f: h5py.File, mask_name: str) -> list[str]:
    where = f"mask/{mask_name}"
    return [_attr_value(v) for v in np.atleast_1d(_read_whole(path, where, f[where])).tolist()]


def _member(group: h5py.Group, name: str) -> Any:
    """``group[name]``, or None when there is no such member. (h5py's ``get`` also says None
    when the member is there but its header is damaged: that must raise, not read as missing.)"""
    return group[name] if name in group else None


def _open_hdf5(path: Path, inside: str | None = "") -> h5py.File:
    """Open ``path`` read-only and check that its group ``inside`` (the whole file by default;
    None: the caller checks what it reads) holds its own data (``_check_inside``), or raise one
    DemoError saying why it is not a demo file; on error nothing is left open."""
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
        f = h5py.File(path, "r")
    try:
        if inside is not None:
            _check_inside(path, f, inside)
    except BaseException:
        f.close()
        raise
    return f


# ----------------------------------------------------------------------------------------------
# A file is read only inside itself, and only as much as it stores

_REFUSED = "a demonstration file must hold its own data; refused before reading anything"
# Declared sizes up to this are read whatever the file stores (fill values of a small dataset).
_SMALL_BYTES = 1 << 16
# Deflate (gzip) compresses at most about 1032:1; any filter is allowed that much.
_MAX_COMPRESSION = 1100
# No dataset of a demonstration file is read whole beyond this (an episode's images are MBs).
_MAX_DATASET_BYTES = 1 << 34


def _episode_scope(name: str) -> str | None:
    """``/data/demo_N`` for a member of episode demo_N (``data/demo_N/...``), else None."""
    parts = name.split("/")
    if len(parts) >= 3 and parts[0] == "data" and _DEMO_NAME.match(parts[1]):
        return f"/data/{parts[1]}"
    return None


def _outside(f: h5py.File, raw: bytes, name: str, link_type: int) -> str | None:
    """Why the link ``name`` (``raw``, as HDF5 stores it) of ``f`` leads outside the file or its
    episode, or None. Reads the link and, for a dataset, its creation properties; no data."""
    if link_type == h5py.h5l.TYPE_EXTERNAL:
        filename, target = (_attr_value(v) for v in f.id.links.get_val(raw))
        return f"external link to {filename!r}:{target}; {_REFUSED}"
    if link_type == h5py.h5l.TYPE_SOFT:
        target = _attr_value(f.id.links.get_val(raw))
        scope = _episode_scope(name)
        resolved = posixpath.normpath(posixpath.join("/" + posixpath.dirname(name), target))
        if scope is None or not resolved.startswith(scope + "/"):
            return f"soft link to {target} leaves {scope or 'its episode'}; {_REFUSED}"
        return None
    if link_type != h5py.h5l.TYPE_HARD:
        return f"a link of user-defined type {link_type}; {_REFUSED}"
    obj = h5py.h5o.open(f.id, raw)  # through hard links only: the walk follows no other
    if not isinstance(obj, h5py.h5d.DatasetID):
        return None
    dcpl = obj.get_create_plist()
    if dcpl.get_external_count() > 0:
        other = _attr_value(dcpl.get_external(0)[0])
        return f"raw data stored in another file ({other!r}, external storage); {_REFUSED}"
    if dcpl.get_layout() == h5py.h5d.VIRTUAL:
        return f"a virtual dataset (it maps data of other files); {_REFUSED}"
    return None


def _check_inside(path: Path, f: h5py.File, group: str = "", walk: bool = True) -> None:
    """Raise one DemoError naming the link or dataset unless ``group`` of ``f`` (the root by
    default) is reached through hard links and, with ``walk``, every link below it stays inside
    the file: no external link, no soft link out of its episode, no external storage, no virtual
    dataset. Walks the links without following soft or external ones (HDF5's H5Lvisit); a
    damaged link or object header raises DemoError naming it."""
    stopped: list[tuple[str, str | BaseException]] = []  # (link, why it was refused or error)
    prefix = f"{group.strip('/')}/" if group.strip("/") else ""

    def check(raw: bytes, link_type: int) -> bool | None:
        # h5py turns an exception escaping a visit callback into a SystemError: none may escape
        name = raw.decode("utf-8", "surrogateescape")
        try:
            why = _outside(f, raw, name, link_type)
        except _HDF5_ERRORS as exc:
            why = exc
        if why is None:
            return None
        stopped.append((name, why))
        return True  # stops the walk

    with _hdf5_errors(path, prefix.rstrip("/") or "links"):
        parts = prefix.rstrip("/").split("/") if prefix else []
        for i in range(len(parts)):  # the group itself, through hard links only
            raw = "/".join(parts[: i + 1]).encode("utf-8", "surrogateescape")
            if check(raw, f.id.links.get_info(raw).type):
                break
        if walk and not stopped:
            g = f[prefix.rstrip("/")] if prefix else f
            g.id.links.visit(lambda raw, info: check(prefix.encode() + raw, info.type), info=True)
    if stopped:
        name, why = stopped[0]
        if isinstance(why, str):
            raise _error(path, name, why)
        with _hdf5_errors(path, name):
            raise why


def _read_whole(path: Path, where: str, dset: h5py.Dataset) -> np.ndarray:
    """``dset[()]``, once its declared size is known to fit in what the file stores (its storage,
    times what compression can achieve when a filter is set) and a sane limit; a declared size
    beyond them raises DemoError naming ``where`` before anything is allocated. Call it inside
    ``_hdf5_errors``."""
    declared = int(dset.size or 0) * dset.dtype.itemsize
    if declared > _SMALL_BYTES:
        stored = dset.id.get_storage_size()
        filtered = dset.id.get_create_plist().get_nfilters() > 0
        can_hold = min(stored * (_MAX_COMPRESSION if filtered else 1), _MAX_DATASET_BYTES)
        if declared > can_hold:
            how = "compressed " if filtered else ""
            raise _error(
                path,
                where,
                f"declares {tuple(dset.shape)} {dset.dtype} ({declared:,} bytes) but the file "
                f"stores {stored:,} {how}bytes of it (at most {can_hold:,} can be read); refused",
            )
    return dset[()]


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
