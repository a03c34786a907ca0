"""Crash-safe writes (dp_agent.files): the temporary files that killed writers leave behind are
removed by the next write in their folder, and only those: never a live process's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from support import tiny_policy

from dp_agent.files import atomic_path, temp_path_for, write_text_atomic

pytestmark = pytest.mark.skipif(os.name == "nt", reason="stale temp files are told by pid on POSIX")


def exited_pid() -> int:
    """The pid of a process that has run and exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def running_pid():
    """The pid of another process, running for the length of the test."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield child.pid
    child.kill()
    child.wait()


def leftovers(folder: Path, target: str, running_pid: int) -> tuple[Path, Path]:
    """A killed writer's temp file of ``target`` and a running writer's, both named as
    ``temp_path_for`` names them."""
    stale = folder / f".{target}.{exited_pid()}.tmp"
    live = folder / f".{target}.{running_pid}.tmp"
    stale.write_bytes(b"half of a killed write")
    live.write_bytes(b"a write in progress")
    return stale, live


def test_a_write_removes_the_temp_files_of_killed_writers_in_its_folder(tmp_path, running_pid):
    stale, live = leftovers(tmp_path, "last.safetensors", running_pid)
    other = tmp_path / f".other.json.{exited_pid()}.tmp"  # any target's, not only this one's
    other.write_text("{")
    own = temp_path_for(tmp_path / "demos.hdf5")  # this process's, of another target
    own.write_text("an append in progress")
    write_text_atomic(tmp_path / "settings.json", "{}")
    assert not stale.exists() and not other.exists()
    assert live.read_bytes() == b"a write in progress"  # its writer still runs
    assert own.read_text() == "an append in progress"
    assert (tmp_path / "settings.json").read_text() == "{}"


def test_a_checkpoint_write_removes_a_killed_runs_temp_checkpoint(tmp_path, running_pid):
    from dp_agent.checkpoint import read_header, save_policy

    stale, live = leftovers(tmp_path, "last.safetensors", running_pid)
    box = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    save_policy(tmp_path / "last.safetensors", tiny_policy(), box, box, None)
    assert not stale.exists() and live.read_bytes() == b"a write in progress"
    assert read_header(tmp_path / "last.safetensors").env_id is None


def test_a_killed_writers_temp_folder_goes_and_other_files_stay(tmp_path):
    """A killed LeRobot export leaves a folder by the same naming; files that only look alike
    (another suffix, no pid, a live pid of another target) stay."""
    folder = tmp_path / f".dataset.{exited_pid()}.tmp"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "episode.parquet").write_bytes(b"rows")
    kept = [
        tmp_path / f".dataset.{exited_pid()}.old",
        tmp_path / ".notes.txt.tmp",
        tmp_path / "notes.123.tmp.txt",
        temp_path_for(tmp_path / "demos.hdf5"),
    ]
    for path in kept:
        path.write_text("keep")
    with atomic_path(tmp_path / "out.bin") as tmp:
        tmp.write_bytes(b"new")
    assert not folder.exists()
    assert all(path.read_text() == "keep" for path in kept)


def test_a_failed_write_leaves_no_temp_file_and_the_target_unchanged(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
