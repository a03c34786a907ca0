"""Learning tests: tiny configs that must reach a stated result on CPU.

The synthetic task: one observation, action chunks that go to +1 or to -1 with equal probability.
A diffusion policy must sample both modes; an MSE regressor with the same backbone must average
them and land in between.
"""

import numpy as np
import pytest

from dp_agent.agent import DiffusionPolicyAgent
from dp_agent.config import make_configs
from dp_agent.training.train import train
from dp_agent.training.windows import EpisodeArrays

pytestmark = pytest.mark.slow  # policies trained until they keep both modes


def bimodal_episodes(n=64, length=24):
    rng = np.random.default_rng(0)
    episodes = []
    for i in range(n):
        obs = np.zeros((length, 2), np.float32)
        obs[:, 1] = rng.uniform(-0.05, 0.05, length)  # the same observation up to a little noise
        actions = np.full((length, 1), 1.0 if i % 2 else -1.0, np.float32)
        episodes.append(EpisodeArrays(obs, actions))
    return episodes


def fit(tmp_path, objective, denoiser="unet", steps=600, lr=3e-3):
    policy_over = {
        "objective": objective,
        "denoiser": denoiser,
        "down_dims": (32, 64),
        "step_embed_dim": 32,
        "d_model": 64,
        "n_layers": 2,
        "dropout": 0.0,
        "pred_horizon": 8,
        "action_horizon": 4,
    }
    train_over = {
        "num_steps": steps,
        "batch_size": 64,
        "lr": lr,
        "warmup_steps": 50,
        "checkpoint_every": 10_000,
        "log_every": 100,
    }
    pc, tc = make_configs("cpu-small", policy_over, train_over)
    final = train(bimodal_episodes(), tmp_path / objective, pc, tc, json_progress=True)
    return DiffusionPolicyAgent.load(final, device="cpu")


def mode_shares(chunks):
    mean = chunks.mean(axis=(1, 2))  # one number per sampled chunk
    return (mean > 0.5).mean(), (mean < -0.5).mean(), (np.abs(mean) <= 0.5).mean()


@pytest.mark.parametrize(
    "denoiser,steps,lr,sampler",
    [("unet", 600, 3e-3, "ddim"), ("transformer", 1000, 1e-3, "ddpm")],
)
def test_diffusion_policy_samples_both_modes(tmp_path, denoiser, steps, lr, sampler):
    agent = fit(tmp_path, "diffusion", denoiser, steps, lr)
    agent.set_sampler(sampler)
    chunks = agent.sample(np.zeros((2, 2), np.float32), num_samples=200, seed=0)
    up, down, between = mode_shares(chunks)
    assert up >= 0.30 and down >= 0.30, (up, down)
    assert between < 0.10, between


def test_mse_regressor_with_the_same_backbone_lands_between_the_modes(tmp_path):
    agent = fit(tmp_path, "mse")
    chunks = agent.sample(np.zeros((2, 2), np.float32), num_samples=20, seed=0)
    up, down, between = mode_shares(chunks)
    assert between == 1.0, (up, down)
    assert np.abs(chunks).max() < 0.5
