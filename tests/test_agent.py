"""The agent's contract: SB3 predict signature, per-env histories and action queues."""

import numpy as np
import pytest
import torch
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv
from support import PointEnv


class CountingDenoiser(torch.nn.Module):
    """Counts the chunk rows the wrapped denoiser is asked for (one forward per denoising step)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.rows, self.calls = inner, 0, 0

    def forward(self, x, k, cond):
        self.calls += 1
        self.rows += x.shape[0]
        return self.inner(x, k, cond)


def count_calls(agent):
    counter = CountingDenoiser(agent.policy.denoiser)
    agent.policy.denoiser = counter
    return counter


def test_single_observation_gives_one_action(tiny_agent):
    action, state = tiny_agent.predict(np.zeros(3, np.float32))
    assert action.shape == (2,) and state is None
    assert tiny_agent.obs_history(0).shape == (2, 3)


def test_history_is_padded_by_repeating_the_first_observation(tiny_agent):
    obs = np.array([0.1, 0.2, 0.3], np.float32)
    tiny_agent.predict(obs)
    np.testing.assert_array_equal(tiny_agent.obs_history(0), [obs, obs])
    obs2 = obs + 1
    tiny_agent.predict(obs2)
    np.testing.assert_array_equal(tiny_agent.obs_history(0), [obs, obs2])


def test_queue_executes_the_slice_starting_at_obs_horizon_minus_one(tiny_agent):
    cfg = tiny_agent.config
    first, _ = tiny_agent.predict(np.zeros(3, np.float32))
    plan = tiny_agent.last_plan(0)
    start = cfg.obs_horizon - 1
    np.testing.assert_allclose(first, np.clip(plan[start], -1, 1))
    queued = tiny_agent.queued_actions(0)
    assert len(queued) == cfg.action_horizon - 1
    np.testing.assert_allclose(queued, plan[start + 1 : start + cfg.action_horizon])


def test_network_runs_once_per_action_horizon_per_env_batched(tiny_agent):
    n_envs, ta, k = 4, tiny_agent.config.action_horizon, tiny_agent.num_inference_steps
    counter = count_calls(tiny_agent)
    obs = np.zeros((n_envs, 3), np.float32)
    for _ in range(3 * ta):
        actions, _ = tiny_agent.predict(obs)
        assert actions.shape == (n_envs, 2)
    assert tiny_agent.num_chunks_sampled == 3  # one batched call per re-plan
    assert counter.rows == 3 * n_envs * k  # 3 chunks per env, K denoiser rows each


def test_episode_start_clears_exactly_that_envs_queue_and_history(tiny_agent):
    obs = np.random.default_rng(0).uniform(-0.5, 0.5, (4, 3)).astype(np.float32)
    tiny_agent.predict(obs)
    tiny_agent.predict(obs)
    before = [tiny_agent.queued_actions(i) for i in range(4)]
    plans = [tiny_agent.last_plan(i) for i in range(4)]
    new_obs = obs + 0.25
    tiny_agent.predict(new_obs, episode_start=np.array([False, True, False, False]))
    # env 1 re-planned from a fresh history made of its new first observation
    assert not np.array_equal(tiny_agent.last_plan(1), plans[1])
    np.testing.assert_array_equal(tiny_agent.obs_history(1), [new_obs[1], new_obs[1]])
    assert len(tiny_agent.queued_actions(1)) == tiny_agent.config.action_horizon - 1
    for i in (0, 2, 3):  # the others just popped one more queued action
        np.testing.assert_array_equal(tiny_agent.queued_actions(i), before[i][1:])
        assert tiny_agent.last_plan(i) is plans[i]
        np.testing.assert_array_equal(tiny_agent.obs_history(i), [obs[i], new_obs[i]])


def test_deterministic_means_reproducible_sampling(tiny_agent):
    obs = np.full(3, 0.2, np.float32)
    a1, _ = tiny_agent.predict(obs, deterministic=True)
    tiny_agent.reset()
    a2, _ = tiny_agent.predict(obs, deterministic=True)
    tiny_agent.reset()
    a3, _ = tiny_agent.predict(obs, deterministic=False)
    tiny_agent.reset()
    a4, _ = tiny_agent.predict(obs, deterministic=False)
    np.testing.assert_array_equal(a1, a2)
    assert not np.array_equal(a3, a4)


def record_evaluation(agent, n_envs=4, episodes=8, horizon=10):
    """Every action of an SB3 evaluation with deterministic=True, and the denoiser rows used."""
    actions = []

    def callback(local_vars, _globals):  # called once per env per step
        if local_vars["i"] == 0:
            actions.append(local_vars["actions"].copy())

    venv = DummyVecEnv([lambda: PointEnv(horizon) for _ in range(n_envs)])
    venv.seed(7)
    counter = count_calls(agent)
    evaluate_policy(agent, venv, n_eval_episodes=episodes, deterministic=True, callback=callback)
    agent.policy.denoiser = counter.inner
    return np.stack(actions), counter.rows


def test_deterministic_evaluation_repeats_exactly_and_samples_only_replanning_envs(tiny_agent):
    first, rows = record_evaluation(tiny_agent)
    tiny_agent.reset()
    second, _ = record_evaluation(tiny_agent)
    np.testing.assert_array_equal(first, second)
    # each of the 8 episodes (10 steps) re-plans ceil(10 / Ta) times, one chunk row of K
    # denoiser rows each: rows are sampled for the envs that re-plan, never for all envs
    ta, k = tiny_agent.config.action_horizon, tiny_agent.num_inference_steps
    assert len(first) == 20
    assert rows == 8 * -(-10 // ta) * k


def test_deterministic_noise_differs_between_episodes_of_one_env(tiny_agent):
    obs = np.full(3, 0.2, np.float32)
    tiny_agent.predict(obs, deterministic=True)
    plan_episode_0 = tiny_agent.last_plan(0)
    tiny_agent.predict(obs, episode_start=np.array([True]), deterministic=True)
    plan_episode_1 = tiny_agent.last_plan(0)
    assert not np.allclose(plan_episode_0, plan_episode_1)  # same state, a new noise stream
    tiny_agent.reset()
    tiny_agent.predict(obs, deterministic=True)
    np.testing.assert_array_equal(tiny_agent.last_plan(0), plan_episode_0)


def test_deterministic_plan_of_an_env_does_not_depend_on_the_other_envs(tiny_agent):
    obs = np.random.default_rng(1).uniform(-0.5, 0.5, (3, 3)).astype(np.float32)
    tiny_agent.predict(obs, deterministic=True)
    together = tiny_agent.last_plan(2)
    tiny_agent.reset()
    tiny_agent.observe(obs)  # envs 0 and 1 get caller-made plans: only env 2 is sampled
    for i in (0, 1):
        tiny_agent.queue_plan(i, np.zeros((8, 2), np.float32))
    counter = count_calls(tiny_agent)
    tiny_agent.predict(obs, deterministic=True)
    assert counter.rows == tiny_agent.num_inference_steps  # one row
    # the same noise; only float rounding of a batch of 1 against a batch of 3 differs
    np.testing.assert_allclose(tiny_agent.last_plan(2), together, atol=1e-5)


def test_predict_chunk_returns_the_executed_slice_and_leaves_env_state_alone(tiny_agent):
    cfg = tiny_agent.config
    hist = np.random.default_rng(2).uniform(-0.5, 0.5, (cfg.obs_horizon, 3)).astype(np.float32)
    chunk = tiny_agent.predict_chunk(hist, deterministic=True)
    assert chunk.shape == (cfg.action_horizon, 2)
    assert np.all(np.abs(chunk) <= 1.0)  # clipped to the action space
    np.testing.assert_array_equal(tiny_agent.predict_chunk(hist, deterministic=True), chunk)
    batch = tiny_agent.predict_chunk(np.stack([hist, hist]), deterministic=True)
    assert batch.shape == (2, cfg.action_horizon, 2)
    assert tiny_agent.n_envs == 0  # no per-env history or queue was touched
    # the executed slice is [To-1, To-1+Ta) of the sampled chunk: same noise, same plan
    torch.manual_seed(0)
    plan = tiny_agent.sample(hist, 1, seed=tiny_agent.seed)[0]
    start = cfg.obs_horizon - 1
    np.testing.assert_allclose(chunk, np.clip(plan[start : start + cfg.action_horizon], -1, 1))


def test_sample_reports_each_iterate_while_it_is_computed(tiny_agent):
    seen = []
    hist = np.zeros((2, 3), np.float32)
    final = tiny_agent.sample(hist, 3, seed=4, on_step=lambda s: seen.append((s.step, s.sample)))
    assert [step for step, _ in seen] == list(range(tiny_agent.num_inference_steps + 1))
    assert all(isinstance(x, np.ndarray) and x.shape == (3, 8, 2) for _, x in seen)
    np.testing.assert_allclose(seen[-1][1], final)


def test_wrong_observation_shape_is_a_clear_error(tiny_agent):
    with pytest.raises(
        ValueError, match=r"observation has shape \(5,\); expected \(3,\) or \(n, \*\(3,\)\)"
    ):
        tiny_agent.predict(np.zeros(5, np.float32))


def test_sample_returns_every_denoising_iterate(tiny_agent):
    hist = np.zeros((2, 3), np.float32)
    traj = tiny_agent.sample(hist, num_samples=5, seed=1, return_trajectory=True)
    k = tiny_agent.num_inference_steps
    assert traj.shape == (k + 1, 5, 8, 2)
    final = tiny_agent.sample(hist, num_samples=5, seed=1)
    np.testing.assert_allclose(traj[-1], final)
    frames = list(tiny_agent.iter_denoise(hist, 5, sampler="ddpm", num_inference_steps=20, seed=1))
    assert [f.step for f in frames] == list(range(21)) and frames[-1].total == 20


def test_runs_in_sb3_evaluate_policy_with_a_4_env_dummy_vec_env(tiny_agent):
    # equal episode lengths: SB3 keeps stepping (and flagging episode_start for) envs that have
    # finished their share, so only then is the count of re-plans exact
    horizon, n_envs, per_env = 10, 4, 2
    venv = DummyVecEnv([lambda: PointEnv(horizon) for _ in range(n_envs)])
    counter = count_calls(tiny_agent)
    rewards, lengths = evaluate_policy(
        tiny_agent, venv, n_eval_episodes=n_envs * per_env, return_episode_rewards=True
    )
    assert lengths == [horizon] * (n_envs * per_env) and all(np.isfinite(rewards))
    ta, k = tiny_agent.config.action_horizon, tiny_agent.num_inference_steps
    chunks_per_episode = -(-horizon // ta)  # ceil: a fresh chunk every Ta steps and at each reset
    assert counter.rows == n_envs * per_env * chunks_per_episode * k
    assert tiny_agent.num_chunks_sampled == per_env * chunks_per_episode  # batched over envs


def test_caller_made_plans_are_queued_and_executed_in_order(tiny_agent):
    cfg = tiny_agent.config
    need = tiny_agent.observe(np.zeros((2, 3), np.float32))
    assert need == [0, 1]
    plans = np.arange(2 * cfg.pred_horizon * 2, dtype=np.float32).reshape(2, -1, 2) / 100
    for i in need:
        tiny_agent.queue_plan(i, plans[i])
    start = cfg.obs_horizon - 1
    np.testing.assert_allclose(tiny_agent.act(), plans[:, start])
    # the next observation needs no plan; predict pops the queue without sampling
    actions, _ = tiny_agent.predict(np.zeros((2, 3), np.float32))
    np.testing.assert_allclose(actions, plans[:, start + 1])
    assert tiny_agent.num_chunks_sampled == 0
    with pytest.raises(ValueError, match="a plan has shape"):
        tiny_agent.queue_plan(0, plans[0, :3])


def test_sampler_step_counts_default_per_sampler_not_from_the_previous_one(tiny_agent):
    tiny_agent.set_sampler("ddpm")
    assert tiny_agent.num_inference_steps == tiny_agent.config.num_train_steps
    tiny_agent.set_sampler("dpmsolver++")
    assert tiny_agent.num_inference_steps == tiny_agent.config.num_inference_steps
    frames = list(tiny_agent.iter_denoise(np.zeros((2, 3), np.float32), sampler="ddpm"))
    assert len(frames) == tiny_agent.config.num_train_steps + 1
