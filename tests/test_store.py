"""The demonstration store: round trips, validation messages, robomimic files, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from dp_agent.cli.main import main
from dp_agent.data import DemoError, DemoReader, DemoWriter, Episode, stack_obs
from dp_agent.data.store import journal_dir

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


# ------------------------------------------------------------------------------------------------
# Round trips


def test_round_trip_keeps_values_names_and_totals(tmp_path):
    path = tmp_path / "demos.hdf5"
    names = write_file(path, 12)
    assert names == [f"demo_{i}" for i in range(12)]
    with DemoReader(path, expected_env_id="dp_agent/PushT-v0") as reader:
        assert reader.names == names  # demo_10 after demo_9
        assert reader.num_episodes == len(reader) == 12
        assert reader.env_id == "dp_agent/PushT-v0"
        assert reader.env_args["env_kwargs"] == {"obs_type": "state"}
        assert reader.env_args["type"] == 2
        assert reader.obs_keys == ["state"]
        assert reader.action_dim == 2
        for i, ep in enumerate(reader):
            obs, actions, rewards, dones = make_arrays(i)
            assert ep.name == f"demo_{i}"
            np.testing.assert_array_equal(ep.obs["state"], obs)
            np.testing.assert_array_equal(ep.actions, actions)
            np.testing.assert_array_equal(ep.rewards, rewards)
            np.testing.assert_array_equal(ep.dones, dones)
            assert ep.actions.dtype == np.float32 and ep.dones.dtype == bool
            assert ep.attrs["seed"] == i and ep.attrs["success"] is (i % 2 == 0)
            assert ep.attrs["num_samples"] == len(ep) == len(actions)
        assert reader.episode(3).name == reader.episode("demo_3").name == "demo_3"
        lengths = [len(make_arrays(i)[1]) for i in range(12)]
        assert reader.lengths == lengths
    assert DemoWriter(path).compact() == 11  # the first append made the file, 11 went on top
    with h5py.File(path, "r") as f:
        assert f["data"].attrs["total"] == sum(lengths)
        assert [f[f"data/demo_{i}"].attrs["num_samples"] for i in range(12)] == lengths
        ds = f["data/demo_0/actions"]
        assert ds.dtype == np.float32 and ds.compression == "gzip" and ds.chunks is not None
        assert f["data/demo_0/obs/state"].dtype == np.float32
        assert json.loads(f["data"].attrs["env_args"])["env_name"] == "dp_agent/PushT-v0"


def test_float64_observations_are_stored_as_float32(tmp_path):
    path = tmp_path / "demos.hdf5"
    obs, actions, rewards, dones = make_arrays(0)
    DemoWriter(path, PUSHT).append_episode(obs.astype(np.float64), actions, rewards, dones)
    with h5py.File(path, "r") as f:
        assert f["data/demo_0/obs/state"].dtype == np.float32


def test_dict_observations_with_several_keys(tmp_path):
    path = tmp_path / "pixels.hdf5"
    rng = np.random.default_rng(0)
    T = 7
    obs = {
        "image": rng.integers(0, 255, size=(T, 16, 16, 3), dtype=np.uint8),
        "agent_pos": rng.random((T, 2)),
    }
    env_args = {"env_name": "dp_agent/PushT-v0", "env_kwargs": {"obs_type": "pixels"}}
    DemoWriter(path, env_args).append_episode(obs, rng.random((T, 2)), np.zeros(T), np.zeros(T))
    with DemoReader(path) as reader:
        assert reader.obs_keys == ["agent_pos", "image"]
        assert reader.obs_shapes == {"agent_pos": (2,), "image": (16, 16, 3)}
        ep = reader.episode(0)
        assert ep.obs["image"].dtype == np.uint8
        np.testing.assert_array_equal(ep.obs["image"], obs["image"])
        np.testing.assert_allclose(ep.obs["agent_pos"], obs["agent_pos"], rtol=1e-6)


def test_append_episodes_writes_a_batch_and_accepts_a_generator(tmp_path):
    path = tmp_path / "demos.hdf5"
    write_file(path, 2)
    batch = (
        Episode("ignored", {"state": o}, a, r, d, {"seed": 10 + i})
        for i, (o, a, r, d) in enumerate(make_arrays(10 + i) for i in range(3))
    )
    names = DemoWriter(path).append_episodes(batch)
    assert names == ["demo_2", "demo_3", "demo_4"]
    with DemoReader(path) as reader:
        np.testing.assert_array_equal(reader.episode("demo_4").actions, make_arrays(12)[1])


def test_a_bad_episode_in_a_batch_saves_none_of_it(tmp_path):
    path = tmp_path / "demos.hdf5"
    write_file(path, 2)
    before = path.read_bytes()
    good = Episode("", {"state": make_arrays(5)[0]}, *make_arrays(5)[1:])
    obs, actions, rewards, dones = make_arrays(6)
    actions[3, 1] = np.nan
    bad = Episode("", {"state": obs}, actions, rewards, dones)
    with pytest.raises(DemoError, match="new episode actions: expected finite values"):
        DemoWriter(path).append_episodes([good, bad])
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_open_reader_keeps_its_snapshot_while_a_writer_appends(tmp_path):
    path = tmp_path / "demos.hdf5"
    write_file(path, 2)
    with DemoReader(path) as before:
        DemoWriter(path).append_episode(*make_arrays(2))
        DemoWriter(path).delete_episode("demo_0")
        assert before.names == ["demo_0", "demo_1"]
        np.testing.assert_array_equal(before.episode("demo_0").actions, make_arrays(0)[1])
    with DemoReader(path) as after:
        assert after.names == ["demo_1", "demo_2"]


def test_stack_obs_maps_env_observations_to_store_keys():
    flat = [np.arange(5.0) + t for t in range(3)]
    assert stack_obs(flat)["state"].shape == (3, 5)
    assert list(stack_obs(flat, obs_type="keypoints")) == ["keypoints"]
    pixels = [{"pixels": np.zeros((96, 96, 3), np.uint8), "agent_pos": np.ones(2)}] * 4
    stacked = stack_obs(pixels, obs_type="pixels")
    assert stacked["pixels"].shape == (4, 96, 96, 3) and stacked["agent_pos"].shape == (4, 2)


def test_summary_reads_lengths_returns_and_success(tmp_path):
    path = tmp_path / "demos.hdf5"
    write_file(path, 3)
    DemoWriter(path).append_episode(*make_arrays(3), attrs={"source": "human"})
    with DemoReader(path) as reader:
        rows = reader.summary()
    assert [r["name"] for r in rows] == ["demo_0", "demo_1", "demo_2", "demo_3"]
    for i, row in enumerate(rows):
        _, actions, rewards, _ = make_arrays(i)
        assert row["length"] == len(actions)
        assert row["return"] == pytest.approx(float(rewards.sum()), rel=1e-6)
    assert [r["success"] for r in rows] == [True, False, True, None]
    assert [r["seed"] for r in rows] == [0, 1, 2, None]
    assert rows[3]["source"] == "human"


def test_delete_episode_keeps_the_others_and_never_reuses_a_name(tmp_path):
    path = tmp_path / "demos.hdf5"
    write_file(path, 5)
    writer = DemoWriter(path)
    writer.set_masks({"train": ["demo_0", "demo_1", "demo_4"], "valid": ["demo_2", "demo_3"]})
    writer.delete_episode("demo_2")
    writer.delete_episode("demo_4")
    with DemoReader(path) as reader:
        assert reader.names == ["demo_0", "demo_1", "demo_3"]
        for name in reader.names:
            i = int(name.split("_")[1])
            np.testing.assert_array_equal(reader.episode(name).actions, make_arrays(i)[1])
        assert reader.mask("train") == ["demo_0", "demo_1"]
        assert reader.mask("valid") == ["demo_3"]
        assert reader.total_steps == sum(len(make_arrays(i)[1]) for i in (0, 1, 3))
    with h5py.File(path, "r") as f:
        assert f["data"].attrs["total"] == sum(len(make_arrays(i)[1]) for i in (0, 1, 3))
    assert writer.append_episode(*make_arrays(9)) == "demo_5"
    with pytest.raises(DemoError, match=r"data/demo_2: no such episode"):
        writer.delete_episode("demo_2")


def test_failed_commit_leaves_the_file_unchanged(tmp_path, monkeypatch):
    path = tmp_path / "demos.hdf5"
    write_file(path, 3)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        DemoWriter(path).append_episode(*make_arrays(3))
    with pytest.raises(OSError, match="disk full"):
        DemoWriter(path).delete_episode("demo_0")
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_writer_removes_temp_files_of_killed_writers(tmp_path):
    path = tmp_path / "demos.hdf5"
    write_file(path, 1)
    stale = tmp_path / ".demos.hdf5.999999999.tmp"  # no such process
    stale.write_bytes(b"half-written copy")
    DemoWriter(path)
    assert not stale.exists()


# ------------------------------------------------------------------------------------------------
# The journal: appends as small files beside the file, folded in by compaction


def journal_files(path: Path) -> list[str]:
    folder = journal_dir(path)
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def image_arrays(seed: int, T: int = 6):
    """An episode with a 96x96x3 noise image and a 2-D position per step."""
    rng = np.random.default_rng(seed)
    obs = {
        "image": rng.integers(0, 256, size=(T, 96, 96, 3), dtype=np.uint8),
        "agent_pos": rng.normal(size=(T, 2)).astype(np.float32),
    }
    return obs, rng.normal(size=(T, 2)).astype(np.float32), rng.random(T), np.r_[np.zeros(T - 1), 1]


def assert_same_episodes(a: DemoReader, b: DemoReader) -> None:
    assert a.names == b.names and a.lengths == b.lengths
    for x, y in zip(a, b, strict=True):
        assert x.attrs == y.attrs and x.obs.keys() == y.obs.keys()
        for key in x.obs:
            assert x.obs[key].dtype == y.obs[key].dtype
            np.testing.assert_array_equal(x.obs[key], y.obs[key])
        for field in ("actions", "rewards", "dones"):
            np.testing.assert_array_equal(getattr(x, field), getattr(y, field))


def test_appends_to_an_existing_file_go_to_the_journal_and_read_as_the_file_does(tmp_path):
    path = tmp_path / "demos.hdf5"
    names = write_file(path, 4)
    assert journal_files(path) == ["demo_1.hdf5", "demo_2.hdf5", "demo_3.hdf5"]
    with h5py.File(path, "r") as f:
        assert list(f["data"]) == ["demo_0"]  # the file itself holds only the first episode
    with h5py.File(journal_dir(path) / "demo_2.hdf5", "r") as f:  # an entry: robomimic layout
        assert list(f["data"]) == ["demo_2"]
        assert json.loads(f["data"].attrs["env_args"])["env_name"] == "dp_agent/PushT-v0"
    with DemoReader(path) as reader:
        assert reader.names == names == ["demo_0", "demo_1", "demo_2", "demo_3"]
        assert reader.pending_names == ["demo_1", "demo_2", "demo_3"]
        assert [p.name for p in reader.journal_files] == journal_files(path)
        for i, ep in enumerate(reader):
            np.testing.assert_array_equal(ep.actions, make_arrays(i)[1])
            assert ep.attrs["seed"] == i and ep.attrs["num_samples"] == len(ep)
        assert reader.lengths == [len(make_arrays(i)[1]) for i in range(4)]
        assert [r["seed"] for r in reader.summary()] == [0, 1, 2, 3]


def test_image_episodes_go_through_the_journal_bit_exact_and_chunked_per_frame(tmp_path):
    path = tmp_path / "pixels.hdf5"
    writer = DemoWriter(path, {"env_name": "dp_agent/PushT-v0", "env_kwargs": {}})
    for seed in range(3):
        writer.append_episode(*image_arrays(seed), attrs={"seed": seed})
    with h5py.File(journal_dir(path) / "demo_2.hdf5", "r") as f:
        image = f["data/demo_2/obs/image"]
        assert image.chunks == (1, 96, 96, 3) and image.compression == "gzip"
    for compacted in (False, True):
        with DemoReader(path) as reader:
            assert reader.pending_names == ([] if compacted else ["demo_1", "demo_2"])
            assert reader.obs_shapes == {"agent_pos": (2,), "image": (96, 96, 3)}
            for seed, ep in enumerate(reader):
                obs, actions, rewards, dones = image_arrays(seed)
                assert ep.obs["image"].dtype == np.uint8
                np.testing.assert_array_equal(ep.obs["image"], obs["image"])
                np.testing.assert_array_equal(ep.obs["agent_pos"], obs["agent_pos"])
                np.testing.assert_array_equal(ep.actions, actions)
                np.testing.assert_array_equal(ep.rewards, rewards.astype(np.float32))
                np.testing.assert_array_equal(ep.dones, dones.astype(bool))
        writer.compact()
    with h5py.File(path, "r") as f:
        assert f["data/demo_2/obs/image"].chunks == (1, 96, 96, 3)
    assert not journal_dir(path).exists()


def test_a_compacted_file_is_the_file_one_batch_would_have_written(tmp_path):
    one_by_one, batch = tmp_path / "a.hdf5", tmp_path / "b.hdf5"
    write_file(one_by_one, 5)
    episodes = [
        Episode("", {"state": o}, a, r, d, {"seed": i, "success": i % 2 == 0})
        for i, (o, a, r, d) in enumerate(make_arrays(i) for i in range(5))
    ]
    DemoWriter(batch, PUSHT).append_episodes(episodes)
    assert DemoWriter(one_by_one).compact() == 4
    assert DemoWriter(one_by_one).compact() == 0  # nothing left to fold
    assert sorted(os.listdir(tmp_path)) == ["a.hdf5", "b.hdf5"]  # the journal folder is gone
    with DemoReader(one_by_one) as a, DemoReader(batch) as b:
        assert a.pending_names == []
        assert_same_episodes(a, b)
    with h5py.File(one_by_one, "r") as a, h5py.File(batch, "r") as b:
        assert list(a["data"]) == list(b["data"])
        for key in ("total", "next_demo_index"):
            assert a["data"].attrs[key] == b["data"].attrs[key]


def test_names_continue_across_the_file_and_the_journal_and_are_never_reused(tmp_path):
    path = tmp_path / "demos.hdf5"
    write_file(path, 9)  # demo_0 in the file, demo_1..demo_8 pending
    writer = DemoWriter(path)
    batch = [Episode("", {"state": o}, a, r, d) for o, a, r, d in map(make_arrays, (9, 10, 11))]
    assert writer.append_episodes(batch) == ["demo_9", "demo_10", "demo_11"]
    assert journal_files(path)[-1] == "demo_9.hdf5"  # a batch is one entry
    assert writer.append_episode(*make_arrays(12)) == "demo_12"
    with DemoReader(path) as reader:
        assert reader.names == [f"demo_{i}" for i in range(13)]  # demo_10 after demo_9
    writer.delete_episode("demo_12")  # the newest, pending: its name stays used
    assert not journal_dir(path).exists()
    assert writer.append_episode(*make_arrays(13)) == "demo_13"
    with DemoReader(path) as reader:
        assert reader.names == [f"demo_{i}" for i in (*range(12), 13)]
        for name in reader.names:
            i = int(name.split("_")[1])
            np.testing.assert_array_equal(reader.episode(name).actions, make_arrays(i)[1])


def test_delete_and_set_masks_fold_the_pending_episodes_into_the_file(tmp_path):
    path = tmp_path / "demos.hdf5"
    write_file(path, 5)
    writer = DemoWriter(path)
    writer.delete_episode("demo_3")  # a pending episode
    with h5py.File(path, "r") as f:
        assert list(f["data"]) == ["demo_0", "demo_1", "demo_2", "demo_4"]
        assert f["data"].attrs["total"] == sum(len(make_arrays(i)[1]) for i in (0, 1, 2, 4))
    assert not journal_dir(path).exists()
    writer.append_episode(*make_arrays(5))
    writer.append_episode(*make_arrays(6))
    writer.set_masks({"train": ["demo_0", "demo_5"], "valid": ["demo_6"]})  # pending ones
    assert not journal_dir(path).exists()
    with h5py.File(path, "r") as f:
        assert "demo_6" in f["data"] and list(f["mask/valid"][()]) == [b"demo_6"]
    with DemoReader(path) as reader:
        assert reader.names == ["demo_0", "demo_1", "demo_2", "demo_4", "demo_5", "demo_6"]
        assert reader.mask("train") == ["demo_0", "demo_5"]
        np.testing.assert_array_equal(reader.episode("demo_6").actions, make_arrays(6)[1])


def test_a_reader_opened_before_a_compaction_still_reads_its_pending_episodes(tmp_path):
    path = tmp_path / "demos.hdf5"
    write_file(path, 3)
    with DemoReader(path) as before:
        DemoWriter(path).compact()
        assert not journal_dir(path).exists()
        np.testing.assert_array_equal(before.episode("demo_2").actions, make_arrays(2)[1])
        DemoWriter(path).delete_episode("demo_2")
        with pytest.raises(DemoError, match=r"data/demo_2: deleted since this reader opened"):
            before.episode("demo_2")


def test_entries_of_a_compaction_killed_before_its_cleanup_are_skipped_then_removed(tmp_path):
    path = tmp_path / "demos.hdf5"
    write_file(path, 3)
    saved = {name: (journal_dir(path) / name).read_bytes() for name in journal_files(path)}
    DemoWriter(path).compact()
    journal_dir(path).mkdir()  # as if killed after the file was replaced, before the cleanup
    for name, data in saved.items():
        (journal_dir(path) / name).write_bytes(data)
    with DemoReader(path) as reader:
        assert reader.names == ["demo_0", "demo_1", "demo_2"] and reader.pending_names == []
    DemoWriter(path)  # the next writer finishes the cleanup
    assert not journal_dir(path).exists()
    assert DemoWriter(path).append_episode(*make_arrays(3)) == "demo_3"


def test_the_journal_of_a_replaced_file_is_ignored_and_kept(tmp_path, capsys):
    path, other = tmp_path / "demos.hdf5", tmp_path / "other.hdf5"
    write_file(path, 3)  # demo_1, demo_2 pending
    write_file(other, 1)
    assert main(["demos", "merge", "--force", str(path), str(other)]) == 0
    with DemoReader(path) as reader:
        assert reader.names == ["demo_0"] and reader.pending_names == []
        assert [p.name for p in reader.ignored_journal_files] == ["demo_1.hdf5", "demo_2.hdf5"]
    assert DemoWriter(path).append_episode(*make_arrays(7)) == "demo_3"  # no entry overwritten
    assert DemoWriter(path).compact() == 1
    assert journal_files(path) == ["demo_1.hdf5", "demo_2.hdf5"]  # never deleted
    with DemoReader(path) as reader:
        assert reader.names == ["demo_0", "demo_3"]
        np.testing.assert_array_equal(reader.episode("demo_3").actions, make_arrays(7)[1])


def test_temp_files_of_killed_appends_are_ignored_and_removed_by_the_next_writer(tmp_path):
    path = tmp_path / "demos.hdf5"
    write_file(path, 2)
    stale = journal_dir(path) / ".demo_2.hdf5.999999999.tmp"  # no such process
    stale.write_bytes(b"half-written entry")
    with DemoReader(path) as reader:
        assert reader.names == ["demo_0", "demo_1"]
    assert DemoWriter(path).append_episode(*make_arrays(2)) == "demo_2"
    assert journal_files(path) == ["demo_1.hdf5", "demo_2.hdf5"]


def test_a_bad_episode_in_a_batch_leaves_no_journal_entry(tmp_path):
    path = tmp_path / "demos.hdf5"
    write_file(path, 2)
    obs, actions, rewards, dones = make_arrays(6)
    actions[0, 0] = np.inf
    good = Episode("", {"state": make_arrays(5)[0]}, *make_arrays(5)[1:])
    with pytest.raises(DemoError, match="new episode actions: expected finite values"):
        DemoWriter(path).append_episodes(
            [good, Episode("", {"state": obs}, actions, rewards, dones)]
        )
    assert journal_files(path) == ["demo_1.hdf5"]
    other = make_arrays(7, obs_dim=3)
    with pytest.raises(DemoError, match=r"new episode obs/state: expected per-step shape \(5,\)"):
        DemoWriter(path).append_episode(*other)
    assert journal_files(path) == ["demo_1.hdf5"]


def test_the_first_append_to_a_file_written_elsewhere_rewrites_it_once(tmp_path):
    path = tmp_path / "low_dim.hdf5"
    write_robomimic_file(path, n=2)
    T = 4
    obs = {"robot0_eef_pos": np.zeros((T, 3)), "agentview_image": np.zeros((T, 8, 8, 3), np.uint8)}
    writer = DemoWriter(path)
    assert writer.append_episode(obs, np.zeros((T, 7)), np.zeros(T), np.ones(T)) == "demo_2"
    assert not journal_dir(path).exists()  # the file was rewritten, with a journal id
    assert writer.append_episode(obs, np.zeros((T, 7)), np.zeros(T), np.ones(T)) == "demo_3"
    assert journal_files(path) == ["demo_3.hdf5"]
    with DemoReader(path) as reader:
        assert reader.names == ["demo_0", "demo_1", "demo_2", "demo_3"]
        assert reader.mask("valid") == ["demo_0", "demo_1"]  # the file's masks are kept


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


# ------------------------------------------------------------------------------------------------
# CLI


def test_cli_info(tmp_path, capsys):
    path = tmp_path / "demos.hdf5"
    write_file(path, 4)
    DemoWriter(path).set_masks({"train": ["demo_0", "demo_1", "demo_2"], "valid": ["demo_3"]})
    assert main(["demos", "info", str(path)]) == 0
    out = capsys.readouterr().out
    steps = sum(len(make_arrays(i)[1]) for i in range(4))
    assert "dp_agent/PushT-v0" in out
    assert f"episodes:  4, steps {steps}" in out
    assert "state vector (5,) float32, 20 bytes per frame" in out
    assert "dim 2, min [" in out
    assert "success:   2/4 (50.0%)" in out
    assert "masks:     train 3, valid 1" in out


def test_cli_info_mentions_pending_episodes_and_compact_folds_them(tmp_path, capsys):
    path = tmp_path / "demos.hdf5"
    write_file(path, 3)
    assert main(["demos", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "episodes:  3," in out
    assert f"journal:   2 episodes pending in {journal_dir(path)} (2 files, " in out
    assert f"`dp-agent demos compact {path}`" in out
    assert main(["demos", "compact", str(path)]) == 0
    assert f"{path}: folded 2 pending episodes into the file" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["demos.hdf5"]
    assert main(["demos", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "episodes:  3," in out and "journal:" not in out
    assert main(["demos", "compact", str(path)]) == 0
    assert "no pending episodes" in capsys.readouterr().err


def test_cli_reports_bad_files_in_one_line_with_exit_code_2(tmp_path, capsys):
    path = tmp_path / "broken.hdf5"
    path.write_bytes(b"\x00" * 100)
    assert main(["demos", "info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: not an HDF5 file")
    assert "Traceback" not in err


def test_cli_output_into_a_closed_pipe_ends_quietly(tmp_path):
    # `dp-agent demos info F | head -1` once head has left: every write hits a closed pipe
    path = tmp_path / "demos.hdf5"
    write_file(path, 4)
    code = (
        "from dp_agent.cli.main import main; "
        f"raise SystemExit(main(['demos', 'info', {str(path)!r}]))"
    )
    read_end, write_end = os.pipe()
    os.close(read_end)  # no reader at all, before the child writes anything
    proc = subprocess.run(
        [sys.executable, "-c", code], stdout=write_end, stderr=subprocess.PIPE, timeout=60
    )
    os.close(write_end)
    assert proc.returncode == 141
    assert proc.stderr.decode() == ""  # no traceback, no "Exception ignored"


def test_cli_merge(tmp_path, capsys):
    a, b, out = tmp_path / "a.hdf5", tmp_path / "b.hdf5", tmp_path / "out.hdf5"
    write_file(a, 3)
    write_file(b, 2)
    DemoWriter(b).delete_episode("demo_0")
    assert main(["demos", "merge", str(out), str(a), str(b)]) == 0
    with DemoReader(out) as reader:
        assert reader.names == ["demo_0", "demo_1", "demo_2", "demo_3"]
        assert reader.env_id == "dp_agent/PushT-v0"
        last = reader.episode(3)
        assert last.attrs["merged_from"] == "b.hdf5:demo_1"
        np.testing.assert_array_equal(last.actions, make_arrays(1)[1])
        assert reader.total_steps == sum(len(make_arrays(i)[1]) for i in (0, 1, 2, 1))
    assert main(["demos", "merge", str(out), str(a)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["demos", "merge", "--force", str(out), str(a)]) == 0
    assert DemoReader(out).num_episodes == 3


def test_cli_merge_refuses_files_of_different_envs(tmp_path, capsys):
    a, b, out = tmp_path / "a.hdf5", tmp_path / "b.hdf5", tmp_path / "out.hdf5"
    write_file(a, 1)
    DemoWriter(b, {"env_name": "dp_agent/TreeDetour-v0"}).append_episode(*make_arrays(0))
    assert main(["demos", "merge", str(out), str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: {b}: data attribute env_args: holds episodes of env 'dp_agent/TreeDetour-v0', "
        f"expected 'dp_agent/PushT-v0' like {a}\n"
    )
    assert not out.exists()


def test_cli_merge_refuses_files_with_other_observation_shapes(tmp_path, capsys):
    a, b, out = tmp_path / "a.hdf5", tmp_path / "b.hdf5", tmp_path / "out.hdf5"
    write_file(a, 1)
    write_file(b, 1, obs_dim=6)
    assert main(["demos", "merge", str(out), str(a), str(b)]) == 2
    assert capsys.readouterr().err == (
        f"error: {b}: data/demo_0/obs/state: expected per-step shape (5,) like data/demo_0 of "
        f"{a}, got (6,)\n"
    )
    assert not out.exists()


def test_cli_split_writes_disjoint_reproducible_masks(tmp_path):
    path = tmp_path / "demos.hdf5"
    write_file(path, 20)
    assert main(["demos", "split", str(path), "--valid-fraction", "0.2", "--seed", "3"]) == 0
    with DemoReader(path) as reader:
        train, valid = reader.mask("train"), reader.mask("valid")
        names = reader.names
    assert len(valid) == 4 and len(train) == 16
    assert sorted(train + valid, key=names.index) == names
    assert main(["demos", "split", str(path), "--valid-fraction", "0.2", "--seed", "3"]) == 0
    with DemoReader(path) as reader:
        assert reader.mask("valid") == valid
    assert main(["demos", "split", str(path), "--valid-fraction", "1.5"]) == 2


def test_cli_generate_records_successful_expert_episodes(tmp_path, capsys):
    pytest.importorskip("dp_agent.envs.experts")
    out = tmp_path / "tree.hdf5"
    args = ["demos", "generate", "--task", "dp_agent/TreeDetour-v0", "--episodes", "3"]
    assert main([*args, "--out", str(out), "--seed", "5", "--batch-size", "2"]) == 0
    with DemoReader(out, expected_env_id="dp_agent/TreeDetour-v0") as reader:
        rows = reader.summary()
        assert len(rows) == 3 and all(r["success"] for r in rows)
        assert all(r["source"] == "expert" for r in rows)
        seeds = [r["seed"] for r in rows]
        assert seeds == sorted(seeds) and seeds[0] >= 5 and len(set(seeds)) == 3
        ep = reader.episode(0)
        assert reader.obs_keys == ["state"] and ep.actions.shape[1] == 2 and ep.dones[-1]
    assert main([*args, "--out", str(out)]) == 2
    assert "exists; pass --append" in capsys.readouterr().err
    assert main([*args, "--out", str(out), "--seed", "5", "--append"]) == 0
    with DemoReader(out) as reader:
        assert len({r["seed"] for r in reader.summary()}) == 6  # seeds already there are skipped
    assert os.listdir(tmp_path) == ["tree.hdf5"]


def scripted_rollouts(monkeypatch, outcome):
    """Replace the expert's rollouts with canned episodes: ``outcome(seed)`` says whether the one
    of ``seed`` succeeded (or raises, like Ctrl+C would)."""
    from dp_agent.data import cli as demos_cli

    def rollout(env, expert, seed, obs_type):
        success = outcome(seed)
        obs, actions, rewards, dones = make_arrays(seed, obs_dim=4)
        return Episode("", {"state": obs}, actions, rewards, dones, {"seed": seed}), success

    monkeypatch.setattr(demos_cli, "rollout_expert", rollout)


GENERATE = ["demos", "generate", "--task", "dp_agent/TreeDetour-v0", "--json-progress"]


def test_cli_generate_exits_1_with_one_error_event_when_too_few_episodes_succeed(
    tmp_path, capsys, monkeypatch
):
    pytest.importorskip("dp_agent.envs.experts")
    scripted_rollouts(monkeypatch, lambda seed: seed == 3)
    out = tmp_path / "tree.hdf5"
    assert main([*GENERATE, "--episodes", "2", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    errors = [e for e in map(json.loads, captured.out.splitlines()) if e["event"] == "error"]
    expected = "only 1 of 2 episodes succeeded in 24 attempts; pass --keep-failures"
    assert len(errors) == 1 and errors[0]["message"].startswith(expected)
    assert [line for line in captured.err.splitlines() if line.startswith("error: ")] == [
        f"error: {errors[0]['message']}"
    ]
    with DemoReader(out) as reader:
        assert [r["seed"] for r in reader.summary()] == [3]  # the one success is kept


def test_cli_generate_interrupted_keeps_the_saved_batches_and_exits_130(
    tmp_path, capsys, monkeypatch
):
    pytest.importorskip("dp_agent.envs.experts")

    def outcome(seed):
        if seed == 5:
            raise KeyboardInterrupt
        return True

    scripted_rollouts(monkeypatch, outcome)
    out = tmp_path / "tree.hdf5"
    assert main([*GENERATE, "--episodes", "9", "--batch-size", "2", "--out", str(out)]) == 130
    assert f"interrupted: 4 episodes saved in {out}" in capsys.readouterr().err
    with DemoReader(out) as reader:
        assert [r["seed"] for r in reader.summary()] == [0, 1, 2, 3]  # the 5th was not saved


def test_cli_bad_options_give_exit_code_2_and_an_error_event(tmp_path, capsys):
    assert main([*GENERATE, "--episodes", "0", "--out", str(tmp_path / "x.hdf5")]) == 2
    captured = capsys.readouterr()
    message = "--episodes: expected a positive number, got 0"
    assert json.loads(captured.out) == {"event": "error", "message": message}
    assert captured.err == f"error: {message}\n"


def test_cli_generate_passes_env_kwargs_and_records_them(tmp_path, capsys):
    out = tmp_path / "maze.hdf5"
    args = ["demos", "generate", "--task", "dp_agent/Maze2D-v0", "--episodes", "2",
            "--env-kwargs", '{"maze": "medium"}', "--out", str(out), "--json-progress"]  # fmt: skip
    assert main(args) == 0
    with DemoReader(out) as reader:
        assert reader.env_args["env_kwargs"] == {"maze": "medium"}
        assert reader.num_episodes == 2
    bad = ["demos", "generate", "--task", "dp_agent/Maze2D-v0", "--episodes", "1",
           "--env-kwargs", "[1]", "--out", str(tmp_path / "bad.hdf5")]  # fmt: skip
    assert main(bad) == 2
    assert "--env-kwargs: expected a JSON object" in capsys.readouterr().err
    assert not (tmp_path / "bad.hdf5").exists()
