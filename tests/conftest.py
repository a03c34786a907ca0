"""Shared fixtures; headless Qt and SDL for every test."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import pytest
import torch
from support import PointEnv, tiny_policy

torch.set_num_threads(1)


@pytest.fixture
def point_env_cls():
    return PointEnv


@pytest.fixture
def tiny_agent():
    from dp_agent.agent import DiffusionPolicyAgent

    env = PointEnv()
    return DiffusionPolicyAgent(
        tiny_policy(), env.observation_space, env.action_space, "test/Point", device="cpu"
    )
