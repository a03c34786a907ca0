"""LeRobot datasets in and out (``demos import-lerobot`` / ``export-lerobot``), on small files
made here: 3 episodes of 20 frames with a vector state, a 32x32x3 image and actions.

The videos are H.264 in yuv420p (chroma at half resolution, limited range), so images come back
with a small loss: the mean absolute error per 8-bit value is below MAX_IMAGE_MAE on the smooth
structured frames used here (measured ~1.65; most of it is the YUV -> RGB conversion's rounding,
~1.3 without any codec), and below MAX_PUSHT_MAE on PushT's own 96x96 frames (measured ~0.5)."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
from lerobot_examples import (
    LENGTHS,
    edit_info,
    error_line,
    extra,
    make_demos,
    smooth_frames,
    write_v3_by_hand,
    write_v21_by_hand,
)

from dp_agent.cli.main import main
from dp_agent.data import DemoReader, DemoWriter

MAX_IMAGE_MAE = 2.0
MAX_PUSHT_MAE = 1.0
FPS = 10


def image_mae(a, b):
    return float(np.abs(a.astype(np.int64) - b.astype(np.int64)).mean())


@pytest.fixture
def exported(tmp_path):
    """(demo file, its export) made once per test with the CLI."""
    extra()
    demos = make_demos(tmp_path / "demo.hdf5")
    assert main(["demos", "export-lerobot", str(demos), str(tmp_path / "ds")]) == 0
    return demos, tmp_path / "ds"


# ----------------------------------------------------------------------------------------------
# Round trip


def test_export_then_import_gives_the_same_episodes(exported, tmp_path):
    demos, ds = exported
    back = tmp_path / "back.hdf5"
    assert main(["demos", "import-lerobot", str(ds), "--out", str(back)]) == 0
    with DemoReader(demos) as a, DemoReader(back) as b:
        assert b.env_id == "lerobot/ds"
        assert b.lengths == a.lengths == [20, 20, 20]
        assert b.obs_keys == ["image", "state"]
        for ep_a, ep_b in zip(a, b, strict=True):
            np.testing.assert_array_equal(ep_b.obs["state"], ep_a.obs["state"])
            np.testing.assert_array_equal(ep_b.actions, ep_a.actions)
            np.testing.assert_array_equal(ep_b.rewards, ep_a.rewards)
            np.testing.assert_array_equal(ep_b.dones, ep_a.dones)
            assert ep_b.obs["image"].dtype == np.uint8
            assert image_mae(ep_b.obs["image"], ep_a.obs["image"]) <= MAX_IMAGE_MAE
            assert ep_b.attrs["success"] == ep_a.attrs["success"]
            assert ep_b.attrs["task"] == "test/Point" and ep_b.attrs["fps"] == FPS


def test_several_vector_parts_are_split_back_by_their_names(tmp_path):
    extra()
    parts = {"agent_pos": lambda T: np.linspace(0, 1, 2 * T, dtype=np.float32).reshape(T, 2)}
    parts["keypoints"] = lambda T: np.arange(T * 6, dtype=np.float32).reshape(T, 3, 2)
    demos = make_demos(tmp_path / "demo.hdf5", episodes=2, T=6, extra_obs=parts)
    ds, back = tmp_path / "ds", tmp_path / "back.hdf5"
    assert main(["demos", "export-lerobot", str(demos), str(ds), "--fps", "5"]) == 0
    info = json.loads((ds / "meta" / "info.json").read_text())
    names = info["features"]["observation.state"]["names"]
    assert names[:3] == ["agent_pos[0]", "agent_pos[1]", "keypoints[0]"] and len(names) == 2 + 6 + 3
    assert main(["demos", "import-lerobot", str(ds), "--out", str(back), "--env-id", "x/Y-v0"]) == 0
    with DemoReader(demos) as a, DemoReader(back) as b:
        assert b.env_id == "x/Y-v0" and b.obs_keys == ["agent_pos", "image", "keypoints", "state"]
        for ep_a, ep_b in zip(a, b, strict=True):
            np.testing.assert_array_equal(ep_b.obs["agent_pos"], ep_a.obs["agent_pos"])
            np.testing.assert_array_equal(
                ep_b.obs["keypoints"], ep_a.obs["keypoints"].reshape(6, 6)
            )
            assert ep_b.attrs["fps"] == 5


def test_an_images_only_file_with_a_1d_action_round_trips(tmp_path):
    extra()
    demos, ds, back = tmp_path / "demo.hdf5", tmp_path / "ds", tmp_path / "back.hdf5"
    frames = smooth_frames(6, 16, 24)
    actions = np.linspace(-1, 1, 6, dtype=np.float32)[:, None]
    DemoWriter(demos, {"env_name": "a/B-v0"}).append_episode(
        {"cam": frames}, actions, np.zeros(6), np.arange(6) == 5
    )
    assert main(["demos", "export-lerobot", str(demos), str(ds)]) == 0
    features = json.loads((ds / "meta" / "info.json").read_text())["features"]
    assert "observation.state" not in features and features["action"]["shape"] == [1]
    assert features["observation.images.cam"]["shape"] == [16, 24, 3]
    assert main(["demos", "import-lerobot", str(ds), "--out", str(back)]) == 0
    with DemoReader(back) as reader:
        ep = reader.episode(0)
    assert reader.obs_keys == ["cam"]
    np.testing.assert_array_equal(ep.actions, actions)
    assert image_mae(ep.obs["cam"], frames) <= MAX_IMAGE_MAE


def test_pusht_pixel_frames_survive_the_video_codec(tmp_path):
    extra()
    import gymnasium as gym

    import dp_agent  # noqa: F401  (registers the envs)
    from dp_agent.cli.demos_generate import rollout_expert
    from dp_agent.envs.experts import make_expert

    env = gym.make("dp_agent/PushT-v0", obs_type="pixels")
    episode, _ = rollout_expert(env, make_expert(env), seed=0, obs_type="pixels", max_steps=25)
    env.close()
    demos = tmp_path / "pusht.hdf5"
    env_args = {"env_name": "dp_agent/PushT-v0", "env_kwargs": {"obs_type": "pixels"}}
    DemoWriter(demos, env_args).append_episodes([episode])
    ds, back = tmp_path / "ds", tmp_path / "back.hdf5"
    assert main(["demos", "export-lerobot", str(demos), str(ds)]) == 0
    assert main(["demos", "import-lerobot", str(ds), "--out", str(back)]) == 0
    with DemoReader(back) as reader:
        ep = reader.episode(0)
    assert ep.obs["pixels"].shape == episode.obs["pixels"].shape == (25, 96, 96, 3)
    np.testing.assert_array_equal(ep.obs["agent_pos"], episode.obs["agent_pos"].astype(np.float32))
    assert image_mae(ep.obs["pixels"], episode.obs["pixels"]) <= MAX_PUSHT_MAE


# ----------------------------------------------------------------------------------------------
# What the export holds (LeRobot's v3.0 layout)


def test_export_writes_the_v3_layout(exported):
    pa, pq, av = extra()
    demos, ds = exported
    info = json.loads((ds / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == FPS
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, 60, 1)
    image = info["features"]["observation.image"]
    assert image["dtype"] == "video" and image["shape"] == [32, 32, 3]
    assert image["info"]["video.codec"] == "h264" and image["info"]["video.pix_fmt"] == "yuv420p"
    assert info["features"]["observation.state"]["shape"] == [3]
    assert {"next.reward", "next.done", "next.success", "timestamp"} <= set(info["features"])

    episodes = pq.read_table(ds / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["length"] for e in episodes] == [20, 20, 20]
    assert [e["dataset_from_index"] for e in episodes] == [0, 20, 40]
    assert [e["videos/observation.image/from_timestamp"] for e in episodes] == [0.0, 2.0, 4.0]
    assert episodes[2]["videos/observation.image/to_timestamp"] == 6.0
    assert episodes[0]["tasks"] == ["test/Point"]
    tasks = pq.read_table(ds / "meta/tasks.parquet")
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["__index_level_0__"]
    assert tasks.to_pylist() == [{"task_index": 0, "__index_level_0__": "test/Point"}]

    rows = pq.read_table(ds / "data/chunk-000/file-000.parquet")
    assert rows.schema.field("observation.state").type == pa.list_(pa.float32(), 3)
    assert rows.column("index").to_pylist() == list(range(60))
    assert rows.column("timestamp").to_pylist()[:3] == pytest.approx([0.0, 0.1, 0.2])

    with DemoReader(demos) as reader:
        states = np.concatenate([ep.obs["state"] for ep in reader])
    stats = json.loads((ds / "meta" / "stats.json").read_text())
    np.testing.assert_allclose(stats["observation.state"]["mean"], states.mean(0), atol=1e-6)
    np.testing.assert_allclose(stats["observation.state"]["std"], states.std(0), atol=1e-6)
    assert np.array(stats["observation.image"]["mean"]).shape == (3, 1, 1)
    assert (
        0
        <= np.min(stats["observation.image"]["min"])
        <= np.max(stats["observation.image"]["max"])
        <= 1
    )

    with av.open(str(ds / "videos/observation.image/chunk-000/file-000.mp4")) as video:
        times = [float(frame.time) for frame in video.decode(video=0)]
        assert video.streams.video[0].codec_context.name == "h264"
    assert times == pytest.approx([n / FPS for n in range(60)])


# ----------------------------------------------------------------------------------------------
# Datasets written by hand in LeRobot's layouts (not by our exporter)


def check_hand_import(path, data, image_key):
    with DemoReader(path) as reader:
        assert reader.lengths == list(LENGTHS)
        assert reader.obs_keys == sorted(["state", image_key])
        for e, (ep, (state, action, frames)) in enumerate(zip(reader, data, strict=True)):
            np.testing.assert_array_equal(ep.obs["state"], state)
            np.testing.assert_array_equal(ep.actions, action)
            assert image_mae(ep.obs[image_key], frames) <= MAX_IMAGE_MAE
            assert ep.attrs["task"] == f"task {e % 2}" and ep.attrs["lerobot_episode_index"] == e
            yield ep


def test_import_a_v3_dataset_written_by_hand(tmp_path):
    data = write_v3_by_hand(tmp_path / "ds")
    out = tmp_path / "out.hdf5"
    assert main(["demos", "import-lerobot", str(tmp_path / "ds"), "--out", str(out)]) == 0
    for ep in check_hand_import(out, data, "top"):
        np.testing.assert_array_equal(ep.rewards, np.zeros(len(ep)))  # no next.reward
        np.testing.assert_array_equal(ep.dones, np.arange(len(ep)) == len(ep) - 1)


def test_import_a_v21_dataset_written_by_hand(tmp_path):
    root = tmp_path / "ds"
    data = write_v21_by_hand(root)
    out = tmp_path / "out.hdf5"
    assert main(["demos", "import-lerobot", str(root), "--out", str(out)]) == 0
    for ep in check_hand_import(out, data, "image"):
        T = len(ep)
        np.testing.assert_array_equal(ep.rewards, np.linspace(0, 1, T, dtype=np.float32))
        np.testing.assert_array_equal(ep.dones, np.arange(T) == T // 2)


def test_import_options_choose_the_features(tmp_path):
    data = write_v3_by_hand(tmp_path / "ds")
    out = tmp_path / "out.hdf5"
    args = ["demos", "import-lerobot", str(tmp_path / "ds"), "--out", str(out)]
    assert main([*args, "--no-images"]) == 0
    with DemoReader(out) as reader:
        assert reader.obs_keys == ["state"] and reader.lengths == list(LENGTHS)
    assert (
        main([*args, "--force", "--state-key", "action", "--image-key", "observation.images.top"])
        == 0
    )
    with DemoReader(out) as reader:
        assert reader.obs_keys == ["action", "top"]
        np.testing.assert_array_equal(reader.episode(1).obs["action"], data[1][1])


# ----------------------------------------------------------------------------------------------
# Bad input: one DemoError line naming the file and the field, exit code 2, no OUT written


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


BAD_DATASETS = {
    "no info.json": (
        lambda ds: (ds / "meta" / "info.json").unlink(),
        [],
        "meta/info.json: file not found",
    ),
    "unknown version": (
        lambda ds: edit_info(ds, lambda info: info.update(codebase_version="v1.6")),
        [],
        "meta/info.json: codebase_version: expected one of v2.0, v2.1, v3.0, got 'v1.6'",
    ),
    "missing key": (
        lambda ds: None,
        ["--state-key", "observation.joints"],
        "meta/info.json: features: no feature 'observation.joints' (--state-key)",
    ),
    "other shape": (
        lambda ds: edit_info(ds, lambda i: i["features"]["observation.state"].update(shape=[4])),
        [],
        "file-000.parquet: column observation.state: expected (4,) per frame as meta/info.json "
        "says, got (3,)",
    ),
    "truncated data": (
        lambda ds: truncate(ds / "data/chunk-000/file-000.parquet"),
        [],
        "data/chunk-000/file-000.parquet: damaged or unreadable parquet file",
    ),
    "truncated episodes": (
        lambda ds: truncate(ds / "meta/episodes/chunk-000/file-000.parquet"),
        [],
        "meta/episodes/chunk-000/file-000.parquet: damaged or unreadable parquet file",
    ),
    "truncated video": (
        lambda ds: truncate(ds / "videos/observation.image/chunk-000/file-000.mp4"),
        [],
        "file-000.mp4: ",
    ),
    "not finite": (
        lambda ds: put_nan_in_state(ds / "data/chunk-000/file-000.parquet", row=23),
        [],
        "file-000.parquet: column observation.state: expected finite values, found nan at frame 3",
    ),
    "missing column": (
        lambda ds: drop_column(ds / "meta/episodes/chunk-000/file-000.parquet", "length"),
        [],
        "meta/episodes/chunk-000/file-000.parquet: column length: missing",
    ),
}


def put_nan_in_state(path, row):
    pa, pq, _ = extra()
    table = pq.read_table(path)
    state = np.array(table.column("observation.state").to_pylist(), np.float32)
    state[row, 1] = np.nan
    column = pa.FixedSizeListArray.from_arrays(pa.array(state.ravel()), state.shape[1])
    index = table.column_names.index("observation.state")
    pq.write_table(table.set_column(index, "observation.state", column), path)


def drop_column(path, name):
    pa, pq, _ = extra()
    table = pq.read_table(path)
    pq.write_table(table.drop_columns([name]), path)


@pytest.mark.parametrize("case", BAD_DATASETS, ids=list(BAD_DATASETS))
def test_bad_datasets_give_one_error_line_and_exit_code_2(exported, tmp_path, capsys, case):
    damage, options, message = BAD_DATASETS[case]
    _, ds = exported
    damage(ds)
    out = tmp_path / "out.hdf5"
    capsys.readouterr()
    assert main(["demos", "import-lerobot", str(ds), "--out", str(out), *options]) == 2
    line = error_line(capsys)
    assert line.startswith(f"error: {ds}") and message in line, line
    assert not out.exists() and list(tmp_path.glob(".out.hdf5*")) == []


def test_import_refuses_an_existing_out_unless_force(exported, tmp_path, capsys):
    _, ds = exported
    out = tmp_path / "out.hdf5"
    out.write_bytes(b"keep")
    assert main(["demos", "import-lerobot", str(ds), "--out", str(out)]) == 2
    assert "exists; pass --force" in error_line(capsys)
    assert out.read_bytes() == b"keep"
    assert main(["demos", "import-lerobot", str(ds), "--out", str(out), "--force"]) == 0
    with DemoReader(out) as reader:
        assert reader.num_episodes == 3


def test_export_refuses_an_existing_folder_unless_force(exported, tmp_path, capsys):
    demos, ds = exported
    (ds / "mine.txt").write_text("keep")
    assert main(["demos", "export-lerobot", str(demos), str(ds)]) == 2
    assert "exists; pass --force to replace it" in error_line(capsys)
    assert (ds / "mine.txt").exists()
    assert main(["demos", "export-lerobot", str(demos), str(ds), "--force"]) == 0
    assert not (ds / "mine.txt").exists() and (ds / "meta" / "info.json").exists()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left in (["demo.hdf5", "ds"], ["demo.hdf5", "demo.hdf5.journal", "ds"])  # no temp dirs


def test_a_failed_export_leaves_no_folder(tmp_path, capsys):
    extra()
    odd = {"odd": lambda T: np.zeros((T, 33, 33, 3), np.uint8)}
    demos = make_demos(tmp_path / "demo.hdf5", episodes=1, T=4, extra_obs=odd)
    assert main(["demos", "export-lerobot", str(demos), str(tmp_path / "ds")]) == 2
    assert "obs/odd: libx264 with yuv420p needs an even height and width" in error_line(capsys)
    assert main(["demos", "export-lerobot", str(demos), str(tmp_path / "ds"), "--fps", "0"]) == 2
    assert "--fps: expected a positive number" in error_line(capsys)
    assert (
        main(["demos", "export-lerobot", str(demos), str(tmp_path / "ds"), "--repo-id", "x"]) == 2
    )
    assert "--repo-id: expected owner/name" in error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.hdf5"]


@pytest.mark.parametrize("missing", ["pyarrow", "av"])
def test_a_missing_extra_is_named_with_its_install_command(tmp_path, capsys, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # `import <missing>` now raises ImportError
    demos = make_demos(tmp_path / "demo.hdf5", episodes=1, T=3)
    for args in (
        ["import-lerobot", str(tmp_path), "--out", str(tmp_path / "out.hdf5")],
        ["export-lerobot", str(demos), str(tmp_path / "ds")],
    ):
        assert main(["demos", *args]) == 2
        line = error_line(capsys)
        assert f"LeRobot datasets need {missing}" in line
        assert 'pip install "dp-agent[lerobot]"' in line
    assert not (tmp_path / "ds").exists() and not (tmp_path / "out.hdf5").exists()


def test_json_progress_reports_start_steps_and_done(exported, tmp_path, capsys):
    _, ds = exported
    out = tmp_path / "out.hdf5"
    capsys.readouterr()
    assert main(["demos", "import-lerobot", str(ds), "--out", str(out), "--json-progress"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events] == ["start", "step", "step", "step", "done"]
    assert events[0]["total_steps"] == 3 and events[-1]["episodes"] == 3
    assert events[-1]["steps"] == 60 and events[-2]["step"] == 3


def test_image_features_stored_as_png_bytes_are_read_losslessly(exported, tmp_path):
    pa, pq, av = extra()
    demos, ds = exported
    with DemoReader(demos) as reader:
        frames = np.concatenate([ep.obs["image"] for ep in reader])
    cells = []
    for image in frames:  # LeRobot's "image" dtype: {bytes, path} structs of PNG files
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="image2pipe") as container:
            stream = container.add_stream("png")
            stream.height, stream.width, stream.pix_fmt = 32, 32, "rgb24"
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(stream.encode())
        cells.append({"bytes": buffer.getvalue(), "path": None})
    data = ds / "data/chunk-000/file-000.parquet"
    pq.write_table(
        pq.read_table(data).append_column("observation.images.wrist", pa.array(cells)), data
    )
    wrist = {"dtype": "image", "shape": [32, 32, 3], "names": ["height", "width", "channels"]}
    edit_info(ds, lambda info: info["features"].update({"observation.images.wrist": wrist}))
    out = tmp_path / "out.hdf5"
    assert main(["demos", "import-lerobot", str(ds), "--out", str(out)]) == 0
    with DemoReader(out) as reader:
        assert reader.obs_keys == ["image", "state", "wrist"]
        np.testing.assert_array_equal(np.concatenate([ep.obs["wrist"] for ep in reader]), frames)
