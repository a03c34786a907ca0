"""The demonstration store: round trips, and the journal of pending appends."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from store_examples import PUSHT, make_arrays, write_file, write_robomimic_file

from dp_agent.cli.main import main
from dp_agent.data import DemoError, DemoReader, DemoWriter, Episode, stack_obs
from dp_agent.data.journal import journal_dir

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
