"""Trajectory planning: inpainting is exact for every sampler, a trajectory model learns two
routes and the inpainted goal picks one, planner files load in one call, and the planner agent
keeps the SB3 contract with batched planning."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv
from support import tiny_policy

import dp_agent  # noqa: F401  (registers the envs)
from dp_agent.config import PolicyConfig, TrainConfig
from dp_agent.planning.config import PlannerConfig, make_planner_configs
from dp_agent.planning.data import trajectory_episodes
from dp_agent.planning.planner import Planner
from dp_agent.planning.train import train_planner
from dp_agent.policy import DiffusionPolicy
from dp_agent.progress import SilentProgress

pytestmark = pytest.mark.slow  # a trajectory model trained for its tests

SAMPLERS = [("ddpm", 20), ("ddim", 10), ("dpmsolver++", 8)]


def untrained_trajectory_model(clean: bool):
    """A random (8, 4) chunk model: trained-with-conditions layout (clean writes) or not."""
    if not clean:
        return tiny_policy(obs_dim=2, action_dim=4, obs_horizon=1, action_horizon=1)
    config = PolicyConfig(
        obs_dim=2,
        action_dim=4,
        obs_horizon=1,
        pred_horizon=8,
        action_horizon=1,
        down_dims=(16, 32),
        step_embed_dim=16,
        conditioned_entries=((0, (0, 1)), (7, (0, 1))),
    )
    policy = DiffusionPolicy(config)
    rng = np.random.default_rng(0)
    policy.fit_normalizers(rng.uniform(-3, 3, (50, 2)), rng.uniform(-2, 5, (50, 4)))
    return policy.eval()


@pytest.mark.parametrize("clean", [False, True], ids=["noised", "clean"])
@pytest.mark.parametrize("masked", [False, True], ids=["whole", "masked"])
@pytest.mark.parametrize("name, steps", SAMPLERS)
def test_every_plan_holds_the_conditioned_values_at_the_conditioned_steps(
    name, steps, masked, clean
):
    policy = untrained_trajectory_model(clean)
    obs = torch.zeros(3, 1, 2)
    first = torch.tensor([[1.0, -1.5, 0.3, 4.0], [2.0, 0.0, 1.0, 1.0], [-2.0, 2.5, 0.0, 3.0]])
    last = torch.tensor([0.5, 4.5, -1.0, 2.0])
    mask = {7: torch.tensor([True, True, False, False])} if masked else None
    out = policy.sample(
        obs,
        5,
        name,
        steps,
        torch.Generator().manual_seed(0),
        conditions={0: first, 7: last},
        condition_mask=mask,
    )
    assert out.shape == (15, 8, 4)
    torch.testing.assert_close(out[:, 0], first.repeat_interleave(5, 0), atol=1e-5, rtol=1e-5)
    fixed = slice(0, 2) if masked else slice(0, 4)
    torch.testing.assert_close(out[:, 7, fixed], last[fixed].expand(15, -1), atol=1e-5, rtol=1e-5)
    if masked:  # the free part of step 7 is sampled, not written
        assert (out[:, 7, 2:] - last[2:]).abs().min() > 1e-4


def test_warm_start_denoises_from_an_intermediate_step_and_keeps_the_conditions():
    policy = untrained_trajectory_model(clean=True)
    obs = torch.zeros(2, 1, 2)
    start = torch.ones(2, 8, 4)
    steps = []
    out = policy.sample(
        obs,
        1,
        "dpmsolver++",
        8,
        torch.Generator().manual_seed(0),
        steps.append,
        conditions={0: torch.zeros(4)},
        start=start,
        start_step=5,
    )
    assert [s.step for s in steps] == [5, 6, 7, 8]  # 3 network calls instead of 8
    torch.testing.assert_close(out[:, 0], torch.zeros(2, 4), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="start_step needs a start"):
        policy.sample(obs, 1, "ddim", 8, start_step=3)


def test_defaults_sample_as_before():
    policy = untrained_trajectory_model(clean=False)
    obs = torch.zeros(2, 1, 2)
    a = policy.sample(obs, 2, "ddim", 10, torch.Generator().manual_seed(1))
    b = policy.sample(obs, 2, "ddim", 10, torch.Generator().manual_seed(1), conditions={})
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_conditions_name_what_to_change():
    policy = untrained_trajectory_model(clean=False)
    with pytest.raises(ValueError, match="outside the chunk"):
        policy.sample(torch.zeros(1, 1, 2), conditions={8: torch.zeros(4)})
    with pytest.raises(ValueError, match=r"expected \(4,\)"):
        policy.sample(torch.zeros(1, 1, 2), conditions={0: torch.zeros(3)})


# ---- learning: two routes, the inpainted goal picks one -------------------------------------
H = 16


class Episode:
    def __init__(self, obs, actions):
        self.obs, self.actions = obs, actions
        self.rewards = np.zeros(len(actions), np.float32)


def route(sign: int, rng) -> Episode:
    """An L: from (0, 0) along y to (0, sign), then along x to (1, sign); actions the steps."""
    s = np.linspace(0, 2, H)
    pos = np.stack([np.clip(s - 1, 0, 1), sign * np.clip(s, 0, 1)], 1)
    pos = (pos + rng.normal(0, 0.02, (H, 2))).astype(np.float32)
    return Episode(pos, np.diff(pos, axis=0, append=pos[-1:]))


@pytest.fixture(scope="module")
def two_route_planner(tmp_path_factory):
    rng = np.random.default_rng(0)
    episodes = [route(1 if i % 2 else -1, rng) for i in range(64)]
    pc, tc = make_planner_configs(
        "toy",
        {"state_key": None, "velocity_dims": (), "hold_end": False},
        {"num_steps": 600, "checkpoint_every": 600, "log_every": 600, "device": "cpu"},
    )
    out = tmp_path_factory.mktemp("two_routes")
    path = train_planner(episodes, out, pc, tc, progress=SilentProgress(tc.num_steps))
    return Planner.load(path)


@pytest.mark.parametrize("name, steps", SAMPLERS)
def test_a_trajectory_model_samples_both_routes_and_the_inpainted_goal_picks_one(
    two_route_planner, name, steps
):
    planner, g = two_route_planner, torch.Generator().manual_seed(0)
    start = np.zeros((1, 2), np.float32)
    free = planner.plan(
        start, num_samples=200, sampler=name, num_inference_steps=steps, generator=g
    )
    up = (free.states[:, H // 2, 1] > 0).mean()
    assert 0.2 < up < 0.8  # both routes, from the start alone
    for sign in (1, -1):
        plans = planner.plan(
            start,
            goal_position=np.array([[1.0, sign]]),
            num_samples=200,
            sampler=name,
            num_inference_steps=steps,
            generator=g,
        )
        corner = plans.states[:, H // 2]  # (N, 2), the route's corner is (0, sign)
        assert (np.abs(corner - [0.07, sign]).max(1) < 0.3).mean() > 0.95
        np.testing.assert_allclose(plans.states[:, -1], [[1.0, sign]] * 200, atol=1e-5)
        np.testing.assert_allclose(plans.states[:, 0], 0.0, atol=1e-5)


def test_planner_file_records_the_columns_and_loads_in_one_call(two_route_planner, tmp_path):
    from dp_agent.planning.train import export_planner

    info = two_route_planner.info
    assert info.state_dims == [0, 2] and info.action_dims == [2, 4]
    assert info.position_dims == [0, 1]
    path = export_planner(two_route_planner.path, tmp_path / "half.safetensors", half=True)
    half = Planner.load(path)
    assert half.state_dim == 2 and half.action_dim == 2 and half.horizon == H
    plan = half.plan(np.zeros(2), num_samples=3, return_trajectory=True)
    assert plan.states.shape == (3, H, 2) and plan.actions.shape == (3, H, 2)
    assert plan.trajectory.shape == (half.policy.config.num_inference_steps + 1, 3, H, 4)


# ---- the planner agent in SB3's evaluate_policy ----------------------------------------------
class FarGoal(gym.Wrapper):
    """U-maze episodes from one end of the U to the other: 6 cells of path, out of reach in the
    12 steps allowed, so every episode lasts exactly 12 steps."""

    def reset(self, *, seed=None, options=None):
        return self.env.reset(seed=seed, options={"start_cell": (1, 1), "goal_cell": (3, 1)})


def maze_env():
    from stable_baselines3.common.monitor import Monitor

    return Monitor(FarGoal(gym.make("dp_agent/Maze2D-umaze-v0", max_episode_steps=12)))


@pytest.fixture(scope="module")
def maze_planner(tmp_path_factory):
    """A barely trained umaze planner (H = 16), from a few expert episodes."""
    from dp_agent.envs.experts import MazeExpert

    env = gym.make("dp_agent/Maze2D-umaze-v0")
    expert, episodes = MazeExpert(env.unwrapped), []
    for seed in range(4):
        obs, _ = env.reset(seed=seed)
        expert.reset(seed)
        frames, actions, done = [], [], False
        while not done:
            frames.append(obs)
            actions.append(expert.act(obs))
            obs, _, term, trunc, _ = env.step(actions[-1])
            done = term or trunc
        parts = {k: np.stack([f[k] for f in frames]).astype(np.float32) for k in frames[0]}
        episodes.append(Episode(parts, np.stack(actions)))
    source = Source(episodes)
    config = PlannerConfig(horizon=16, down_dims=(16, 32), step_embed_dim=16)
    tc = TrainConfig(num_steps=2, batch_size=8, checkpoint_every=2, log_every=2, device="cpu")
    out = tmp_path_factory.mktemp("maze")
    return train_planner(source, out, config, tc, progress=SilentProgress(2))


class Source(list):
    env_id = "dp_agent/Maze2D-umaze-v0"
    env_args = {"env_kwargs": {}}


class CountingDenoiser(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.rows = inner, 0

    def forward(self, x, k, cond):
        self.rows += x.shape[0]
        return self.inner(x, k, cond)


def evaluate(agent):
    counter = CountingDenoiser(agent.planner.policy.denoiser)
    agent.planner.policy.denoiser = counter
    venv = DummyVecEnv([maze_env for _ in range(4)])
    venv.seed(3)
    actions = []
    record = lambda local, _: actions.append(local["actions"].copy())  # noqa: E731
    evaluate_policy(agent, venv, n_eval_episodes=8, deterministic=True, callback=record)
    agent.planner.policy.denoiser = counter.inner
    return np.stack(actions), counter.rows


def test_planner_agent_runs_in_evaluate_policy_with_one_batched_call_per_replan(maze_planner):
    from dp_agent import DiffuserAgent

    agent = DiffuserAgent.load(maze_planner, device="cpu", replan_every=5)
    k = agent.planner.policy.config.num_inference_steps
    first, rows = evaluate(agent)
    # 2 rounds of 4 lock-step episodes of 12 steps, each planning at steps 0, 5 and 10:
    # 3 batched calls a round, 4 rows of K denoiser rows each
    assert agent.num_plans == 6
    assert rows == 6 * 4 * k
    agent.reset()
    second, _ = evaluate(agent)
    np.testing.assert_array_equal(first, second)  # deterministic: reproducible
    assert first.shape[-1] == 2 and np.abs(first).max() <= 1.0


def test_planner_agent_plans_from_the_observed_state_to_the_goal(maze_planner):
    from dp_agent import DiffuserAgent

    agent = DiffuserAgent.load(maze_planner, device="cpu", warm_step=6)
    env = maze_env()
    obs, _ = env.reset(seed=0)
    plan = agent.plan(obs, num_samples=3, return_trajectory=True)
    assert plan.states.shape == (3, 16, 4) and plan.actions.shape == (3, 16, 2)
    np.testing.assert_allclose(
        plan.states[:, 0], np.repeat(obs["observation"][None], 3, 0), atol=1e-4
    )
    np.testing.assert_allclose(
        plan.states[:, -1, :2], np.repeat(obs["desired_goal"][None], 3, 0), atol=1e-4
    )
    action, _ = agent.predict(obs)
    assert action.shape == (2,)
    counter = CountingDenoiser(agent.planner.policy.denoiser)
    agent.planner.policy.denoiser = counter
    for _ in range(agent.replan_every):  # the re-plan at the end starts warm: K - 6 calls
        obs, *_ = env.step(agent.predict(obs)[0])
    assert counter.rows == agent.planner.policy.config.num_inference_steps - 6


def test_trajectory_episodes_hold_the_end_and_need_the_named_parts():
    parts = {"observation": np.ones((5, 4), np.float32), "desired_goal": np.zeros((5, 2))}
    ep = Episode(parts, np.ones((5, 2), np.float32))
    data = trajectory_episodes([ep], PlannerConfig(horizon=8))
    traj = data[0].actions  # (5 + 7, 6)
    assert traj.shape == (12, 6)
    np.testing.assert_array_equal(traj[5:, :2], 1.0)  # position held
    np.testing.assert_array_equal(traj[5:, 2:], 0.0)  # velocity and action zero
    with pytest.raises(ValueError, match="goal_key"):
        trajectory_episodes([ep], PlannerConfig(goal_key="goal"))


def test_keep_out_on_one_route_of_a_trained_planner_sends_its_plans_along_the_other(
    two_route_planner,
):
    """Acceptance: with the keep-out guide on a trained model, under 5% of the plans enter the
    zone and as many reach the far end as without it (within 5 points)."""
    from dp_agent.guides import KeepOut

    planner, g = two_route_planner, torch.Generator().manual_seed(1)
    starts = np.zeros((100, 2), np.float32)
    keep = KeepOut(circles=[(0.0, 1.0, 0.3)], margin=0.1)  # the corner of the upper route

    def shares(plans):
        entered = keep.entered(torch.as_tensor(plans.states)).float().mean().item()
        end = plans.states[:, -2]  # the toy model leaves its very last step loose (no goal here)
        arrived = (np.abs(end[:, 0] - 1) < 0.25) & (np.abs(np.abs(end[:, 1]) - 1) < 0.25)
        return entered, arrived.mean()

    plain_in, plain_ok = shares(planner.plan(starts, generator=g))
    guided = planner.plan(
        starts, guides=[keep], guide_scale=30.0, guide_steps=4, num_samples=8, generator=g
    ).best(8)
    guided_in, guided_ok = shares(guided)
    assert plain_in > 0.3 and plain_ok > 0.9  # the zone is on a route the model takes
    assert guided_in < 0.05
    assert guided_ok >= plain_ok - 0.05


def test_every_checkpoint_of_a_planner_run_is_a_planner_and_export_keeps_it_one(
    two_route_planner, tmp_path
):
    """The run's ``last.safetensors`` (resumable state included) carries the planner section
    too, and ``dp-agent export`` of a planner writes a planner."""
    from dp_agent.checkpoint import read_header
    from dp_agent.cli.main import main

    last = two_route_planner.path.parent / "last.safetensors"
    assert read_header(last).planner == two_route_planner.info
    assert Planner.load(last).horizon == H
    out = tmp_path / "small.safetensors"
    assert main(["export", str(two_route_planner.path), str(out), "--half"]) == 0
    assert Planner.load(out).info == two_route_planner.info
