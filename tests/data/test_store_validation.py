"""The demonstration store checks what it reads and writes: bad files and episodes give one
DemoError naming the file and the field; files written by robomimic open and take appends."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from store_examples import make_arrays, write_file, write_robomimic_file

from dp_agent.data import DemoError, DemoReader, DemoWriter

# ------------------------------------------------------------------------------------------------
# Bad input: one DemoError naming the file and the field


def write_raw(path: Path, episodes: dict[str, dict], env_args: str | None = None) -> Path:
    """A file written with h5py directly: episodes = {name: {"obs/state": arr, "actions": ...}}."""
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        if env_args is not None:
            data.attrs["env_args"] = env_args
        for name, fields in episodes.items():
            g = data.create_group(name)
            for key, value in fields.items():
                g[key] = value
    return path


GOOD_ENV_ARGS = json.dumps({"env_name": "dp_agent/PushT-v0", "type": 2, "env_kwargs": {}})


def raw_episode(T: int = 10, obs_dim: int = 5, action_dim: int = 2) -> dict[str, np.ndarray]:
    return {
        "obs/state": np.zeros((T, obs_dim), np.float32),
        "actions": np.zeros((T, action_dim), np.float32),
        "rewards": np.zeros(T, np.float32),
        "dones": np.zeros(T, np.uint8),
    }


def with_changes(**changes) -> dict[str, np.ndarray]:
    fields = raw_episode()
    for key, value in changes.items():
        key = key.replace("__", "/")
        if value is None:
            del fields[key]
        else:
            fields[key] = value
    return fields


def test_missing_file(tmp_path):
    with pytest.raises(DemoError, match="file not found") as exc:
        DemoReader(tmp_path / "nope.hdf5")
    assert str(tmp_path / "nope.hdf5") in str(exc.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.hdf5"
    path.touch()
    with pytest.raises(DemoError, match=r"empty \(0 bytes\)") as exc:
        DemoReader(path)
    assert str(path) in str(exc.value)


def test_not_an_hdf5_file(tmp_path):
    path = tmp_path / "notes.hdf5"
    path.write_text("episode 1: pushed the T\n")
    with pytest.raises(DemoError, match="not an HDF5 file") as exc:
        DemoReader(path)
    assert str(path) in str(exc.value)


def test_truncated_hdf5_file(tmp_path):
    path = tmp_path / "cut.hdf5"
    write_file(path, 3)
    path.write_bytes(path.read_bytes()[:600])
    with pytest.raises(DemoError, match="damaged or unreadable HDF5 file|no HDF5 signature") as exc:
        DemoReader(path)
    assert str(path) in str(exc.value)


def test_missing_data_group(tmp_path):
    path = tmp_path / "other.hdf5"
    with h5py.File(path, "w") as f:
        f["weights"] = np.zeros(3)
    with pytest.raises(DemoError, match=r": data: missing group") as exc:
        DemoReader(path)
    assert str(path) in str(exc.value)


BAD_EPISODES = {
    "missing actions": (
        {"demo_0": raw_episode(), "demo_1": with_changes(actions=None)},
        "data/demo_1/actions: missing dataset",
    ),
    "missing obs": (
        {"demo_0": with_changes(obs__state=None)},
        "data/demo_0/obs: missing group",
    ),
    "obs shorter than actions": (
        {"demo_0": with_changes(obs__state=np.zeros((9, 5), np.float32))},
        r"data/demo_0/obs/state: expected numeric shape \(10, \.\.\.\), one step per action, "
        r"got \(9, 5\)",
    ),
    "rewards longer than actions": (
        {"demo_0": with_changes(rewards=np.zeros(11, np.float32))},
        r"data/demo_0/rewards: expected numeric shape \(10,\) like actions, got \(11,\)",
    ),
    "dones shorter than actions": (
        {"demo_0": with_changes(dones=np.zeros(3, np.uint8))},
        r"data/demo_0/dones: expected numeric shape \(10,\)",
    ),
    "action dimension differs": (
        {"demo_0": raw_episode(), "demo_1": raw_episode(action_dim=3)},
        "data/demo_1/actions: expected action dimension 2 like data/demo_0, got 3",
    ),
    "obs keys differ": (
        {"demo_0": raw_episode(), "demo_1": {**raw_episode(), "obs/extra": np.zeros((10, 1))}},
        r"data/demo_1/obs: expected keys \['state'\] like data/demo_0",
    ),
    "obs shape differs": (
        {"demo_0": raw_episode(), "demo_1": raw_episode(obs_dim=6)},
        r"data/demo_1/obs/state: expected per-step shape \(5,\) like data/demo_0, got \(6,\)",
    ),
    "1-D actions": (
        {"demo_0": with_changes(actions=np.zeros(10, np.float32))},
        r"data/demo_0/actions: expected numeric actions of shape \(T, Da\)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_EPISODES))
def test_bad_episode_structure_is_reported_on_open(tmp_path, case):
    episodes, message = BAD_EPISODES[case]
    path = write_raw(tmp_path / "bad.hdf5", episodes, GOOD_ENV_ARGS)
    with pytest.raises(DemoError, match=message) as exc:
        DemoReader(path)
    assert str(exc.value).startswith(f"{path}: ")


def test_num_samples_must_match_actions(tmp_path):
    path = write_raw(tmp_path / "bad.hdf5", {"demo_0": raw_episode()}, GOOD_ENV_ARGS)
    with h5py.File(path, "a") as f:
        f["data/demo_0"].attrs["num_samples"] = 12
    with pytest.raises(DemoError, match="data/demo_0 attribute num_samples: expected 10"):
        DemoReader(path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("actions", np.inf, "data/demo_1/actions: expected finite values, found inf at step 4"),
        ("obs/state", np.nan, "data/demo_1/obs/state: expected finite values, found nan at step 4"),
        ("rewards", np.nan, "data/demo_1/rewards: expected finite values"),
    ],
)
def test_non_finite_values_are_reported_when_the_episode_is_read(tmp_path, field, value, message):
    bad = raw_episode()
    bad[field] = bad[field].copy()
    bad[field][4] = value
    path = write_raw(tmp_path / "nan.hdf5", {"demo_0": raw_episode(), "demo_1": bad}, GOOD_ENV_ARGS)
    with DemoReader(path) as reader:
        reader.episode(0)
        with pytest.raises(DemoError, match=message) as exc:
            reader.episode("demo_1")
    assert str(exc.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("env_args", "message"),
    [
        (None, "data attribute env_args: missing; expected a JSON object"),
        ("{env_name: PushT", "data attribute env_args: not valid JSON"),
        (json.dumps({"type": 2}), "data attribute env_args: has no string env_name"),
    ],
)
def test_bad_env_args(tmp_path, env_args, message):
    path = write_raw(tmp_path / "env.hdf5", {"demo_0": raw_episode()}, env_args)
    with pytest.raises(DemoError, match=message) as exc:
        DemoReader(path)
    assert str(exc.value).startswith(f"{path}: ")


def test_episodes_of_another_env_are_refused(tmp_path):
    path = tmp_path / "demos.hdf5"
    write_file(path, 1)
    with pytest.raises(DemoError) as exc:
        DemoReader(path, expected_env_id="dp_agent/TreeDetour-v0")
    message = str(exc.value)
    assert message.startswith(f"{path}: data attribute env_args: ")
    assert "'dp_agent/PushT-v0'" in message and "'dp_agent/TreeDetour-v0'" in message
    expected = "holds episodes of env 'dp_agent/PushT-v0', expected 'dp_agent/TreeDetour-v0'"
    with pytest.raises(DemoError, match=expected):
        DemoWriter(path, {"env_name": "dp_agent/TreeDetour-v0"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("obs_long", r"new episode obs/state: expected numeric shape \(12, \.\.\.\)"),
        (
            "rewards_short",
            r"new episode rewards: expected numeric shape \(12,\) like actions, got \(11,\)",
        ),
        ("nan_obs", "new episode obs/state: expected finite values, found nan at step 2"),
        ("action_dim", "new episode actions: expected action dimension 2 like data/demo_0, got 3"),
        ("obs_keys", r"new episode obs: expected keys \['state'\] like data/demo_0"),
        ("attr", r"new episode attrs\['note'\]: expected str, bool, int, float"),
    ],
)
def test_bad_episodes_are_refused_before_anything_is_written(tmp_path, change, message):
    path = tmp_path / "demos.hdf5"
    write_file(path, 1)
    before = path.read_bytes()
    obs, actions, rewards, dones = make_arrays(1, T=12)
    attrs = None
    if change == "obs_long":
        obs = np.zeros((13, 5))
    elif change == "rewards_short":
        rewards = rewards[:11]
    elif change == "nan_obs":
        obs[2, 0] = np.nan
    elif change == "action_dim":
        actions = np.zeros((12, 3))
    elif change == "obs_keys":
        obs = {"keypoints": np.zeros((12, 18))}
    elif change == "attr":
        attrs = {"note": {"nested": 1}}
    with pytest.raises(DemoError, match=message) as exc:
        DemoWriter(path).append_episode(obs, actions, rewards, dones, attrs)
    assert str(exc.value).startswith(f"{path}: ")
    assert path.read_bytes() == before


# ------------------------------------------------------------------------------------------------
# Files written by robomimic


@pytest.mark.parametrize("first_index", [0, 1])
def test_robomimic_files_open_and_iterate(tmp_path, first_index):
    path = tmp_path / "low_dim.hdf5"
    write_robomimic_file(path, first_index)
    with DemoReader(path, expected_env_id="Lift") as reader:
        expected = [f"demo_{i}" for i in range(first_index, first_index + 12)]
        assert reader.names == expected  # numeric order: demo_9, demo_10, demo_11
        assert reader.env_args["type"] == 1
        assert reader.obs_keys == ["agentview_image", "robot0_eef_pos"]
        assert reader.action_dim == 7
        assert reader.mask_names == ["train", "valid"]
        assert reader.mask("train") == expected[:-2]
        assert reader.mask("valid") == expected[-2:]
        episodes = list(reader)
        assert [len(ep) for ep in episodes] == [5 + i for i in range(first_index, first_index + 12)]
        assert episodes[0].obs["agentview_image"].dtype == np.uint8
        assert episodes[0].obs["robot0_eef_pos"].dtype == np.float32
        assert episodes[0].dones[-1] and not episodes[0].dones[0]
        assert episodes[0].attrs["model_file"].startswith("<mujoco")
        assert [r["success"] for r in reader.summary()] == [None] * 12
        assert reader.summary()[0]["return"] == 1.0
        with pytest.raises(DemoError, match="mask/test: missing"):
            reader.mask("test")


def test_appending_to_a_robomimic_file_keeps_its_extra_groups(tmp_path):
    path = tmp_path / "low_dim.hdf5"
    write_robomimic_file(path, 1, n=3)
    T = 4
    obs = {"robot0_eef_pos": np.zeros((T, 3)), "agentview_image": np.zeros((T, 8, 8, 3), np.uint8)}
    assert DemoWriter(path).append_episode(obs, np.zeros((T, 7)), np.zeros(T), np.ones(T)) == (
        "demo_4"
    )
    with DemoReader(path) as reader:
        assert reader.names == ["demo_1", "demo_2", "demo_3", "demo_4"]
    with h5py.File(path, "r") as f:
        assert "next_obs" in f["data/demo_1"] and "states" in f["data/demo_1"]
        assert f["data"].attrs["total"] == 6 + 7 + 8 + 4
