"""Env-side action chunking: a wrapper whose step executes a whole chunk of actions."""

from __future__ import annotations

from collections import deque

import gymnasium as gym
import numpy as np


class ChunkedActionWrapper(gym.Wrapper):
    """Each ``step`` takes (action_horizon, *action_shape) and runs the actions in order, stopping
    early when the episode ends. Observations are the last ``obs_horizon`` frames stacked
    (obs_horizon, *obs_shape), padded by repeating the first: exactly what
    ``DiffusionPolicyAgent.predict_chunk`` takes.

    The reward is the sum over the executed actions; ``info["executed_steps"]`` says how many ran
    and ``info["step_infos"]`` holds each inner step's info.
    """

    def __init__(self, env: gym.Env, action_horizon: int, obs_horizon: int = 1):
        super().__init__(env)
        if not isinstance(env.action_space, gym.spaces.Box):
            raise TypeError(
                f"ChunkedActionWrapper needs a Box action space, got {env.action_space}"
            )
        if not isinstance(env.observation_space, gym.spaces.Box):
            raise TypeError(
                f"ChunkedActionWrapper needs a Box observation space, got {env.observation_space}"
            )
        self.action_horizon = action_horizon
        self.obs_horizon = obs_horizon
        a, o = env.action_space, env.observation_space
        self.action_space = gym.spaces.Box(
            np.broadcast_to(a.low, (action_horizon, *a.shape)),
            np.broadcast_to(a.high, (action_horizon, *a.shape)),
            dtype=a.dtype,
        )
        self.observation_space = gym.spaces.Box(
            np.broadcast_to(o.low, (obs_horizon, *o.shape)),
            np.broadcast_to(o.high, (obs_horizon, *o.shape)),
            dtype=o.dtype,
        )
        self._frames: deque[np.ndarray] = deque(maxlen=obs_horizon)

    def _stacked(self) -> np.ndarray:
        return np.stack(self._frames)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._frames.clear()
        self._frames.extend([obs] * self.obs_horizon)
        return self._stacked(), info

    def step(self, actions):
        actions = np.asarray(actions).reshape(self.action_space.shape)
        total, infos = 0.0, []
        terminated = truncated = False
        for action in actions:
            obs, reward, terminated, truncated, info = self.env.step(action)
            self._frames.append(obs)
            total += float(reward)
            infos.append(info)
            if terminated or truncated:
                break
        info = {**infos[-1], "executed_steps": len(infos), "step_infos": infos}
        return self._stacked(), total, terminated, truncated, info
