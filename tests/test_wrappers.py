"""ChunkedActionWrapper: env-side action chunking, what ``predict_chunk`` takes and returns."""

import gymnasium as gym
import numpy as np
import pytest
from support import PointEnv

from dp_agent import ChunkedActionWrapper


class Recorder(PointEnv):
    """PointEnv that remembers the actions it was given."""

    def reset(self, **kw):
        self.actions = []
        return super().reset(**kw)

    def step(self, action):
        self.actions.append(np.asarray(action).copy())
        return super().step(action)


def test_one_wrapper_step_runs_the_chunks_actions_in_order():
    env = ChunkedActionWrapper(Recorder(horizon=20), action_horizon=4, obs_horizon=2)
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape == (2, 3)
    np.testing.assert_array_equal(obs[0], obs[1])  # padded by repeating the first frame
    chunk = np.linspace(-0.5, 0.5, 8, dtype=np.float32).reshape(4, 2)
    obs, reward, terminated, truncated, info = env.step(chunk)
    np.testing.assert_array_equal(np.stack(env.unwrapped.actions), chunk)
    assert info["executed_steps"] == 4 and len(info["step_infos"]) == 4
    assert obs[-1][2] == pytest.approx(4 / 20)  # the newest frame is after the 4th step
    assert obs[0][2] == pytest.approx(3 / 20)


def test_reward_is_the_sum_and_the_chunk_stops_when_the_episode_ends():
    inner = Recorder(horizon=6)
    env = ChunkedActionWrapper(inner, action_horizon=4)
    env.reset(seed=1)
    chunks = np.random.default_rng(0).uniform(-1, 1, (2, 4, 2)).astype(np.float32)
    env.step(chunks[0])
    _, reward, _, truncated, info = env.step(chunks[1])
    assert truncated and info["executed_steps"] == 2  # steps 5 and 6, then the episode ended
    assert len(inner.actions) == 6
    plain = PointEnv(horizon=6)  # the same actions, one at a time
    plain.reset(seed=1)
    rewards = [plain.step(a)[1] for a in chunks.reshape(-1, 2)[:6]]
    assert reward == pytest.approx(sum(rewards[4:]))


def test_agent_chunks_drive_the_wrapped_env(tiny_agent):
    cfg = tiny_agent.config
    env = ChunkedActionWrapper(PointEnv(), cfg.action_horizon, cfg.obs_horizon)
    obs, _ = env.reset(seed=3)
    for _ in range(3):
        obs, *_ = env.step(tiny_agent.predict_chunk(obs))
    assert env.observation_space.contains(obs)


def test_dict_observation_spaces_are_refused_with_a_clear_error():
    class DictEnv(PointEnv):
        def __init__(self):
            super().__init__()
            self.observation_space = gym.spaces.Dict({"x": self.observation_space})

    with pytest.raises(TypeError, match="Box observation space"):
        ChunkedActionWrapper(DictEnv(), 4)
