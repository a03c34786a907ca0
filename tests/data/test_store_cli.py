"""``dp-agent demos info|merge|split|compact|generate`` on demonstration files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from store_examples import make_arrays, write_file

from dp_agent.cli.main import main
from dp_agent.data import DemoReader, DemoWriter, Episode
from dp_agent.data.journal import journal_dir


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
    from dp_agent.cli import demos_generate as demos_cli

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
    args = [
        "demos",
        "generate",
        "--task",
        "dp_agent/Maze2D-v0",
        "--episodes",
        "2",
        "--env-kwargs",
        '{"maze": "medium"}',
        "--out",
        str(out),
        "--json-progress",
    ]
    assert main(args) == 0
    with DemoReader(out) as reader:
        assert reader.env_args["env_kwargs"] == {"maze": "medium"}
        assert reader.num_episodes == 2
    bad = [
        "demos",
        "generate",
        "--task",
        "dp_agent/Maze2D-v0",
        "--episodes",
        "1",
        "--env-kwargs",
        "[1]",
        "--out",
        str(tmp_path / "bad.hdf5"),
    ]
    assert main(bad) == 2
    assert "--env-kwargs: expected a JSON object" in capsys.readouterr().err
    assert not (tmp_path / "bad.hdf5").exists()
