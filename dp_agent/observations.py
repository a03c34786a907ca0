"""Observations as dictionaries of named parts: one small spec (keys, shapes, dtypes, kinds)
travels from the demonstration store's ``obs/<key>`` datasets through the training windows, the
encoder and the checkpoint to the agent's per-part history.

A part is a *vector* (any float array, flattened) or an *image* (uint8, ``(H, W, C)`` or
``(C, H, W)`` with 1, 3 or 4 channels). A flat ``Box`` observation space is the one-part case
(``single``): the agent then takes and returns plain arrays instead of dicts.
Normalisation: vector parts are concatenated (in spec order) and min-max normalised per
dimension to [-1, 1]; images are scaled to [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

VECTOR, IMAGE = "vector", "image"
IMAGE_CHANNELS = (1, 3, 4)


class ObservationError(ValueError):
    """An observation or a space that does not fit the spec; the message names the part."""


def is_image(shape: tuple[int, ...], dtype) -> bool:
    """uint8 with three dimensions, one of them (first or last) a channel count."""
    return (
        np.dtype(dtype) == np.uint8
        and len(shape) == 3
        and (shape[-1] in IMAGE_CHANNELS or shape[0] in IMAGE_CHANNELS)
    )


@dataclass(frozen=True)
class ObsPart:
    key: str
    shape: tuple[int, ...]  # one frame, as the env gives it and the store keeps it
    dtype: str
    kind: str  # VECTOR or IMAGE

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def channels_last(self) -> bool:
        """Images: (H, W, C) rather than (C, H, W)."""
        return self.shape[-1] in IMAGE_CHANNELS

    @property
    def chw(self) -> tuple[int, int, int]:
        """Images: (C, H, W), whatever the stored layout."""
        return (self.shape[2], self.shape[0], self.shape[1]) if self.channels_last else self.shape


@dataclass(frozen=True)
class ObsSpec:
    parts: tuple[ObsPart, ...]
    single: bool = False  # one Box: observations are arrays, not dicts

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def from_space(cls, space: gym.Space) -> ObsSpec:
        """The spec of a ``Box`` (one part, key "obs") or a ``Dict`` of ``Box`` parts."""
        if isinstance(space, gym.spaces.Box):
            return cls((_part("obs", space.shape, space.dtype),), single=True)
        if isinstance(space, gym.spaces.Dict):
            bad = [k for k, s in space.spaces.items() if not isinstance(s, gym.spaces.Box)]
            if bad:
                raise ObservationError(f"observation parts {bad} are not Box spaces")
            return cls(tuple(_part(k, s.shape, s.dtype) for k, s in space.spaces.items()))
        raise ObservationError(f"observations must be a Box or a Dict of Box parts, got {space}")

    @classmethod
    def from_arrays(cls, obs: Mapping[str, np.ndarray] | np.ndarray, single_key: str = "obs"):
        """The spec of one episode's observations: per-key arrays (T, ...) or one array."""
        if isinstance(obs, Mapping):
            return cls(
                tuple(_part(k, np.shape(v)[1:], np.asarray(v).dtype) for k, v in obs.items())
            )
        obs = np.asarray(obs)
        return cls((_part(single_key, obs.shape[1:], obs.dtype),), single=True)

    @classmethod
    def vector(cls, dim: int, key: str = "obs") -> ObsSpec:
        """A single flat vector of ``dim`` values (checkpoints made before observation specs)."""
        return cls((ObsPart(key, (dim,), "float32", VECTOR),), single=True)

    def to_dict(self) -> dict[str, Any]:
        parts = [
            {"key": p.key, "shape": list(p.shape), "dtype": p.dtype, "kind": p.kind}
            for p in self.parts
        ]
        return {"single": self.single, "parts": parts}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ObsSpec:
        try:
            parts = tuple(
                ObsPart(
                    str(p["key"]),
                    tuple(int(n) for n in p["shape"]),
                    str(p["dtype"]),
                    str(p["kind"]),
                )
                for p in d["parts"]
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ObservationError(f"observation spec is malformed ({e})") from None
        if not parts or any(p.kind not in (VECTOR, IMAGE) for p in parts):
            raise ObservationError(f"observation spec has no parts or an unknown kind: {d}")
        return cls(parts, bool(d.get("single", False)))

    # ---- views --------------------------------------------------------------------------------
    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.parts]

    @property
    def vector_parts(self) -> list[ObsPart]:
        return [p for p in self.parts if p.kind == VECTOR]

    @property
    def image_parts(self) -> list[ObsPart]:
        return [p for p in self.parts if p.kind == IMAGE]

    @property
    def vector_dim(self) -> int:
        """Values per frame of all vector parts together (what the min-max normaliser sees)."""
        return sum(p.size for p in self.vector_parts)

    def describe(self) -> str:
        return ", ".join(f"{p.key} {p.kind} {p.shape} {p.dtype}" for p in self.parts)

    # ---- checks -----------------------------------------------------------------------------
    def check_space(self, space: gym.Space, where: str) -> None:
        """Raise ObservationError naming the first part where ``space`` differs from this spec."""
        try:
            theirs = ObsSpec.from_space(space)
        except ObservationError as e:
            raise ObservationError(f"{where}: {e}") from None
        if self.single or theirs.single:
            mine, other = self.parts[0], theirs.parts[0]
            if self.single != theirs.single or mine.shape != other.shape:
                raise ObservationError(
                    f"{where}: the policy observes {self.describe()}, the env gives {space}"
                )
            return
        by_key = {p.key: p for p in theirs.parts}
        for p in self.parts:
            q = by_key.get(p.key)
            if q is None:
                raise ObservationError(
                    f"{where}: part {p.key!r} is missing; the env has {sorted(by_key)}"
                )
            if (q.shape, q.kind) != (p.shape, p.kind):
                raise ObservationError(
                    f"{where}: part {p.key!r} is a {p.kind} {p.shape} in the policy but a "
                    f"{q.kind} {q.shape} in the env"
                )

    def as_parts(self, observation, leading: int) -> tuple[dict[str, np.ndarray], bool]:
        """An observation (or a batch of them) as per-part arrays with ``leading`` batch
        dimensions, e.g. leading=1 -> {key: (n, *shape)}; -> (parts, whether one was unbatched,
        i.e. had ``leading - 1`` batch dimensions)."""
        if self.single:
            if isinstance(observation, Mapping):
                raise ObservationError(f"expected one array ({self.describe()}), got a dict")
            observation = {self.parts[0].key: observation}
        elif not isinstance(observation, Mapping):
            raise ObservationError(f"expected a dict with parts {self.keys}, got an array")
        out, unbatched = {}, set()
        for p in self.parts:
            if p.key not in observation:
                raise ObservationError(f"part {p.key!r} is missing; got {sorted(observation)}")
            arr = np.asarray(observation[p.key])
            extra = arr.ndim - len(p.shape)
            if arr.shape[max(extra, 0) :] != p.shape or extra not in (leading - 1, leading):
                label = "observation" if self.single else f"part {p.key!r}"
                one = "(To, " * (leading - 1) + f"*{p.shape}" + ")" * (leading - 1)
                many = f"(B, {one[1:]}" if leading > 1 else f"(n, *{p.shape})"
                raise ObservationError(
                    f"{label} has shape {arr.shape}; expected {one if leading > 1 else p.shape} "
                    f"or {many}"
                )
            unbatched.add(extra == leading - 1)
            out[p.key] = arr[None] if extra == leading - 1 else arr
        if len(unbatched) > 1:
            raise ObservationError("some parts are batched and others are not")
        return out, unbatched.pop()


def _part(key: str, shape, dtype) -> ObsPart:
    shape = tuple(int(n) for n in shape)
    kind = IMAGE if is_image(shape, dtype) else VECTOR
    if kind == VECTOR and not (
        np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)
    ):
        raise ObservationError(f"part {key!r}: expected numbers, got dtype {dtype}")
    return ObsPart(key, shape, str(np.dtype(dtype)), kind)
