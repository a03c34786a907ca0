"""Observations as dictionaries of named parts: the spec, Dict-observation policies trained from
an HDF5 file with an image part and a vector part, and the agent over vector envs of them."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv
from test_agent import count_calls

import dp_agent  # noqa: F401  (registers the tasks)
from dp_agent.agent import DiffusionPolicyAgent
from dp_agent.checkpoint import CheckpointError
from dp_agent.cli.demos_generate import rollout_expert
from dp_agent.config import make_configs
from dp_agent.data import DemoWriter
from dp_agent.envs.experts import make_expert
from dp_agent.observations import IMAGE, VECTOR, ObservationError, ObsSpec
from dp_agent.training.train import train
from dp_agent.training.windows import EpisodeArrays

PUSHT = "dp_agent/PushT-v0"
TINY_IMAGE = {
    "down_dims": (16, 32),
    "step_embed_dim": 16,
    "pred_horizon": 8,
    "action_horizon": 4,
    "vision_widths": (8, 8, 16, 16),
    "num_inference_steps": 3,
}


def pixels_env(max_steps=16):
    return gym.make(PUSHT, obs_type="pixels", max_episode_steps=max_steps)


def test_spec_of_a_dict_space_knows_images_from_vectors_and_round_trips():
    spec = ObsSpec.from_space(pixels_env().observation_space)
    assert {p.key: p.kind for p in spec.parts} == {"agent_pos": VECTOR, "pixels": IMAGE}
    assert spec.vector_dim == 2 and not spec.single
    assert ObsSpec.from_dict(spec.to_dict()) == spec
    chw = ObsSpec.from_space(gym.spaces.Box(0, 255, (3, 32, 32), np.uint8)).parts[0]
    assert chw.kind == IMAGE and chw.chw == (3, 32, 32) and not chw.channels_last
    assert ObsSpec.from_space(gym.spaces.Box(-1, 1, (4,))).single


def test_a_part_that_differs_is_named():
    spec = ObsSpec.from_space(pixels_env().observation_space)
    other = gym.spaces.Dict(
        {
            "pixels": gym.spaces.Box(0, 255, (64, 64, 3), np.uint8),
            "agent_pos": gym.spaces.Box(0, 1, (2,)),
        }
    )
    with pytest.raises(ObservationError, match=r"part 'pixels' is a image \(96, 96, 3\)"):
        spec.check_space(other, "env")
    with pytest.raises(ObservationError, match="part 'agent_pos' is missing"):
        spec.check_space(gym.spaces.Dict({"pixels": other["pixels"]}), "env")


@pytest.fixture(scope="module")
def pixels_policy(tmp_path_factory):
    """A tiny image + vector policy trained for a few steps on expert PushT pixel episodes."""
    tmp = tmp_path_factory.mktemp("pixels")
    env = gym.make(PUSHT, obs_type="pixels")
    episodes = [rollout_expert(env, make_expert(env), s, "pixels", max_steps=30)[0] for s in (0, 1)]
    demos = tmp / "pixels.hdf5"
    DemoWriter(demos, {"env_name": PUSHT, "env_kwargs": {"obs_type": "pixels"}}).append_episodes(
        episodes
    )
    pc, tc = make_configs("cpu-image", TINY_IMAGE, {"num_steps": 3, "batch_size": 8})
    return train(demos, tmp / "run", pc, tc, json_progress=True)


def test_dict_policy_runs_in_sb3_evaluate_policy_with_one_batched_chunk_per_replan(pixels_policy):
    venv = DummyVecEnv([pixels_env] * 4)
    agent = DiffusionPolicyAgent.load(pixels_policy, venv, device="cpu")
    assert agent.obs_spec.image_parts[0].key == "pixels"
    counter = count_calls(agent)
    _, lengths = evaluate_policy(agent, venv, n_eval_episodes=4, return_episode_rewards=True)
    assert lengths == [16] * 4  # no success in 16 steps: every episode runs to the limit
    rounds = -(-16 // agent.config.action_horizon)  # re-plans per episode, all envs together
    assert agent.num_chunks_sampled == rounds
    assert counter.calls == rounds * agent.num_inference_steps
    assert counter.rows == 4 * rounds * agent.num_inference_steps


def test_dict_history_gives_chunks_and_the_image_stays_uint8(pixels_policy):
    agent = DiffusionPolicyAgent.load(pixels_policy, device="cpu")
    obs, _ = pixels_env().reset(seed=3)
    agent.predict(obs)
    hist = agent.obs_history(0)
    assert hist["pixels"].dtype == np.uint8 and hist["pixels"].shape == (2, 96, 96, 3)
    assert len(hist) == len(obs) >= 2
    for key, frames in hist.items():  # every part padded by repeating the first frame
        np.testing.assert_array_equal(frames, np.stack([obs[key], obs[key]]), err_msg=key)
    assert agent.predict_chunk(hist).shape == (agent.config.action_horizon, 2)
    traj = agent.sample(hist, 3, seed=0, return_trajectory=True)
    assert traj.shape == (agent.num_inference_steps + 1, 3, agent.config.pred_horizon, 2)


def test_loading_for_an_env_whose_image_differs_names_the_part(pixels_policy):
    env = gym.make(PUSHT, obs_type="pixels", observation_size=64)
    with pytest.raises(CheckpointError, match="part 'pixels'"):
        DiffusionPolicyAgent.load(pixels_policy, env, device="cpu")


def dot_episode(px, py, rng, length=12):
    """A 48x48 image with a bright dot at (3px, 3py); the actions are the dot's place in
    [-1, 1]; the vector part is noise that says nothing about it."""
    image = np.zeros((length, 48, 48, 1), np.uint8)
    image[:, 3 * py - 2 : 3 * py + 3, 3 * px - 2 : 3 * px + 3] = 255
    noise = rng.uniform(-1, 1, (length, 2)).astype(np.float32)
    target = np.array([px, py], np.float32) / 15 * 2 - 1
    return EpisodeArrays({"camera": image, "noise": noise}, np.tile(target, (length, 1)))


@pytest.mark.slow
def test_what_only_the_image_shows_is_learned_by_the_image_policy_alone(tmp_path):
    rng = np.random.default_rng(0)
    episodes = [dot_episode(*rng.integers(1, 15, 2), rng) for _ in range(60)]
    held_out = [dot_episode(*rng.integers(1, 15, 2), rng, length=1) for _ in range(20)]
    overrides = {
        "down_dims": (32, 64),
        "step_embed_dim": 32,
        "pred_horizon": 4,
        "action_horizon": 2,
        "obs_horizon": 1,
        "vision_widths": (16, 16, 32, 32),
        "vision_crop": 0,
        "num_inference_steps": 8,
    }
    train_cfg = {"num_steps": 500, "batch_size": 64, "lr": 2e-3, "warmup_steps": 50}

    def error(keys):
        pc, tc = make_configs("cpu-image", overrides, train_cfg)
        chosen = [EpisodeArrays({k: e.obs[k] for k in keys}, e.actions) for e in episodes]
        agent = DiffusionPolicyAgent.load(
            train(chosen, tmp_path / "-".join(keys), pc, tc, json_progress=True), device="cpu"
        )
        errors = []
        for ep in held_out:
            obs = {k: ep.obs[k] for k in keys}
            chunks = agent.sample(obs if len(keys) > 1 else obs[keys[0]], 4, seed=0)
            errors.append(np.abs(chunks[:, 0] - ep.actions[0]).mean())
        return float(np.mean(errors))

    torch.manual_seed(0)
    with_image, vector_only = error(["camera", "noise"]), error(["noise"])
    # targets are uniform in [-1, 1]: guessing gives a mean absolute error of about 0.67
    assert with_image < 0.1 < 0.3 < vector_only
