"""A writer SIGKILLed at a random moment (appending vector or image episodes, deleting one, or
compacting the journal into the file) loses at most the episode in progress: the file still
opens and every episode it reported as saved is there, unchanged."""

from __future__ import annotations

import importlib.util
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dp_agent.data import DemoReader, DemoWriter

WRITER = Path(__file__).with_name("store_kill_writer.py")
_spec = importlib.util.spec_from_file_location("store_kill_writer", WRITER)
store_kill_writer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(store_kill_writer)

pytestmark = [
    pytest.mark.slow,  # kill -9 at random moments of real writers
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals"),
]

# mode -> what the writer prints when the call starts and when it has returned
CALLS = {
    "churn": ("deleting", "deleted"),
    "compact": ("compacting", "compacted"),
    "images-compact": ("compacting", "compacted"),
}


def run_and_kill(path: Path, first_seed: int, mode: str, rng: random.Random) -> list[str]:
    """Start the writer, SIGKILL it at a random moment, return everything it printed. In the
    churn and compact modes the kill lands part-way through a delete or a compaction: the
    writer's first such call is timed, and the second is killed within the first half of that
    time (a fixed delay would outlast a compaction on a fast CPU)."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(path), str(first_seed), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = [proc.stdout.readline()]
    assert lines[0] == "ready\n", "the writer failed to start"

    def read_until(verb: str) -> float:
        while not lines[-1].startswith(verb):
            lines.append(proc.stdout.readline())
            assert lines[-1], f"the writer stopped before {verb}"
        return time.perf_counter()

    if mode in CALLS:  # time one call, then kill the next part-way
        start, end = CALLS[mode]
        took = -read_until(start)
        lines.append(proc.stdout.readline())
        took += read_until(end)
        lines.append(proc.stdout.readline())
        read_until(start)
        time.sleep(rng.uniform(0.0, 0.5 * took))
    else:
        time.sleep(rng.uniform(0.0, 0.2))
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the writer ended before it was killed"
    return lines + out.splitlines()


def assert_episode_is(reader: DemoReader, name: str, seed: int, images: bool) -> None:
    ep = reader.episode(name)
    assert ep.attrs["seed"] == seed
    obs, actions, rewards, dones = store_kill_writer.episode_arrays(seed, images)
    assert ep.obs.keys() == obs.keys()
    for key in obs:
        np.testing.assert_array_equal(ep.obs[key], obs[key])
    np.testing.assert_array_equal(ep.actions, actions)
    np.testing.assert_array_equal(ep.rewards, rewards)
    np.testing.assert_array_equal(ep.dones, dones)


class Survivors:
    """Every episode the killed writers reported saved (name -> seed), checked after each kill."""

    def __init__(self, path: Path, images: bool, rng: random.Random):
        self.path, self.images, self.rng = path, images, rng
        self.kept: dict[str, int] = {}
        self.checked: set[str] = set()  # episodes whose content was already compared
        self.killed_in: Counter[str] = Counter()  # "deleting"/"compacting": killed part-way

    def kill_once(self, trial: int, mode: str) -> None:
        """One trial: in the churn and compact modes, writers are killed (each on seeds of its
        own) until one kill lands part-way through the call (a kill that misses, the call
        having returned first, still checks the file); at most five tries."""
        for attempt in range(5 if mode in CALLS else 1):
            if self.kill_writer(trial, mode, 1000 * trial + 100 * attempt):
                return

    def kill_writer(self, trial: int, mode: str, first_seed: int) -> bool:
        """Run one writer, kill it, check the file; -> whether it died part-way through a
        delete or a compaction."""
        lines = run_and_kill(self.path, first_seed, mode, self.rng)
        deleting = None
        for line in lines[1:]:
            verb, *rest = line.split()
            if verb == "saved":
                assert rest[0] not in self.kept, f"name {rest[0]} was given twice"
                self.kept[rest[0]] = int(rest[1])
            elif verb == "deleting":
                deleting = rest[0]
            elif verb == "deleted":
                del self.kept[rest[0]]
                deleting = None
        landed = lines[-1].split()[0] in ("deleting", "compacting")
        if landed:
            self.killed_in[lines[-1].split()[0]] += 1
        if not self.path.exists():  # killed before the first episode was saved
            assert not self.kept
            return landed
        with DemoReader(self.path) as reader:
            self.check(reader, trial, deleting)
        return landed

    def check(self, reader: DemoReader, trial: int, deleting: str | None) -> None:
        present = set(reader.names)
        missing = set(self.kept) - present - {deleting}
        assert not missing, f"trial {trial}: saved episodes lost: {sorted(missing)}"
        if deleting is not None and deleting not in present:  # the delete committed
            del self.kept[deleting]
        # An append that committed just before the kill (not yet reported) is fine, whole.
        for name in present - set(self.kept):
            self.kept[name] = reader.episode(name).attrs["seed"]
        assert set(self.kept) == present
        for name in sorted(present - self.checked):
            assert_episode_is(reader, name, self.kept[name], self.images)
        self.checked = present
        # Spot-check older episodes too: a torn metadata write would show up here.
        for name in self.rng.sample(sorted(present), min(6, len(present))):
            assert_episode_is(reader, name, self.kept[name], self.images)

    def finish(self) -> None:
        """A new writer removes the killed writers' temp files, a compaction folds the journal:
        one file is left, with every episode in full."""
        DemoWriter(self.path).compact()
        assert [p.name for p in self.path.parent.iterdir()] == [self.path.name]
        with DemoReader(self.path) as reader:
            assert set(reader.names) == set(self.kept)
            for name in reader.names:
                assert_episode_is(reader, name, self.kept[name], self.images)


def test_sigkill_at_random_moments_loses_no_saved_episode(tmp_path):
    survivors = Survivors(tmp_path / "demos.hdf5", images=False, rng=random.Random(20240611))
    modes = {5: "churn", 12: "churn", 19: "churn", 3: "compact", 9: "compact", 15: "compact"}
    for trial in range(26):
        survivors.kill_once(trial, modes.get(trial, "append"))
    assert survivors.killed_in == {"deleting": 3, "compacting": 3}
    assert len(survivors.kept) > 26  # the kills did land between and during many appends
    survivors.finish()


def test_sigkill_while_appending_or_compacting_image_episodes_loses_none(tmp_path):
    survivors = Survivors(tmp_path / "images.hdf5", images=True, rng=random.Random(20261201))
    for trial in range(10):
        survivors.kill_once(trial, "images-compact" if trial % 3 == 2 else "images")
    assert survivors.killed_in == {"compacting": 3}
    assert len(survivors.kept) > 10
    survivors.finish()
