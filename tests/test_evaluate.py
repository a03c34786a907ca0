"""Evaluation: seeded episodes batched over envs, success and route shares."""

import numpy as np

import dp_agent  # noqa: F401  (registers the tasks)
from dp_agent.evaluate import evaluate


class WaypointAgent:
    """Drives round the tree (centre (256, 256)) on the left in even envs, the right in odd ones,
    then to the goal; observations are [agent_x, agent_y, goal_x, goal_y]."""

    def reset(self, n_envs):
        self.side = np.where(np.arange(n_envs) % 2 == 0, -1.0, 1.0)
        self.passed = np.zeros(n_envs, dtype=bool)

    def predict(self, obs, deterministic=False):
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
