"""Training windows cut from episodes: To observations and Tp actions per sample, padded by
repeating the episode's edge frames (To-1 before the start, Ta-1 after the end).

Episodes are read through a tiny interface (anything with ``.obs`` (an array or a dict of
per-part arrays) and ``.actions``, or a demonstration file); all windows are index arithmetic on
the concatenated data, no per-sample loop. Image parts stay uint8 on the training device; a
batch gathers only its own frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from dp_agent.observations import IMAGE, VECTOR, ObsSpec


class EpisodeLike(Protocol):
    obs: np.ndarray  # (T, Do) or a dict of per-key arrays
    actions: np.ndarray  # (T, Da)


@dataclass
class EpisodeArrays:
    obs: np.ndarray | dict[str, np.ndarray]  # (T, Do), or per part (T, *shape)
    actions: np.ndarray  # (T, Da) float32


def window_indices(
    episode_lengths: Sequence[int], obs_horizon: int, pred_horizon: int, action_horizon: int
) -> np.ndarray:
    """Frame indices into the concatenated episodes for every training window: (N, Tp) int64.

    Window starts run from -(To-1) to T-Tp+(Ta-1) in each episode; indices outside [0, T-1] are
    clamped, which repeats the first and last frames.
    """
    lengths = np.asarray(episode_lengths, dtype=np.int64)
    pad_before, pad_after = obs_horizon - 1, action_horizon - 1
    n_windows = np.maximum(lengths - pred_horizon + pad_before + pad_after + 1, 0)  # per episode
    episode_of = np.repeat(np.arange(len(lengths)), n_windows)  # (N,)
    first_window = np.cumsum(n_windows) - n_windows
    starts = np.arange(n_windows.sum()) - first_window[episode_of] - pad_before  # (N,)
    offsets = np.cumsum(lengths) - lengths
    local = starts[:, None] + np.arange(pred_horizon)[None, :]  # (N, Tp)
    local = np.clip(local, 0, lengths[episode_of][:, None] - 1)
    return local + offsets[episode_of][:, None]


def select_obs(obs, keys: Sequence[str] | None):
    """The parts ``keys`` of a dict observation (all when None); a lone vector part becomes the
    plain array it stands for (so its policy takes arrays, as a ``Box`` env gives them)."""
    if not isinstance(obs, dict):
        return obs
    keys = list(keys) if keys else sorted(obs)
    missing = [k for k in keys if k not in obs]
    if missing:
        raise ValueError(f"observation keys {missing} not found; the episodes have {sorted(obs)}")
    return {k: obs[k] for k in keys}


def obs_spec_of(obs) -> ObsSpec:
    """The spec of one episode's observations; one vector part is the single-array case."""
    spec = ObsSpec.from_arrays(obs)
    if not spec.single and len(spec.parts) == 1 and spec.parts[0].kind == VECTOR:
        return ObsSpec(spec.parts, single=True)
    return spec


def load_episodes(source, obs_keys: Sequence[str] | None = None) -> list[EpisodeArrays]:
    """Episodes from a demonstration file path (opened and closed here), a DemoReader, or an
    iterable of episode-likes; observations keep their parts (``obs_keys`` selects some)."""
    if isinstance(source, (str, Path)):
        from dp_agent.data import DemoReader

        with DemoReader(source) as reader:  # closed on errors too, not when they are freed
            return load_episodes(reader, obs_keys)
    return [
        EpisodeArrays(select_obs(ep.obs, obs_keys), np.asarray(ep.actions, dtype=np.float32))
        for ep in source
    ]


class WindowDataset:
    """All training windows of a set of episodes, held as tensors on one device.

    ``batch(idx)`` gathers, for window indices idx, the observations (B, To, Do) — for a spec of
    several parts a dict {key: (B, To, *shape)}, images uint8 — and actions (B, Tp, Da).
    ``obs`` is every frame's vector parts, concatenated (F, Dv): what the normaliser is fit on.
    """

    def __init__(
        self,
        episodes: Iterable[EpisodeLike],
        obs_horizon: int,
        pred_horizon: int,
        action_horizon: int,
        device: str | torch.device = "cpu",
    ):
        episodes = list(episodes)
        if not episodes:
            raise ValueError("no episodes to train on")
        self.spec = obs_spec_of(episodes[0].obs)
        parts = _stack_parts(episodes, self.spec)  # key -> (F, *shape)
        lengths = [len(ep.actions) for ep in episodes]
        vectors = [parts[p.key].reshape(len(parts[p.key]), -1) for p in self.spec.vector_parts]
        self.obs = np.concatenate(vectors, axis=1) if vectors else np.zeros((sum(lengths), 0))
        self.obs = self.obs.astype(np.float32)  # (F, Dv)
        self.actions = np.concatenate([ep.actions for ep in episodes]).astype(np.float32)
        self.num_episodes = len(episodes)
        self.obs_horizon = obs_horizon
        index = window_indices(lengths, obs_horizon, pred_horizon, action_horizon)
        if len(index) == 0:
            raise ValueError(
                f"episodes are too short for pred_horizon={pred_horizon} "
                f"(longest has {max(lengths)} steps)"
            )
        self.device = torch.device(device)
        self._parts = {
            p.key: torch.as_tensor(
                parts[p.key] if p.kind == IMAGE else parts[p.key].astype(np.float32),
                device=self.device,
            )
            for p in self.spec.parts
        }
        self._actions = torch.as_tensor(self.actions, device=self.device)
        self._index = torch.as_tensor(index, device=self.device)  # (N, Tp)

    def __len__(self) -> int:
        return len(self._index)

    @property
    def obs_dim(self) -> int:
        """Values per frame of the vector parts."""
        return self.obs.shape[1]

    @property
    def action_dim(self) -> int:
        return self.actions.shape[1]

    def batch(self, idx: torch.Tensor):
        frames = self._index[idx]  # (B, Tp)
        seen = frames[:, : self.obs_horizon]  # (B, To)
        obs = {key: part[seen] for key, part in self._parts.items()}  # (B, To, *shape)
        actions = self._actions[frames]  # (B, Tp, Da)
        if self.spec.single:
            return obs[self.spec.parts[0].key].flatten(2), actions  # (B, To, Do)
        return obs, actions


def _stack_parts(episodes: list, spec: ObsSpec) -> dict[str, np.ndarray]:
    """Every part of every episode concatenated over frames, checked against the first episode
    (same parts, shapes and one observation per action). Copied into one preallocated array per
    part; a dict episode's part is then replaced by its view into that array, so that its own
    copy can be freed and a dataset of images is held once, not twice, while it is stacked."""
    total = sum(len(ep.actions) for ep in episodes)
    out: dict[str, np.ndarray] = {}
    offset = 0
    for k, ep in enumerate(episodes):
        obs = ep.obs if isinstance(ep.obs, dict) else {spec.parts[0].key: ep.obs}
        if len(obs) != len(spec.parts) or any(p.key not in obs for p in spec.parts):
            raise ValueError(
                f"episode {k}: observation parts {sorted(obs)}, episode 0 has {spec.keys}"
            )
        n = len(ep.actions)
        for p in spec.parts:
            arr = np.asarray(obs[p.key])
            if arr.shape[1:] != p.shape:
                raise ValueError(
                    f"episode {k}: observations of shape {arr.shape[1:]} in part {p.key!r}, "
                    f"episode 0 has {p.shape}"
                )
            if len(arr) != n:
                raise ValueError(
                    f"episode {k}: {len(arr)} observations but {n} actions "
                    "(expected one observation per action)"
                )
            if p.key not in out:
                out[p.key] = np.empty((total, *p.shape), dtype=arr.dtype)
            out[p.key][offset : offset + n] = arr
            if isinstance(ep.obs, dict):
                ep.obs[p.key] = out[p.key][offset : offset + n]
        offset += n
    return out
