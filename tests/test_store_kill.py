"""A writer SIGKILLed at a random moment loses at most the episode in progress: the file still
opens and every episode it reported as saved is there, unchanged."""

from __future__ import annotations

import importlib.util
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dp_agent.demos import DemoReader, DemoWriter

WRITER = Path(__file__).with_name("store_kill_writer.py")
_spec = importlib.util.spec_from_file_location("store_kill_writer", WRITER)
store_kill_writer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(store_kill_writer)

N_TRIALS = 24
CHURN_TRIALS = {5, 12, 19}  # killed while delete_episode runs

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")


def run_and_kill(path: Path, first_seed: int, mode: str, rng: random.Random) -> list[str]:
    """Start the writer, SIGKILL it at a random moment, return everything it printed."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(path), str(first_seed), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = [proc.stdout.readline()]
    assert lines[0] == "ready\n", "the writer failed to start"
    if mode == "churn":  # wait until a delete has started, then kill it part-way
        while not lines[-1].startswith("deleting"):
            lines.append(proc.stdout.readline())
            assert lines[-1], "the writer stopped before deleting"
        time.sleep(rng.uniform(0.0, 0.02))
    else:
        time.sleep(rng.uniform(0.0, 0.2))
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the writer ended before it was killed"
    return lines + out.splitlines()


def assert_episode_is(reader: DemoReader, name: str, seed: int) -> None:
    ep = reader.episode(name)
    assert ep.attrs["seed"] == seed
    obs, actions, rewards, dones = store_kill_writer.episode_arrays(seed)
    np.testing.assert_array_equal(ep.obs["state"], obs)
    np.testing.assert_array_equal(ep.actions, actions)
    np.testing.assert_array_equal(ep.rewards, rewards)
    np.testing.assert_array_equal(ep.dones, dones)


def test_sigkill_at_random_moments_loses_no_saved_episode(tmp_path):
    path = tmp_path / "demos.hdf5"
    rng = random.Random(20240611)
    kept: dict[str, int] = {}  # episodes that must survive: name -> seed
    checked: set[str] = set()  # episodes whose content was already compared
    killed_in_delete = 0
    for trial in range(N_TRIALS):
        mode = "churn" if trial in CHURN_TRIALS else "append"
        lines = run_and_kill(path, 1000 * trial, mode, rng)
        deleting = None
        for line in lines[1:]:
            verb, name, *rest = line.split()
            if verb == "saved":
                assert name not in kept, f"name {name} was given twice"
                kept[name] = int(rest[0])
            elif verb == "deleting":
                deleting = name
            elif verb == "deleted":
                del kept[name]
                deleting = None
        if not path.exists():  # killed before the first episode was saved
            assert not kept
            continue
        with DemoReader(path) as reader:
            present = set(reader.names)
            missing = set(kept) - present - {deleting}
            assert not missing, f"trial {trial}: saved episodes lost: {sorted(missing)}"
            if deleting is not None:
                killed_in_delete += 1
                if deleting not in present:  # the delete committed before the kill
                    del kept[deleting]
            # An append that committed just before the kill (not yet reported) is fine, whole.
            for name in present - set(kept):
                kept[name] = reader.episode(name).attrs["seed"]
            assert set(kept) == present
            for name in sorted(present - checked):
                assert_episode_is(reader, name, kept[name])
            checked = present
            # Spot-check older episodes too: a torn metadata write would show up here.
            for name in rng.sample(sorted(present), min(10, len(present))):
                assert_episode_is(reader, name, kept[name])
    assert killed_in_delete == len(CHURN_TRIALS)
    assert len(kept) > N_TRIALS  # the kills did land between and during many appends
    DemoWriter(path)  # a new writer removes the killed writers' temporary copies
    assert [p.name for p in tmp_path.iterdir()] == ["demos.hdf5"]
    with DemoReader(path) as reader:  # and finally every episode, in full
        for name in reader.names:
            assert_episode_is(reader, name, kept[name])
