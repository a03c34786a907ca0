"""Maze2D: D4RL's maze2d layouts, the point-mass physics, resets, success, checkers, rendering and
the shortest-path expert."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import gymnasium as gym
import numpy as np
import pytest

import dp_agent  # noqa: F401  (registers the envs)
from dp_agent.envs import MAZE2D_ID, MAZE2D_IDS, Maze2D, register_envs
from dp_agent.envs import maze2d as mz
from dp_agent.envs.experts import MazeExpert, make_expert

MAZES = ("umaze", "medium", "large")


def _box_clear(maze: mz.MazeLayout, pos: np.ndarray) -> bool:
    """The agent's square (a hair smaller, for touching contacts) overlaps no wall cell."""
    return maze.box_is_free(float(pos[0]), float(pos[1]), mz.AGENT_RADIUS - 1e-7)


# ----------------------------------------------------------------------------- layouts
@pytest.mark.parametrize("name,shape", [("umaze", (5, 5)), ("medium", (8, 8)), ("large", (9, 12))])
def test_layouts_have_d4rl_sizes_are_closed_by_walls_and_connected(name, shape):
    maze = mz.MazeLayout.named(name)
    assert maze.cells.shape == shape and (maze.n_rows, maze.n_cols) == shape
    cells = maze.cells
    assert not cells[0].any() and not cells[-1].any()
    assert not cells[:, 0].any() and not cells[:, -1].any()
    open_cells = maze.open_cells()
    assert len(open_cells) == int(cells.sum())
    # every open cell reaches every other one
    assert set(maze.distances(open_cells[0])) == set(open_cells)


def test_umaze_is_the_d4rl_u():
    rows = mz.LAYOUTS["umaze"]
    assert [r.replace("G", "O") for r in rows] == ["#####", "#OOO#", "###O#", "#OOO#", "#####"]
    assert sum(r.count("G") for r in mz.LAYOUTS["medium"]) == 1  # D4RL's fixed goal, kept


def test_planner_helpers():
    env = Maze2D("umaze")
    path = env.shortest_path((1, 1), (3, 1))
    assert path == [(1, 1), (1, 2), (1, 3), (2, 3), (3, 3), (3, 2), (3, 1)]
    assert env.count_shortest_paths((1, 1), (3, 1)) == 1
    assert env.cell_of(*env.cell_center(3, 2)) == (3, 2)
    assert np.array_equal(env.cell_center(3, 2), [2.5, 3.5])
    assert env.cells.shape == (5, 5) and len(env.open_cells()) == 7
    medium = mz.MazeLayout.named("medium")
    assert medium.count_shortest_paths((1, 1), (2, 2)) == 2  # round either side of a 2x2 block
    assert medium.count_shortest_paths((4, 2), (5, 3)) == 2
    rng = np.random.default_rng(0)
    for _ in range(10):
        p = medium.sample_shortest_path((4, 2), (5, 3), rng)
        assert len(p) == len(medium.shortest_path((4, 2), (5, 3)))
        assert all(
            abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 for a, b in zip(p[:-1], p[1:], strict=True)
        )
    with pytest.raises(ValueError, match="not an open cell"):
        env.shortest_path((0, 0), (1, 1))


# ----------------------------------------------------------------------------- registration
def test_registration_step_limits_and_override():
    register_envs()
    register_envs()
    assert gym.spec(MAZE2D_ID).max_episode_steps == 800
    assert {m: gym.spec(i).max_episode_steps for m, i in MAZE2D_IDS.items()} == {
        "umaze": 300,
        "medium": 600,
        "large": 800,
    }
    assert gym.make(MAZE2D_IDS["large"]).unwrapped.maze.name == "large"
    assert gym.make(MAZE2D_ID, maze="medium").unwrapped.maze.name == "medium"
    env = gym.make(MAZE2D_IDS["umaze"], max_episode_steps=5)
    env.reset(seed=0, options={"start_cell": (1, 1), "goal_cell": (3, 1)})
    ends = [env.step(np.zeros(2, np.float32))[3] for _ in range(5)]
    assert ends == [False] * 4 + [True]
    with pytest.raises(ValueError, match="maze"):
        Maze2D("huge")


def test_import_stays_light():
    code = (
        "import sys, dp_agent.envs.maze2d; "
        "print(sorted(m for m in ('torch', 'pygame', 'pymunk', 'shapely') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- reset
@pytest.mark.parametrize("name", MAZES)
def test_reset_draws_distinct_open_cells_from_the_seed(name):
    env = gym.make(MAZE2D_ID, maze=name)
    maze = env.unwrapped.maze
    pairs = set()
    for seed in range(40):
        obs, info = env.reset(seed=seed)
        assert env.observation_space.contains(obs)
        start, goal = obs["achieved_goal"], obs["desired_goal"]
        assert np.array_equal(obs["observation"][:2], start)
        assert np.array_equal(obs["observation"][2:], [0.0, 0.0])
        s, g = maze.cell_of(*start), maze.cell_of(*goal)
        assert s != g and maze.is_open(s) and maze.is_open(g)
        assert np.abs(start - maze.cell_center(*s)).max() <= mz.JITTER
        assert np.abs(goal - maze.cell_center(*g)).max() <= mz.JITTER
        assert not info["is_success"] and info["distance"] > mz.GOAL_RADIUS
        pairs.add((s, g))
        again, _ = env.reset(seed=seed)
        assert all(np.array_equal(obs[k], again[k]) for k in obs)
    assert len(pairs) > 15


def test_options_set_start_and_goal():
    env = gym.make(MAZE2D_IDS["medium"])
    maze = env.unwrapped.maze
    obs, _ = env.reset(seed=1, options={"start_cell": (6, 1), "goal_cell": (1, 6)})
    assert maze.cell_of(*obs["achieved_goal"]) == (6, 1)
    assert maze.cell_of(*obs["desired_goal"]) == (1, 6)
    obs, _ = env.reset(seed=2, options={"goal_cell": (1, 6)})  # the start is drawn, elsewhere
    assert maze.cell_of(*obs["desired_goal"]) == (1, 6)
    assert maze.cell_of(*obs["achieved_goal"]) != (1, 6)
    obs, info = env.reset(options={"reset_pos": (1.5, 6.2), "goal_pos": (6.4, 1.6)})
    assert np.array_equal(obs["observation"], [1.5, 6.2, 0.0, 0.0])
    assert np.array_equal(obs["desired_goal"], [6.4, 1.6])
    assert info["distance"] == pytest.approx(np.hypot(4.9, 4.6))
    with pytest.raises(ValueError, match="start_cell.*not an open cell"):
        env.reset(options={"start_cell": (0, 0)})
    with pytest.raises(ValueError, match="reset_pos.*wall"):
        env.reset(options={"reset_pos": (1.05, 1.5)})  # the agent's square would touch (1, 0)
    with pytest.raises(ValueError, match="goal_pos.*wall"):
        env.reset(options={"goal_pos": (0.5, 0.5)})
    with pytest.raises(ValueError, match="reset_pos.*2 finite numbers"):
        env.reset(options={"reset_pos": (1.5, float("nan"))})


# ----------------------------------------------------------------------------- physics
@pytest.mark.slow
@pytest.mark.parametrize("name", MAZES)
def test_no_tunnelling_under_random_max_force(name):
    env = Maze2D(name)
    maze = env.maze
    rng = np.random.default_rng(7)
    env.reset(seed=7)
    top_speed = 0.0
    corners = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1], [1, 0], [-1, 0], [0, 1], [0, -1]])
    for i in range(3000):
        if i % 300 == 0:
            env.reset()
        force = corners[rng.integers(len(corners))].astype(np.float32)
        for _ in range(int(rng.integers(1, 15))):  # held long enough to reach the speed limit
            obs, *_ = env.step(force)
            assert _box_clear(maze, env.agent_position), env.agent_position
            assert env.observation_space.contains(obs)
            top_speed = max(top_speed, float(np.hypot(*env.agent_velocity)))
    assert top_speed == pytest.approx(mz.MAX_SPEED)


def test_walls_stop_and_the_point_slides_along_them():
    env = Maze2D("umaze")
    # the top corridor of the U: cells (1, 1)..(1, 3), walls above (row 0) and left (column 0)
    env.reset(options={"reset_pos": (2.5, 1.5), "goal_pos": (1.5, 3.5)})
    for _ in range(20):
        env.step(np.array([-1.0, -1.0], np.float32))
    assert env.agent_position == pytest.approx([1.0 + mz.AGENT_RADIUS, 1.0 + mz.AGENT_RADIUS])
    assert np.array_equal(env.agent_velocity, [0.0, 0.0])  # pinned in the corner
    for _ in range(4):
        env.step(np.array([1.0, -1.0], np.float32))  # slides right along the top wall
    assert env.agent_position[1] == pytest.approx(1.0 + mz.AGENT_RADIUS)
    assert env.agent_velocity[1] == 0.0 and env.agent_velocity[0] > 1.0
    assert env.agent_position[0] > 1.5


def test_speed_is_limited_and_damped():
    env = Maze2D("large")
    env.reset(options={"reset_pos": (6.5, 1.5), "goal_pos": (1.5, 7.5)})  # corridor to x = 11
    for _ in range(10):
        env.step(np.array([1.0, 0.0], np.float32))
    assert np.hypot(*env.agent_velocity) <= mz.MAX_SPEED + 1e-12
    env.reset(options={"reset_pos": (6.5, 1.5), "goal_pos": (1.5, 7.5)})
    env.step(np.array([1.0, 0.0], np.float32))
    v = env.agent_velocity[0]
    env.step(np.zeros(2, np.float32))
    assert 0.0 < env.agent_velocity[0] < v  # coasts, slowing down


def test_success_within_half_a_cell_terminates_with_reward_one():
    env = gym.make(MAZE2D_IDS["umaze"])
    obs, info = env.reset(options={"reset_pos": (1.5, 1.5), "goal_pos": (2.3, 1.5)})
    assert not info["is_success"] and info["distance"] == pytest.approx(0.8)
    rewards = []
    while True:
        obs, reward, terminated, truncated, info = env.step(np.array([0.3, 0.0], np.float32))
        rewards.append(reward)
        assert type(reward) is float and type(terminated) is bool
        if terminated or truncated:
            break
    assert terminated and not truncated and info["is_success"]
    assert rewards[-1] == 1.0 and set(rewards[:-1]) <= {0.0}
    assert info["distance"] <= mz.GOAL_RADIUS


# ----------------------------------------------------------------------------- checkers
def _user_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


@pytest.mark.parametrize("name", MAZES)
def test_passes_gymnasium_checker(name):
    from gymnasium.utils.env_checker import check_env

    env = gym.make(MAZE2D_ID, maze=name, render_mode="rgb_array")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert _user_warnings(caught) == []


@pytest.mark.parametrize("name", MAZES)
def test_passes_stable_baselines3_checker(name):
    from stable_baselines3.common.env_checker import check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gym.make(MAZE2D_ID, maze=name).unwrapped)
    assert _user_warnings(caught) == []


# ----------------------------------------------------------------------------- rendering
@pytest.mark.parametrize("name", MAZES)
def test_render_shows_walls_floor_goal_and_agent(name):
    env = gym.make(MAZE2D_ID, maze=name, render_mode="rgb_array", render_size=256)
    base = env.unwrapped
    env.reset(seed=3)
    frame = env.render()
    assert frame.shape == (256, 256, 3) and frame.dtype == np.uint8
    assert base.world_size == max(base.maze.cells.shape)

    def pixel(point):
        x, y = base.world_to_pixel(point, 256).astype(int)
        return frame[y, x].astype(int)

    assert np.abs(pixel((0.5, 0.5)) - mz.WALL).max() <= 2  # a corner wall cell
    assert np.abs(pixel(base.goal_position + (0.3, 0.0)) - mz.GOAL_FILL).max() <= 2
    assert np.abs(pixel(base.agent_position) - mz.lighten(mz.ROYAL_BLUE)).max() <= 40
    for size in (64, 96):
        assert base.render_frame(size).shape == (size, size, 3)


def test_human_render_mode_runs_headless():
    env = gym.make(MAZE2D_ID, render_mode="human")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert env.render() is None
    env.close()


# ----------------------------------------------------------------------------- expert
def _expert_episode(env: gym.Env, expert: MazeExpert, seed: int, options=None) -> dict:
    obs, _ = env.reset(seed=seed, options=options)
    expert.reset(seed)
    maze = env.unwrapped.maze
    visited = {maze.cell_of(*obs["achieved_goal"])}
    steps = 0
    while True:
        action = expert.act(obs)
        assert action.dtype == np.float32 and env.action_space.contains(action)
        obs, _, terminated, truncated, info = env.step(action)
        visited.add(maze.cell_of(*obs["achieved_goal"]))
        steps += 1
        if terminated or truncated:
            return {"success": info["is_success"], "visited": visited, "steps": steps}


@pytest.mark.parametrize("name", ["umaze", "medium"])
def test_expert_reaches_the_goal(name):
    env = gym.make(MAZE2D_IDS[name])
    expert = make_expert(env)
    assert isinstance(expert, MazeExpert)
    results = [_expert_episode(env, expert, seed) for seed in range(40)]
    assert sum(r["success"] for r in results) >= 38  # 95 %
    assert len({r["steps"] for r in results}) > 10  # speeds and routes vary


def test_expert_takes_both_equally_short_routes():
    # medium, (4, 2) -> (5, 3): over the top through (3, 3) or underneath through (6, 2)
    env = gym.make(MAZE2D_IDS["medium"])
    expert = make_expert(env)
    options = {"start_cell": (4, 2), "goal_cell": (5, 3)}
    results = [_expert_episode(env, expert, seed, options) for seed in range(40)]
    assert all(r["success"] for r in results)
    over = sum((3, 3) in r["visited"] for r in results)
    under = sum((6, 2) in r["visited"] for r in results)
    assert over + under == 40
    assert over >= 10 and under >= 10, (over, under)


def test_expert_is_deterministic_for_a_seed():
    env = gym.make(MAZE2D_IDS["large"])
    expert = make_expert(env)
    a = _expert_episode(env, expert, 5)
    b = _expert_episode(env, expert, 5)
    assert a["steps"] == b["steps"] and a["visited"] == b["visited"] and a["success"]
