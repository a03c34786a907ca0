"""Scripted experts solve their tasks with learnable, human-like motions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import dp_agent  # noqa: F401  (registers the envs)
from dp_agent.envs import PUSHT_ID, TREE_DETOUR_ID
from dp_agent.envs.experts import MAX_LEAD, make_expert, plan_path


def run_episode(env: gym.Env, seed: int) -> dict:
    expert = make_expert(env)
    obs, info = env.reset(seed=seed)
    expert.reset(seed)
    actions, leads, max_coverage = [], [], info.get("coverage", 0.0)
    while True:
        agent = env.unwrapped.agent_position
        action = expert.act(obs)
        assert action.shape == (2,) and action.dtype == np.float32
        assert env.action_space.contains(action)
        actions.append(action)
        leads.append(float(np.hypot(*(action - agent))))
        obs, reward, terminated, truncated, info = env.step(action)
        max_coverage = max(max_coverage, info.get("coverage", 0.0))
        if terminated or truncated:
            return {
                "actions": np.array(actions),
                "max_lead": max(leads),
                "max_coverage": max_coverage,
                "info": info,
                "length": len(actions),
            }


def test_pusht_expert_pushes_the_t_home():
    env = gym.make(PUSHT_ID)
    results = [run_episode(env, seed) for seed in (0, 5, 11, 17)]
    assert all(r["max_coverage"] >= 0.9 for r in results), [r["max_coverage"] for r in results]
    assert sum(r["info"]["is_success"] for r in results) >= 3
    assert all(r["max_lead"] <= MAX_LEAD + 1e-3 for r in results)


def test_pusht_expert_is_deterministic_for_a_seed_and_works_with_pixels():
    env = gym.make(PUSHT_ID, obs_type="pixels")
    a = run_episode(env, 14)["actions"]
    b = run_episode(env, 14)["actions"]
    assert np.array_equal(a, b)


def test_tree_detour_expert_goes_both_ways_and_never_touches_the_tree():
    env = gym.make(TREE_DETOUR_ID)
    results = [run_episode(env, seed) for seed in range(20)]
    assert all(r["info"]["is_success"] and not r["info"]["hit_tree"] for r in results)
    sides = {r["info"]["side"] for r in results}
    assert sides == {"left", "right"}
    assert all(r["max_lead"] <= MAX_LEAD + 1e-3 for r in results)
    lengths = {r["length"] for r in results}
    assert len(lengths) > 5  # speed varies between episodes


def test_travel_path_goes_round_the_block():
    pose = np.array([256.0, 256.0, 0.0])  # upright T: crossbar y in [256, 286], stem below
    path = plan_path(np.array([256.0, 200.0]), np.array([256.0, 420.0]), pose)
    assert path is not None
    xs = np.array([p[0] for p in path])
    assert np.abs(xs - 256.0).max() > 60 + 15  # went round the crossbar's end


def test_make_expert_rejects_other_envs():
    with pytest.raises(TypeError, match="PushT or TreeDetour"):
        make_expert(gym.make("CartPole-v1"))


def test_tree_detour_route_choice_is_independent_of_the_start_position():
    import gymnasium as gym

    from dp_agent.envs.experts import make_expert

    env = gym.make("dp_agent/TreeDetour-v0")
    expert = make_expert(env)
    left_of_centre, right_of_centre = [], []
    for seed in range(200):
        obs, _ = env.reset(seed=seed)
        expert.reset(seed=seed)
        (left_of_centre if obs[0] < 256 else right_of_centre).append(expert.side == "left")
    # the coin flip must not follow the start x: both routes from both halves of the start box
    assert 0.3 < np.mean(left_of_centre) < 0.7
    assert 0.3 < np.mean(right_of_centre) < 0.7
