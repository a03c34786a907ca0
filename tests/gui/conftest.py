"""Fixtures for the app's tests: offscreen Qt, a private app home, tiny demo files and a tiny
checkpoint made with the real store and the real training code."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before any QApplication exists
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

from pathlib import Path

import gymnasium as gym
import pytest

TREE = "dp_agent/TreeDetour-v0"


@pytest.fixture(autouse=True)
def app_home(tmp_path, monkeypatch) -> Path:
    """Every test gets its own ~/.dp_agent (settings, recordings, runs)."""
    home = tmp_path / "home"
    monkeypatch.setenv("DP_AGENT_HOME", str(home))
    return home


def write_expert_demos(path: Path, num_episodes: int, first_seed: int = 0) -> list[int]:
    """Record ``num_episodes`` TreeDetour expert episodes with DemoWriter; returns their lengths."""
    import dp_agent  # noqa: F401  (registers the envs)
    from dp_agent.cli.demos_generate import rollout_expert
    from dp_agent.data import DemoWriter
    from dp_agent.envs.experts import make_expert

    env = gym.make(TREE)
    expert = make_expert(env)
    seeds = range(first_seed, first_seed + num_episodes)
    episodes = [rollout_expert(env, expert, seed, None)[0] for seed in seeds]
    DemoWriter(path, {"env_name": TREE, "env_kwargs": {}}).append_episodes(episodes)
    env.close()
    return [len(ep) for ep in episodes]


@pytest.fixture(scope="session")
def tiny_demos(tmp_path_factory) -> Path:
    """Six TreeDetour expert episodes (read-only: copy before changing)."""
    path = tmp_path_factory.mktemp("demos") / "tiny_tree.hdf5"
    write_expert_demos(path, 6)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_demos, tmp_path_factory) -> Path:
    """A small policy trained for a few steps by the real training loop (fast, not good)."""
    import torch

    from dp_agent.config import make_configs
    from dp_agent.training.train import train

    torch.set_num_threads(1)
    pc, tc = make_configs(
        "cpu-small",
        {"down_dims": (32, 64), "step_embed_dim": 32, "obs_feature_dim": 32},
        {"num_steps": 4, "batch_size": 16, "checkpoint_every": 1000, "device": "cpu"},
    )
    out = tmp_path_factory.mktemp("run")
    return train(tiny_demos, out, pc, tc)


@pytest.fixture
def window(qtbot):
    """The main window on TreeDetour; no pygame gamepad polling, device probe or policy preload."""
    from dp_agent.gui.main_window import MainWindow

    win = MainWindow(env_id=TREE, use_gamepad=False, probe_device=False, preload_policy=False)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close_now()  # never a modal question at teardown (e.g. a failed test left a run going)
