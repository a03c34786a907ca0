"""Evaluation: seeded episodes batched over a vector env (in process or in workers), success,
route shares and their 95% intervals."""

import gymnasium as gym
import numpy as np
import pytest

import dp_agent  # noqa: F401  (registers the tasks)
from dp_agent.evaluate import evaluate, wilson_interval


class WaypointAgent:
    """Drives round the tree (centre (256, 256)) on the left in even envs, the right in odd ones,
    then to the goal; observations are [agent_x, agent_y, goal_x, goal_y]."""

    def reset(self, n_envs):
        self.side = np.where(np.arange(n_envs) % 2 == 0, -1.0, 1.0)
        self.passed = np.zeros(n_envs, dtype=bool)

    def predict(self, obs, state=None, episode_start=None, deterministic=False):
        if episode_start is not None:
            self.passed[np.asarray(episode_start, dtype=bool)] = False
        agent, goal = obs[:, :2], obs[:, 2:]
        self.passed |= agent[:, 1] < 250
        waypoint = np.stack([256 + 110 * self.side, np.full(len(obs), 240.0)], axis=1)
        target = np.where(self.passed[:, None], goal, waypoint)
        step = target - agent
        step *= np.minimum(1.0, 40 / np.maximum(np.linalg.norm(step, axis=1), 1e-6))[:, None]
        return (agent + step).astype(np.float32), None


def test_evaluate_counts_episodes_success_and_route_shares():
    result = evaluate(WaypointAgent(), "dp_agent/TreeDetour-v0", episodes=12, seed=0, n_envs=4)
    s = result.summary()
    assert s["episodes"] == 12 and len(result.lengths) == 12
    assert s["success_rate"] == 1.0 and s["mean_max_reward"] == 1.0
    assert s["left_share"] == s["right_share"] == 0.5  # 3 waves of 2 left + 2 right
    assert result.sides[:4] == ["left", "right", "left", "right"]


class CoinEnv(gym.Env):
    """One-step episodes: success with probability 0.3, reward uniform in [0, 1] (mean 0.5)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        u = self.np_random.random(2)
        return np.zeros(1, np.float32), float(u[0]), True, False, {"is_success": u[1] < 0.3}


class ZeroAgent:
    def predict(self, obs, state=None, episode_start=None, deterministic=False):
        return np.zeros((len(obs), 1), np.float32), None


gym.register("test/Coin-v0", entry_point=CoinEnv)


def test_95_percent_intervals_cover_the_true_success_rate_and_score():
    covered_success = covered_score = 0
    for repeat in range(100):
        s = evaluate(ZeroAgent(), "test/Coin-v0", episodes=50, seed=1000 * repeat, n_envs=10)
        lo, hi = s.summary()["success_rate_ci"]
        covered_success += lo <= 0.3 <= hi
        lo, hi = s.summary()["mean_max_reward_ci"]
        covered_score += lo <= 0.5 <= hi
    assert covered_success >= 93 and covered_score >= 93


def test_wilson_interval_stays_in_range_and_narrows_with_more_episodes():
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0
    assert 0 < wilson_interval(0, 20)[1] < 0.2  # 0 of 20 still allows a small rate
    lo50, hi50 = wilson_interval(25, 50)
    lo500, hi500 = wilson_interval(250, 500)
    assert lo50 < lo500 < 0.5 < hi500 < hi50


def test_worker_processes_give_the_same_results_as_stepping_in_process():
    here = evaluate(WaypointAgent(), "dp_agent/TreeDetour-v0", episodes=6, seed=5, n_envs=3)
    there = evaluate(
        WaypointAgent(), "dp_agent/TreeDetour-v0", episodes=6, seed=5, n_envs=3, workers=True
    )
    assert here == there


@pytest.mark.slow
def test_eval_noise_seed_draws_other_rollouts_of_the_same_episodes(capsys):
    from dp_agent.cli.main import main
    from dp_agent.data.shipped import shipped_policy

    path = str(shipped_policy("dp_agent/TreeDetour-v0"))
    args = ["eval", path, "--episodes", "6", "--n-envs", "6", "--deterministic", "--in-process"]

    def lines(noise_seed: int) -> list[str]:
        assert main([*args, "--noise-seed", str(noise_seed)]) == 0
        return capsys.readouterr().out.splitlines()

    first, again, other = lines(0), lines(0), lines(1)
    assert first == again  # the same episodes and the same noise streams
    assert "noise_seed: 0" in [line.strip() for line in first]
    scores = [[line for line in out if "noise_seed" not in line] for out in (first, other)]
    assert scores[0] != scores[1]  # the same episode seeds, other draws of the policy
