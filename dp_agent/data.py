"""Training windows cut from episodes: To observations and Tp actions per sample, padded by
repeating the episode's edge frames (To-1 before the start, Ta-1 after the end).

Episodes are read through a tiny interface (anything with ``.obs`` and ``.actions`` arrays, or a
demonstration file); all windows are index arithmetic on the concatenated data, no per-sample loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch


class EpisodeLike(Protocol):
    obs: np.ndarray  # (T, Do) or a dict of per-key arrays
    actions: np.ndarray  # (T, Da)


@dataclass
class EpisodeArrays:
    obs: np.ndarray  # (T, Do) float32
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


def flatten_obs(obs, keys: Sequence[str] | None = None) -> np.ndarray:
    """Per-key arrays (T, ...) -> (T, Do), keys in the given or sorted order; arrays -> (T, Do)."""
    if isinstance(obs, dict):
        keys = list(keys) if keys else sorted(obs)
        missing = [k for k in keys if k not in obs]
        if missing:
            raise ValueError(
                f"observation keys {missing} not found; the episodes have {sorted(obs)}"
            )
        parts = [np.asarray(obs[k], dtype=np.float32).reshape(len(obs[k]), -1) for k in keys]
        return np.concatenate(parts, axis=1)
    obs = np.asarray(obs, dtype=np.float32)
    return obs.reshape(len(obs), -1)


def load_episodes(source, obs_keys: Sequence[str] | None = None) -> list[EpisodeArrays]:
    """Episodes from a demonstration file path, a DemoReader, or an iterable of episode-likes."""
    if isinstance(source, (str, Path)):
        from dp_agent.demos import DemoReader

        source = DemoReader(source)
    return [
        EpisodeArrays(flatten_obs(ep.obs, obs_keys), np.asarray(ep.actions, dtype=np.float32))
        for ep in source
    ]


class WindowDataset:
    """All training windows of a set of episodes, held as tensors on one device.

    ``batch(idx)`` gathers obs (B, To, Do) and actions (B, Tp, Da) for window indices idx.
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
        for k, ep in enumerate(episodes):
            if len(ep.obs) != len(ep.actions):
                raise ValueError(
                    f"episode {k}: {len(ep.obs)} observations but {len(ep.actions)} actions "
                    "(expected one observation per action)"
                )
            if ep.obs.shape[1:] != episodes[0].obs.shape[1:]:
                raise ValueError(
                    f"episode {k}: observations of shape {ep.obs.shape[1:]}, episode 0 has "
                    f"{episodes[0].obs.shape[1:]}"
                )
        lengths = [len(ep.actions) for ep in episodes]
        self.obs = np.concatenate([ep.obs for ep in episodes]).astype(np.float32)  # (F, Do)
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
        self._obs = torch.as_tensor(self.obs, device=self.device)
        self._actions = torch.as_tensor(self.actions, device=self.device)
        self._index = torch.as_tensor(index, device=self.device)  # (N, Tp)

    def __len__(self) -> int:
        return len(self._index)

    @property
    def obs_dim(self) -> int:
        return self.obs.shape[1]

    @property
    def action_dim(self) -> int:
        return self.actions.shape[1]

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = self._index[idx]  # (B, Tp)
        obs = self._obs[frames[:, : self.obs_horizon]]  # (B, To, Do)
        actions = self._actions[frames]  # (B, Tp, Da)
        return obs, actions
