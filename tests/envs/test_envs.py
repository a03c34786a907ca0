"""The 2D tasks as Gymnasium envs: registration, checkers, determinism, rendering, TreeDetour."""

from __future__ import annotations

import math
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
from dp_agent.envs import PUSHT_ID, TREE_DETOUR_ID, PushT, TreeDetour, register_envs
from dp_agent.envs import tree_detour as td

ACTION_SPACE_ADVICE = ("symmetric and normalized",)  # both checkers advise [-1, 1] actions


def _only_action_space_advice(caught: list[warnings.WarningMessage]) -> list[str]:
    """Warnings other than the checkers' advice to normalise the action space (ours is [0, 512]^2
    by contract)."""
    return [
        str(w.message)
        for w in caught
        if issubclass(w.category, UserWarning)
        and not any(a in str(w.message) for a in ACTION_SPACE_ADVICE)
    ]


# ----------------------------------------------------------------------------- registration
def test_register_envs_is_idempotent_and_sets_step_limits():
    register_envs()
    register_envs()
    assert gym.spec(PUSHT_ID).max_episode_steps == 300
    assert gym.spec(TREE_DETOUR_ID).max_episode_steps == 200


def test_import_is_light():
    code = (
        "import sys, dp_agent.envs; "
        "print(sorted(m for m in ('torch', 'pygame', 'pymunk', 'shapely') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unwrapped_world_size_and_render_fps():
    for env_id in (PUSHT_ID, TREE_DETOUR_ID):
        env = gym.make(env_id)
        assert env.unwrapped.world_size == 512.0
        assert env.metadata["render_fps"] == 10
        assert env.action_space == gym.spaces.Box(0.0, 512.0, (2,), np.float32)


# ----------------------------------------------------------------------------- checkers
@pytest.mark.parametrize("obs_type", ["state", "keypoints", "pixels"])
def test_pusht_passes_gymnasium_checker(obs_type):
    from gymnasium.utils.env_checker import check_env

    env = gym.make(PUSHT_ID, obs_type=obs_type, render_mode="rgb_array")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert _only_action_space_advice(caught) == []


@pytest.mark.parametrize("obs_type", ["state", "pixels"])
def test_tree_detour_passes_gymnasium_checker(obs_type):
    from gymnasium.utils.env_checker import check_env

    env = gym.make(TREE_DETOUR_ID, render_mode="rgb_array", obs_type=obs_type)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert _only_action_space_advice(caught) == []


@pytest.mark.parametrize("env_id", [PUSHT_ID, TREE_DETOUR_ID])
def test_passes_stable_baselines3_checker(env_id):
    from stable_baselines3.common.env_checker import check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gym.make(env_id).unwrapped)
    assert _only_action_space_advice(caught) == []


def test_observation_spaces_match_the_contract():
    assert gym.make(PUSHT_ID).observation_space.shape == (5,)
    assert gym.make(PUSHT_ID).observation_space.dtype == np.float64
    assert gym.make(PUSHT_ID, obs_type="keypoints").observation_space.shape == (18,)
    pixels = gym.make(PUSHT_ID, obs_type="pixels").observation_space
    assert pixels["pixels"].shape == (96, 96, 3) and pixels["pixels"].dtype == np.uint8
    assert pixels["agent_pos"].shape == (2,)
    assert gym.make(TREE_DETOUR_ID).observation_space.shape == (4,)


# ----------------------------------------------------------------------------- determinism
def _rollout(env_id: str, seed: int, steps: int, **kwargs) -> list:
    env = gym.make(env_id, render_mode="rgb_array", **kwargs)
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    record = [(obs, info, env.render())]
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        record.append((obs, reward, terminated, info, env.render()))
        if terminated or truncated:
            break
    env.close()
    return record


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize(
    "env_id,kwargs",
    [
        (PUSHT_ID, {}),
        (PUSHT_ID, {"obs_type": "pixels"}),
        (TREE_DETOUR_ID, {}),
        (TREE_DETOUR_ID, {"obs_type": "pixels"}),
    ],
)
def test_same_seed_gives_identical_trajectories_and_frames(env_id, kwargs):
    first = _rollout(env_id, 3, 12, **kwargs)
    assert _same(first, _rollout(env_id, 3, 12, **kwargs))
    assert not _same(first[0][0], _rollout(env_id, 4, 0, **kwargs)[0][0])


def test_step_returns_python_types():
    for env_id in (PUSHT_ID, TREE_DETOUR_ID):
        env = gym.make(env_id)
        env.reset(seed=0)
        _, reward, terminated, truncated, info = env.step(np.array([256.0, 256.0], np.float32))
        assert type(reward) is float
        assert type(terminated) is bool and type(truncated) is bool
        assert type(info["is_success"]) is bool


# ----------------------------------------------------------------------------- rendering
@pytest.mark.parametrize("env_cls", [PushT, TreeDetour])
def test_render_frame_sizes_and_colours(env_cls):
    env = env_cls()
    env.reset(seed=0)
    for size in (64, 96, 512):
        frame = env.render_frame(size)
        assert frame.shape == (size, size, 3) and frame.dtype == np.uint8
    frame = env.render_frame(512)
    agent = env.agent_position.round().astype(int)
    # The agent's rim is RoyalBlue (65, 105, 225), drawn where the physics puts it (y down).
    rim = frame[agent[1], agent[0] + 13]
    assert np.abs(rim.astype(int) - (65, 105, 225)).max() <= 12
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 20  # anti-aliased edges


def test_pusht_frame_shows_goal_in_light_green_on_white():
    env = PushT()
    env.reset(seed=0, options={"reset_to_state": [50, 50, 100, 400, 0.0]})
    frame = env.render_frame(512)
    assert tuple(frame[300, 400]) == (255, 255, 255)  # background
    # A point inside the goal T's crossbar: (256, 256) + R(pi/4) (0, 15).
    gx, gy = 256 - 15 * math.sin(math.pi / 4), 256 + 15 * math.cos(math.pi / 4)
    assert tuple(frame[round(gy), round(gx)]) == (144, 238, 144)


def test_rgb_array_render_uses_render_size():
    env = gym.make(PUSHT_ID, render_mode="rgb_array", render_size=200)
    env.reset(seed=0)
    assert env.render().shape == (200, 200, 3)


@pytest.mark.parametrize("env_id", [PUSHT_ID, TREE_DETOUR_ID])
def test_human_render_mode_runs_headless(env_id):
    env = gym.make(env_id, render_mode="human")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert env.render() is None
    env.close()


# ----------------------------------------------------------------------------- bad input
def test_bad_options_and_arguments_get_clear_messages():
    with pytest.raises(ValueError, match="reset_to_state.*5 finite numbers"):
        PushT().reset(options={"reset_to_state": [1, 2, 3]})
    with pytest.raises(ValueError, match="reset_to_state.*4 finite numbers"):
        TreeDetour().reset(options={"reset_to_state": [1, 2, 3, float("nan")]})
    with pytest.raises(ValueError, match="obs_type"):
        PushT(obs_type="image")
    env = PushT()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(np.zeros(3))


# ----------------------------------------------------------------------------- TreeDetour
def _drive(env: TreeDetour, waypoints: list[tuple[float, float]], max_steps: int = 200):
    """Step toward each waypoint in turn (switching within 10 px); returns the last step."""
    i = 0
    for _ in range(max_steps):
        if i < len(waypoints) - 1 and np.hypot(*(env.agent_position - waypoints[i])) < 10:
            i += 1
        out = env.step(np.array(waypoints[i], np.float32))
        if out[2]:
            return out
    raise AssertionError("episode did not end")


def test_driving_into_the_tree_fails_at_first_touch():
    env = TreeDetour()
    env.reset(options={"reset_to_state": [256, 450, 256, 64]})
    _, reward, terminated, _, info = _drive(env, [(256, 64)])
    assert terminated and info["hit_tree"] and not info["is_success"] and reward == 0.0
    gap = np.hypot(*(env.agent_position - td.TREE_CENTER)) - td.TREE_RADIUS - td.AGENT_RADIUS
    # Checked every substep: the agent stops within one substep's travel of the first touch.
    assert -np.hypot(*env.agent_velocity) * td.DT <= gap < 0.0
    assert info["side"] is None


@pytest.mark.parametrize("side,x", [("left", 150.0), ("right", 362.0)])
def test_going_round_reaches_the_goal_and_reports_the_side(side, x):
    env = TreeDetour()
    obs, info = env.reset(options={"reset_to_state": [256, 450, 256, 64]})
    assert info["side"] is None and not info["is_success"]
    _, reward, terminated, _, info = _drive(env, [(x, 330), (x, 180), (256, 64)])
    assert terminated and info["is_success"] and not info["hit_tree"] and reward == 1.0
    assert info["side"] == side
    assert info["goal_distance"] <= td.GOAL_RADIUS


def test_random_starts_need_a_detour_and_are_symmetric():
    env = TreeDetour()
    starts = []
    for seed in range(200):
        obs, _ = env.reset(seed=seed)
        a, g = obs[:2], obs[2:]
        # The straight segment start -> goal passes within touching distance of the tree.
        t = np.clip(np.dot(td.TREE_CENTER - a, g - a) / np.dot(g - a, g - a), 0, 1)
        closest = a + t * (g - a)
        assert np.hypot(*(closest - td.TREE_CENTER)) < td.TREE_RADIUS + td.AGENT_RADIUS
        assert a[1] > 400 and g[1] < 100
        starts.append(obs)
    starts = np.array(starts)
    assert abs(np.mean(starts[:, 0]) - 256) < 3 and abs(np.mean(starts[:, 2]) - 256) < 3


def test_tree_detour_reset_to_state_method_matches_the_observation():
    env = TreeDetour()
    env.reset(seed=5)
    obs, info = env.reset_to_state([300.0, 420.0, 240.0, 70.0])
    assert np.array_equal(obs, [300.0, 420.0, 240.0, 70.0])
    assert info["side"] is None and not info["hit_tree"]


def test_tree_detour_agent_moves_like_the_pusht_agent():
    """Same kinematic body and PD control: away from the block and the tree the paths are equal."""
    pusht, tree = PushT(), TreeDetour()
    pusht.reset(options={"reset_to_state": [60, 460, 400, 120, 0.0]})
    tree.reset(options={"reset_to_state": [60, 460, 256, 64]})
    for target in [(90, 430), (140, 440), (120, 380), (60, 460)]:
        pusht.step(np.array(target, np.float32))
        tree.step(np.array(target, np.float32))
        assert np.array_equal(pusht.agent_position, tree.agent_position)


def test_the_reference_dict_layout_holds_the_keypoints_step_for_step():
    flat = gym.make(PUSHT_ID, obs_type="keypoints")
    layout = gym.make(PUSHT_ID, obs_type="environment_state_agent_pos")
    a, _ = flat.reset(seed=5)
    b, _ = layout.reset(seed=5)
    assert set(b) == {"environment_state", "agent_pos"} and layout.observation_space.contains(b)
    rng = np.random.default_rng(0)
    for _ in range(30):
        np.testing.assert_array_equal(np.concatenate([b["environment_state"], b["agent_pos"]]), a)
        action = rng.uniform(100, 400, 2).astype(np.float32)
        a, *_ = flat.step(action)
        b, *_ = layout.step(action)


def test_observations_equal_gym_pusht_step_for_step_in_its_dict_layout():
    pytest.importorskip("gym_pusht")
    ours = gym.make(PUSHT_ID, obs_type="environment_state_agent_pos")
    theirs = gym.make("gym_pusht/PushT-v0", obs_type="environment_state_agent_pos")
    state = [222.0, 97.0, 300.0, 260.0, 0.6]
    a, _ = ours.reset(options={"reset_to_state": state})
    b, _ = theirs.reset(options={"reset_to_state": np.array(state)})
    rng = np.random.default_rng(1)
    for _ in range(30):
        for key in ("environment_state", "agent_pos"):
            np.testing.assert_allclose(a[key], b[key], atol=1e-6, err_msg=key)
        action = rng.uniform(100, 400, 2).astype(np.float32)
        a, *_ = ours.step(action)
        b, *_ = theirs.step(action)


# ---------------------------------------------------------------------------------------------
# The pixels observation, drawn as the reference draws it


def test_bilinear_resize_interpolates_between_pixel_centres():
    """Against the textbook formula, one output pixel at a time (OpenCV's INTER_LINEAR rule)."""
    from dp_agent.envs._render import resize_bilinear

    image = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    out = resize_bilinear(image, 15)
    scale = 40 / 15
    for i, j in [(0, 0), (3, 11), (7, 7), (14, 14), (14, 0)]:
        y, x = min(max((i + 0.5) * scale - 0.5, 0), 39), min(max((j + 0.5) * scale - 0.5, 0), 39)
        y0, x0 = min(int(y), 38), min(int(x), 38)
        fy, fx = y - y0, x - x0
        p = image.astype(float)
        expected = (1 - fy) * ((1 - fx) * p[y0, x0] + fx * p[y0, x0 + 1]) + fy * (
            (1 - fx) * p[y0 + 1, x0] + fx * p[y0 + 1, x0 + 1]
        )
        assert np.abs(out[i, j] - expected).max() <= 1.0, (i, j)


def test_pixels_show_the_agent_and_the_block_where_they_are():
    env = gym.make(PUSHT_ID, obs_type="pixels")
    obs, _ = env.reset(options={"reset_to_state": [100.0, 400.0, 300.0, 200.0, 0.0]})
    image = obs["pixels"]
    at = lambda x, y: image[round(y / 512 * 96 - 0.5), round(x / 512 * 96 - 0.5)]  # noqa: E731
    np.testing.assert_array_equal(at(100, 400), (78, 126, 255))  # the agent's light inner disk
    np.testing.assert_array_equal(at(300, 215), (143, 163, 184))  # the block's light fill
    np.testing.assert_array_equal(at(450, 450), (255, 255, 255))  # background


def test_pixels_equal_gym_pusht_pixels_step_for_step():
    """Within one grey level (the resize's rounding), over 90 steps from three states."""
    pytest.importorskip("gym_pusht")
    ours = gym.make(PUSHT_ID, obs_type="pixels")
    theirs = gym.make("gym_pusht/PushT-v0", obs_type="pixels_agent_pos")
    rng = np.random.default_rng(0)
    for _ in range(3):
        state = [*rng.uniform(50, 450, 2), *rng.uniform(100, 400, 2), rng.uniform(0, 6)]
        a, _ = ours.reset(options={"reset_to_state": state})
        b, _ = theirs.reset(options={"reset_to_state": np.array(state)})
        for _ in range(30):
            diff = np.abs(a["pixels"].astype(int) - b["pixels"].astype(int))
            assert diff.max() <= 1 and diff.mean() < 0.05, (diff.max(), diff.mean())
            action = rng.uniform(100, 400, 2).astype(np.float32)
            a, *_ = ours.step(action)
            b, *_ = theirs.step(action)


def test_tree_detour_pixels_show_the_scene_and_keep_the_agent_position():
    state = gym.make(TREE_DETOUR_ID)
    pixels = gym.make(TREE_DETOUR_ID, obs_type="pixels")
    a, _ = state.reset(seed=3)
    b, _ = pixels.reset(seed=3)
    np.testing.assert_array_equal(b["agent_pos"], a[:2])
    np.testing.assert_array_equal(b["pixels"], pixels.unwrapped.render_frame(96))
    assert b["pixels"].shape == (96, 96, 3) and pixels.observation_space.contains(b)
    with pytest.raises(ValueError, match="obs_type"):
        gym.make(TREE_DETOUR_ID, obs_type="keypoints")
