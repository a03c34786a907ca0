"""Every pretrained file that ships loads in one call, makes its env and acts in it."""

from pathlib import Path

import numpy as np
import pytest

from dp_agent.checkpoint import read_header
from dp_agent.data.shipped import package_dir

SHIPPED = sorted((package_dir() / "pretrained").glob("*.safetensors"))


def test_the_pretrained_folder_holds_the_documented_files():
    names = {p.name for p in SHIPPED}
    assert {
        "pusht.safetensors",
        "pusht_distilled.safetensors",
        "pusht_distilled_fast.safetensors",
        "pusht_image.safetensors",
        "tree_detour.safetensors",
    } <= names


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: Path(p).name)
def test_a_shipped_checkpoint_acts_in_the_env_it_names(path):
    from dp_agent.agent import DiffusionPolicyAgent
    from dp_agent.planning.agent import DiffuserAgent

    header = read_header(path)
    cls = DiffuserAgent if header.planner is not None else DiffusionPolicyAgent
    agent = cls.load(path, device="cpu")
    env = agent.make_env()
    obs, _ = env.reset(seed=0)
    action, _ = agent.predict(obs)
    assert action.shape == env.action_space.shape
    assert np.all(np.isfinite(action))
    env.close()


def test_the_fast_student_is_a_narrower_network_whose_sampler_takes_three_steps():
    """What the README says of ``pusht_distilled_fast``: the cpu-tiny U-Net (a third of the
    3-step student's weights), its own 3-step grid as the default sampler."""
    from dp_agent.checkpoint import load_policy

    pretrained = package_dir() / "pretrained"
    fast = load_policy(pretrained / "pusht_distilled_fast.safetensors")[0]
    student = load_policy(pretrained / "pusht_distilled.safetensors")[0]
    assert fast.config.down_dims == (32, 64, 128)
    assert fast.make_sampler().timesteps.tolist() == [99, 49, 5]
    n_fast, n_student = (sum(p.numel() for p in q.parameters()) for q in (fast, student))
    assert n_fast < n_student / 3
