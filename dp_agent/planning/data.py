"""A planner's data: episodes of (state, action) vectors conditioned on the goal, cut from
demonstrations, and their H-step windows with discounted returns (a value network's targets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dp_agent.planning.config import PlannerConfig
from dp_agent.training.windows import EpisodeArrays, window_indices


class TrajectoryEpisodes(list):
    """Episodes for ``dp_agent.training.train.train``: ``obs`` the goal (T, Dg) (zeros (T, 1)
    without a goal), ``actions`` the trajectory (T, Ds+Da) = (state, action) per step. Carries
    the source file's ``path``, ``env_id`` and ``env_args`` as a ``DemoReader`` does, and the
    per-step ``rewards`` (T,) of each episode (for a value guide)."""

    path: str = "in-memory episodes"
    env_id: str | None = None
    env_args: dict = {}
    rewards: list[np.ndarray]
    state_dim: int = 0
    action_dim: int = 0
    goal_dim: int = 0


def trajectory_episodes(demos, config: PlannerConfig) -> TrajectoryEpisodes:
    """Cut a demonstration file (path or DemoReader) or episode-likes (``obs``, ``actions``,
    optional ``rewards``) into ``TrajectoryEpisodes``. With ``hold_end`` each episode gets H-1
    more frames holding its final state (velocity zero, action zero, reward repeated), so that
    windows near the end show an arrival and a rest, as a plan to a goal ends."""
    if isinstance(demos, (str, Path)):
        from dp_agent.data import DemoReader

        with DemoReader(demos) as reader:  # closed once read, on errors too
            return trajectory_episodes(reader, config)
    out = TrajectoryEpisodes()
    out.path = str(getattr(demos, "path", "in-memory episodes"))
    out.env_id = getattr(demos, "env_id", None)
    out.env_args = dict(getattr(demos, "env_args", {}) or {})
    out.rewards = []
    for ep in demos:
        states = _part(ep.obs, config.state_key, "state_key")  # (T, Ds)
        actions = np.asarray(ep.actions, np.float32).reshape(len(states), -1)  # (T, Da)
        if config.goal_key:
            goal = _part(ep.obs, config.goal_key, "goal_key")
        else:
            goal = np.zeros((len(states), 1), np.float32)
        rewards = np.asarray(getattr(ep, "rewards", np.zeros(len(states))), np.float32)
        if config.hold_end:
            states, actions, goal, rewards = _hold_end(states, actions, goal, rewards, config)
        out.append(EpisodeArrays(goal, np.concatenate([states, actions], axis=1)))
        out.rewards.append(rewards)
    if not out:
        raise ValueError(f"{out.path}: no episodes to plan from")
    out.state_dim, out.action_dim, out.goal_dim = states.shape[1], actions.shape[1], goal.shape[1]
    return out


def _part(obs, key: str | None, what: str) -> np.ndarray:
    if not isinstance(obs, dict):
        return np.asarray(obs, np.float32).reshape(len(obs), -1)
    if key not in obs:
        raise ValueError(
            f"PlannerConfig.{what} {key!r} is not an observation part; the demos have {sorted(obs)}"
        )
    return np.asarray(obs[key], np.float32).reshape(len(obs[key]), -1)


def _hold_end(states, actions, goal, rewards, config: PlannerConfig):
    n = config.horizon - 1
    held = np.repeat(states[-1:], n, axis=0)
    held[:, list(config.velocity_dims)] = 0.0
    return (
        np.concatenate([states, held]),
        np.concatenate([actions, np.zeros((n, actions.shape[1]), np.float32)]),
        np.concatenate([goal, np.repeat(goal[-1:], n, axis=0)]),
        np.concatenate([rewards, np.repeat(rewards[-1:], n)]),
    )


def trajectory_windows(data: TrajectoryEpisodes, horizon: int, discount: float):
    """Every H-step window of the episodes: trajectories (N, H, D) and their discounted returns
    Σ_t γ^t r_t (N,), the targets of a value network."""
    lengths = [len(ep.actions) for ep in data]
    index = window_indices(lengths, 1, horizon, 1)  # (N, H)
    traj = np.concatenate([ep.actions for ep in data])[index]  # (N, H, D)
    rewards = np.concatenate(data.rewards)[index]  # (N, H)
    return traj, rewards @ (discount ** np.arange(horizon))
