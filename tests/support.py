"""Test support: a small point-reaching env and tiny policies that build in milliseconds."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class PointEnv(gym.Env):
    """A 2-D point that moves to the commanded target; episodes last ``horizon`` steps."""

    metadata = {"render_modes": []}

    def __init__(self, horizon: int = 20):
        self.horizon = horizon
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-0.5, 0.5, 2).astype(np.float32)
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return np.array([*self.pos, self.t / self.horizon], dtype=np.float32)

    def step(self, action):
        self.pos = np.clip(0.5 * self.pos + 0.5 * np.asarray(action, np.float32), -1, 1)
        self.t += 1
        reward = float(-np.linalg.norm(self.pos))
        return self._obs(), reward, False, self.t >= self.horizon, {"is_success": False}


def tiny_policy(obs_dim=3, action_dim=2, **overrides):
    from dp_agent.config import make_configs
    from dp_agent.policy import DiffusionPolicy

    base = {
        "obs_dim": obs_dim,
        "action_dim": action_dim,
        "down_dims": (16, 32),
        "step_embed_dim": 16,
        "obs_feature_dim": 8,
        "pred_horizon": 8,
        "action_horizon": 4,
        "num_inference_steps": 4,
    }
    pc, _ = make_configs("cpu-small", {**base, **overrides})
    policy = DiffusionPolicy(pc)
    rng = np.random.default_rng(0)
    policy.fit_normalizers(
        rng.uniform(-1, 1, (100, obs_dim)), rng.uniform(-1, 1, (100, action_dim))
    )
    return policy.eval()
