"""Demonstration files and episodes that the store tests write: ours, and robomimic's."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from dp_agent.data import DemoWriter

PUSHT = {"env_name": "dp_agent/PushT-v0", "env_kwargs": {"obs_type": "state"}}


def make_arrays(seed: int, T: int | None = None, obs_dim: int = 5, action_dim: int = 2):
    rng = np.random.default_rng(seed)
    T = T or int(rng.integers(5, 40))
    obs = rng.normal(size=(T, obs_dim)).astype(np.float32)
    actions = (rng.random((T, action_dim)) * 512).astype(np.float32)
    rewards = rng.random(T).astype(np.float32)
    dones = np.zeros(T, bool)
    dones[-1] = True
    return obs, actions, rewards, dones


def write_file(path: Path, n: int, **kw) -> list[str]:
    writer = DemoWriter(path, PUSHT)
    return [
        writer.append_episode(*make_arrays(i, **kw), attrs={"seed": i, "success": i % 2 == 0})
        for i in range(n)
    ]


def write_robomimic_file(path: Path, first_index: int = 0, n: int = 12) -> None:
    """The layout robomimic's dataset_states_to_obs.py and split_train_val.py produce."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        total = 0
        for i in range(first_index, first_index + n):
            T = 5 + i
            g = data.create_group(f"demo_{i}")
            for grp in ("obs", "next_obs"):
                g.create_dataset(f"{grp}/robot0_eef_pos", data=rng.normal(size=(T, 3)))
                g.create_dataset(
                    f"{grp}/agentview_image",
                    data=rng.integers(0, 255, size=(T, 8, 8, 3), dtype=np.uint8),
                    compression="gzip",
                )
            g.create_dataset("states", data=rng.normal(size=(T, 32)))
            g.create_dataset("actions", data=rng.uniform(-1, 1, size=(T, 7)))
            g.create_dataset("rewards", data=np.r_[np.zeros(T - 1), 1.0])
            g.create_dataset("dones", data=np.r_[np.zeros(T - 1, np.int64), 1])
            g.attrs["num_samples"] = T
            g.attrs["model_file"] = "<mujoco model='base'></mujoco>"
            total += T
        data.attrs["total"] = total
        env_meta = {"env_name": "Lift", "type": 1, "env_kwargs": {"has_renderer": False}}
        data.attrs["env_args"] = json.dumps(env_meta, indent=4)
        names = [f"demo_{i}" for i in range(first_index, first_index + n)]
        f["mask/train"] = np.array(names[:-2], dtype="S")
        f["mask/valid"] = np.array(names[-2:], dtype="S")
