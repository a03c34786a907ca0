"""Small LeRobot datasets and demo files written by hand for the LeRobot tests (not by our
exporter): the shapes LeRobot's own writer gives them, and the helpers that damage them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dp_agent.data import DemoWriter


def extra():
    """pyarrow, pyarrow.parquet and av; the test is skipped when the [lerobot] extra is absent."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    av = pytest.importorskip("av")
    return pa, pq, av


def smooth_frames(T, height=32, width=32, seed=0):
    """(T, H, W, 3) uint8 frames with structure and no noise: a grey ramp, a soft bright disk
    moving across, a mild colour tint."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    frames = []
    for t in range(T):
        cx, cy = width * (0.25 + 0.5 * t / T), height * (0.5 + 0.2 * np.sin(t / 3 + seed))
        disk = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (width / 6) ** 2))
        grey = 40 + 120 * xx / width + 90 * disk
        tint = 20 * yy / height
        frames.append(np.stack([grey + tint, grey, grey - tint + 10 * seed], axis=-1))
    return np.clip(np.round(frames), 0, 255).astype(np.uint8)


def make_demos(path, episodes=3, T=20, extra_obs=None):
    """A demonstration file of ``episodes`` episodes of T steps: obs state (3,) and image."""
    rng = np.random.default_rng(0)
    writer = DemoWriter(path, {"env_name": "test/Point", "env_kwargs": {}})
    for e in range(episodes):
        obs = {
            "state": rng.normal(size=(T, 3)).astype(np.float32),
            "image": smooth_frames(T, seed=e),
        }
        obs |= {k: make(T) for k, make in (extra_obs or {}).items()}
        writer.append_episode(
            obs,
            rng.uniform(-1, 1, (T, 2)).astype(np.float32),
            rng.normal(size=T).astype(np.float32),
            np.arange(T) == T - 1,
            {"seed": e, "success": e % 2 == 0},
        )
    return path


def error_line(capsys):
    """The one ``error: ...`` line a failed command printed (the progress bar may precede it)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and err.rstrip().endswith(lines[0]), err
    return lines[0]


def encode_mp4(av, path, frames, fps):
    """An H.264 mp4 of ``frames`` at ``fps``, as LeRobot's encoder makes them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"g": "2", "crf": "18"})
        stream.height, stream.width, stream.pix_fmt = frames.shape[1], frames.shape[2], "yuv420p"
        for n, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = n
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def frame_rows(pa, state, action, episode, first_index, fps, **more):
    T = len(state)
    columns = {
        "observation.state": pa.FixedSizeListArray.from_arrays(pa.array(state.ravel()), 2),
        "action": pa.FixedSizeListArray.from_arrays(pa.array(action.ravel()), 2),
        "timestamp": pa.array(np.arange(T) / fps, pa.float32()),
        "frame_index": pa.array(np.arange(T)),
        "episode_index": pa.array(np.full(T, episode)),
        "index": pa.array(first_index + np.arange(T)),
        "task_index": pa.array(np.full(T, episode % 2)),
    }
    return pa.table(columns | {k: pa.array(v) for k, v in more.items()})


def hand_info(version, fps, camera_key, data_path, video_path):
    """meta/info.json as LeRobot writes it; the camera's shape in (C, H, W) order with names."""
    camera = {"dtype": "video", "shape": [3, 24, 32], "names": ["channels", "height", "width"]}
    camera["info"] = {"video.fps": fps, "video.codec": "h264", "video.pix_fmt": "yuv420p"}
    return {
        "codebase_version": version,
        "robot_type": "arm",
        "fps": fps,
        "chunks_size": 1000,
        "data_path": data_path,
        "video_path": video_path,
        "features": {
            "observation.state": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
            "action": {"dtype": "float32", "shape": [2], "names": {"motors": ["m0", "m1"]}},
            camera_key: camera,
            **{
                k: {"dtype": "int64", "shape": [1], "names": None} for k in ("frame_index", "index")
            },
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            "episode_index": {"dtype": "int64", "shape": [1], "names": None},
            "task_index": {"dtype": "int64", "shape": [1], "names": None},
        },
    }


LENGTHS = (12, 8, 10)


def hand_episodes(fps):
    """Per episode: state, action, frames (24x32), from the same seeds as every check."""
    rng = np.random.default_rng(7)
    return [
        (
            rng.normal(size=(T, 2)).astype(np.float32),
            rng.normal(size=(T, 2)).astype(np.float32),
            smooth_frames(T, 24, 32, seed=e),
        )
        for e, T in enumerate(LENGTHS)
    ]


def write_v3_by_hand(root, fps=15):
    """Episodes 0 and 1 share data file-000 and video file-000 (episode 1 from 12/fps s on);
    episode 2 is alone in file-001 of both."""
    pa, pq, av = extra()
    key, data = "observation.images.top", hand_episodes(fps)
    info = hand_info(
        "v3.0",
        fps,
        key,
        "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
    )
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps(info))
    files, episodes, start = {0: [0, 1], 1: [2]}, [], 0
    for file, members in files.items():
        rows = [
            frame_rows(pa, *data[e][:2], e, start + sum(LENGTHS[m] for m in members[:i]), fps)
            for i, e in enumerate(members)
        ]
        (root / "data/chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.concat_tables(rows), root / f"data/chunk-000/file-{file:03d}.parquet")
        frames = np.concatenate([data[e][2] for e in members])
        encode_mp4(av, root / f"videos/{key}/chunk-000/file-{file:03d}.mp4", frames, fps)
        offset = 0
        for e in members:
            episodes.append(
                {
                    "episode_index": e,
                    "tasks": [f"task {e % 2}"],
                    "length": LENGTHS[e],
                    "data/chunk_index": 0,
                    "data/file_index": file,
                    "dataset_from_index": start,
                    "dataset_to_index": start + LENGTHS[e],
                    f"videos/{key}/chunk_index": 0,
                    f"videos/{key}/file_index": file,
                    f"videos/{key}/from_timestamp": offset / fps,
                    f"videos/{key}/to_timestamp": (offset + LENGTHS[e]) / fps,
                }
            )
            offset, start = offset + LENGTHS[e], start + LENGTHS[e]
    pq.write_table(
        pa.Table.from_pylist(episodes), root / "meta/episodes/chunk-000/file-000.parquet"
    )
    return data


def write_v21_by_hand(root, fps=10):
    """A v2.1 dataset: one data file and one mp4 per episode, with next.reward and next.done
    (rewards 0 .. 1, a done in the middle of each episode)."""
    pa, pq, av = extra()
    key = "observation.image"
    info = hand_info(
        "v2.1",
        fps,
        key,
        "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
    )
    info["features"] |= {"next.reward": {"dtype": "float32", "shape": [1], "names": None}}
    info["features"] |= {"next.done": {"dtype": "bool", "shape": [1], "names": None}}
    (root / "meta").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps(info))
    data, lines, start = hand_episodes(fps), [], 0
    for e, (state, action, frames) in enumerate(data):
        T = len(state)
        rewards, dones = np.linspace(0, 1, T, dtype=np.float32), np.arange(T) == T // 2
        rows = frame_rows(
            pa, state, action, e, start, fps, **{"next.reward": rewards, "next.done": dones}
        )
        (root / "data/chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(rows, root / f"data/chunk-000/episode_{e:06d}.parquet")
        encode_mp4(av, root / f"videos/chunk-000/{key}/episode_{e:06d}.mp4", frames, fps)
        lines.append(json.dumps({"episode_index": e, "tasks": [f"task {e % 2}"], "length": T}))
        start += T
    (root / "meta/episodes.jsonl").write_text("\n".join(lines) + "\n")
    return data


def edit_info(ds, change):
    path = ds / "meta" / "info.json"
    info = json.loads(path.read_text())
    change(info)
    path.write_text(json.dumps(info))
