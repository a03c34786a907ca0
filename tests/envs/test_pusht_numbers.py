"""PushT reproduces the reference numbers (docs/pusht.md): geometry, reset, control, coverage."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pymunk
import pytest

import dp_agent  # noqa: F401  (registers the envs)
from dp_agent.envs import PUSHT_ID
from dp_agent.envs import pusht as pt
from dp_agent.envs.pusht import PushT

GOAL = np.array([256.0, 256.0, math.pi / 4])


def reset_state_for_pose(ax: float, ay: float, x: float, y: float, angle: float) -> list[float]:
    """The reset_to_state vector that lands the block exactly at (x, y, angle): the reference sets
    the position, then the angle, which turns the body about its centre of gravity (0, 45)."""
    cog = np.array([0.0, 45.0])
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    origin = np.array([x, y]) - cog + rot @ cog
    return [ax, ay, origin[0], origin[1], angle]


def analytic_coverage(a: float, b: float) -> float:
    """Coverage of the goal T by the same T shifted by (a, b) in its own frame (|a| <= 30).

    Crossbar over crossbar (120-|a|)(30-|b|), stem over stem (30-|a|)(90-|b|), and a 30 x |b|
    strip where one T's crossbar lies over the other's stem: area 6300 - 120|a| - 120|b| + 2|a||b|.
    """
    a, b = abs(a), abs(b)
    return (6300.0 - 120.0 * a - 120.0 * b + 2.0 * a * b) / 6300.0


def test_block_geometry_and_mass_follow_the_reference():
    env = PushT()
    env.reset(seed=0)
    block = env.world.block
    assert block.mass == 1.0
    # 2 x moment of the 120 x 30 crossbar about the body origin: 2 (m (w^2 + h^2) / 12 + m 15^2).
    assert block.moment == pytest.approx(2 * ((120**2 + 30**2) / 12 + 15**2))
    assert tuple(block.center_of_gravity) == (0.0, 45.0)
    verts = sorted(tuple(v) for s in env.world.block_shapes for v in s.get_vertices())
    assert verts == sorted(map(tuple, pt.T_KEYPOINTS_LOCAL.tolist()))
    assert all(s.friction == 0.0 for s in env.world.space.shapes)  # pymunk's default
    assert env.world.space.damping == 0.0 and tuple(env.world.space.gravity) == (0.0, 0.0)
    agent_shape = next(s for s in env.world.space.shapes if isinstance(s, pymunk.Circle))
    assert agent_shape.radius == 15.0 and env.world.agent.body_type == pymunk.Body.KINEMATIC
    walls = sorted(
        (tuple(s.a), tuple(s.b), s.radius)
        for s in env.world.space.shapes
        if isinstance(s, pymunk.Segment)
    )
    assert len(walls) == 4 and {w[2] for w in walls} == {2.0}
    assert {p for w in walls for p in w[:2]} == {(5, 5), (5, 506), (506, 506), (506, 5)}


def test_reset_to_state_applies_position_then_angle_like_the_reference():
    # The reference gym-pusht documents this exact example.
    obs, _ = PushT().reset(options={"reset_to_state": [0.0, 10.0, 20.0, 30.0, 1.0]})
    np.testing.assert_allclose(obs, [0.0, 10.0, 57.866196, 50.686398, 1.0], atol=1e-6)
    # Position first, then a turn about the centre of gravity: the goal vector lands elsewhere.
    _, info = PushT().reset(options={"reset_to_state": [50.0, 50.0, *GOAL]})
    s, c = math.sin(GOAL[2]), math.cos(GOAL[2])
    np.testing.assert_allclose(info["block_pose"], [256 + 45 * s, 301 - 45 * c, GOAL[2]], atol=1e-9)


def test_reset_at_the_goal_pose_is_full_coverage_and_success():
    env = gym.make(PUSHT_ID)
    _, info = env.reset(options={"reset_to_state": reset_state_for_pose(50, 50, *GOAL)})
    np.testing.assert_allclose(info["block_pose"], GOAL, atol=1e-9)
    assert info["coverage"] == pytest.approx(1.0, abs=1e-9)
    assert info["is_success"] is True
    _, reward, terminated, truncated, info = env.step(np.array([50.0, 50.0], np.float32))
    assert reward == 1.0 and terminated and not truncated and info["is_success"]


@pytest.mark.parametrize("a,b", [(6.0, 0.0), (0.0, -9.0), (7.0, 7.0), (-12.5, 4.0)])
def test_coverage_of_a_shifted_pose_matches_the_geometry(a, b):
    # Shift by (a, b) in the T's frame, i.e. by R(pi/4) (a, b) in the world.
    shift = np.array(
        [[math.cos(GOAL[2]), -math.sin(GOAL[2])], [math.sin(GOAL[2]), math.cos(GOAL[2])]]
    )
    x, y = GOAL[:2] + shift @ [a, b]
    env = gym.make(PUSHT_ID)
    _, info = env.reset(options={"reset_to_state": reset_state_for_pose(50, 450, x, y, GOAL[2])})
    expected = analytic_coverage(a, b)
    assert info["coverage"] == pytest.approx(expected, abs=1e-9)
    _, reward, terminated, _, info = env.step(np.array([50.0, 450.0], np.float32))
    assert reward == pytest.approx(min(1.0, expected / 0.95), abs=1e-9)
    assert terminated == (expected > 0.95) == info["is_success"]


def test_world_shift_coverage_example():
    # A 10 px shift along world x is (7.07, -7.07) in the goal T's frame.
    d = 10 / math.sqrt(2)
    expected = 1 - (120 * d + 120 * d - 2 * d * d) / 6300
    assert pt.coverage_of(266.0, 256.0, GOAL[2]) == pytest.approx(expected, abs=1e-9)
    assert expected == pytest.approx(0.746499, abs=1e-6)


def test_pd_control_numbers():
    """One step = 10 substeps of v += (100 (target - p) - 20 v) 0.01, then p += v 0.01."""
    env = PushT()
    env.reset(options={"reset_to_state": [100.0, 400.0, 350.0, 150.0, 0.0]})
    env.step(np.array([140.0, 370.0], np.float32))
    p, v = np.array([100.0, 400.0]), np.zeros(2)
    for _ in range(10):
        v = v + (100.0 * (np.array([140.0, 370.0]) - p) + 20.0 * (0.0 - v)) * 0.01
        p = p + v * 0.01
    np.testing.assert_allclose(env.agent_position, p, rtol=0, atol=1e-9)
    # Critically damped (omega = 10/s): after 0.1 s about 1 - 2/e of the way (the semi-implicit
    # Euler substeps run a little ahead of the continuous solution).
    frac = (env.agent_position[0] - 100.0) / 40.0
    assert frac == pytest.approx(1 - 2 / math.e, abs=0.04)


def test_pushing_through_the_centre_of_gravity_translates_the_block():
    # Upright T (stem down), agent under the stem's end on the line through the centre of gravity.
    env = PushT()
    env.reset(options={"reset_to_state": [256.0, 400.0, 256.0, 200.0, 0.0]})
    contacts = []
    for _ in range(30):  # 3 s: the PD has settled on the target
        obs, *_, info = env.step(np.array([256.0, 300.0], np.float32))
        contacts.append(info["n_contacts"])
    agent_x, agent_y, x, y, angle = obs
    # The collision handler (pymunk 6 and 7 APIs) sees the contact only once the agent arrives.
    assert contacts[0] == 0 and max(contacts) > 0
    assert (agent_x, agent_y) == pytest.approx((256.0, 300.0), abs=1e-6)
    # The block stopped with its stem end touching the agent: origin = 300 - 15 - 120.
    assert y == pytest.approx(165.0, abs=0.1)
    assert x == pytest.approx(256.0, abs=1e-9) and min(angle, 2 * math.pi - angle) < 1e-9


def test_block_keeps_no_momentum():
    env = PushT()
    env.reset(options={"reset_to_state": [256.0, 400.0, 256.0, 200.0, 0.0]})
    for _ in range(8):
        env.step(np.array([256.0, 250.0], np.float32))  # still pushing hard
    pose = env.block_pose
    for _ in range(5):
        env.step(np.array([256.0, 480.0], np.float32))  # pull away: the block stops at once
    np.testing.assert_allclose(env.block_pose[:2], pose[:2], atol=0.5)
    before = env.block_pose
    for _ in range(5):
        env.step(np.array([256.0, 480.0], np.float32))
    assert np.array_equal(env.block_pose, before)


def test_random_reset_draws_reference_ranges():
    env = PushT()
    for seed in range(100):
        obs, info = env.reset(seed=seed)
        agent = obs[:2]
        assert np.array_equal(agent, np.round(agent)) and np.all((agent >= 50) & (agent < 450))
        x, y, angle = info["block_pose"]
        assert -math.pi <= angle < math.pi
        # Undo the turn about the centre of gravity: the drawn position is a pair of integers.
        drawn = reset_state_for_pose(0, 0, x, y, angle)[2:4]
        np.testing.assert_allclose(drawn, np.round(drawn), atol=1e-6)
        assert all(100 <= v < 400 for v in np.round(drawn))
        assert obs[4] == pytest.approx(angle % (2 * math.pi))


def test_observation_modes_describe_the_same_state():
    state_env = PushT(obs_type="state")
    kp_env = PushT(obs_type="keypoints")
    px_env = PushT(obs_type="pixels")
    s, _ = state_env.reset(seed=7)
    k, _ = kp_env.reset(seed=7)
    p, _ = px_env.reset(seed=7)
    np.testing.assert_array_equal(k[16:], s[:2])
    np.testing.assert_array_equal(p["agent_pos"], s[:2])
    corners = k[:16].reshape(8, 2)
    np.testing.assert_allclose(corners, pt.t_corners(s[2], s[3], s[4]), atol=1e-9)
    # Keypoint 0 is the crossbar's corner at body (-60, 0); keypoint 6 the stem's end at (15, 120).
    body = state_env.world.block
    np.testing.assert_allclose(corners[0], body.local_to_world((-60, 0)), atol=1e-9)
    np.testing.assert_allclose(corners[6], body.local_to_world((15, 120)), atol=1e-9)
    assert p["pixels"].shape == (96, 96, 3)


def test_pinned_trajectory():
    """A fixed action sequence from seed 0 ends where it did when these numbers were recorded
    (identical under pymunk 6.11 and 7.3)."""
    env = PushT()
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(
        obs, [390.0, 304.0, 241.54255641, 268.51697354, 3.3990369], atol=1e-7
    )
    for k in range(60):
        action = [256 + 150 * math.cos(k / 8), 256 + 150 * math.sin(k / 5)]
        obs, *_ = env.step(np.array(action, np.float32))
    expected = [346.3222364681, 131.3736296521, 237.4503834312, 238.9378890232, 3.7419004011]
    np.testing.assert_allclose(obs, expected, atol=1e-6)


def test_episode_is_limited_to_300_steps():
    env = gym.make(PUSHT_ID)
    env.reset(seed=1)
    truncations = []
    for _ in range(300):
        *_, terminated, truncated, _ = env.step(np.array([20.0, 20.0], np.float32))
        assert not terminated
        truncations.append(truncated)
    assert truncations == [False] * 299 + [True]


def test_reset_to_state_method_restores_an_observed_state_exactly():
    env = PushT()
    obs, _ = env.reset(seed=3)
    for k in range(20):
        obs, *_ = env.step(np.array([200 + 5 * k, 300 - 4 * k], np.float32))
    replay = PushT()
    restored, info = replay.reset_to_state(obs)
    np.testing.assert_allclose(restored, obs, atol=1e-9)
    assert info["coverage"] == pytest.approx(env.coverage(), abs=1e-9)
    with pytest.raises(ValueError, match="reset_to_state: expected 5 finite numbers"):
        replay.reset_to_state([1.0, 2.0])
