"""Damaged demonstration files: copies of a shipped file, truncated or with bytes overwritten in
its superblock, object headers, data chunks or anywhere, either read fully and consistently or
give one DemoError naming the file, from every entry point of the reader, the writer and
``dp-agent demos info``. No other exception type, no traceback, and the file is never changed.
The same holds for a damaged journal entry (a pending append, not a temp file): the DemoError
names the entry.
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import dp_agent.demos
from dp_agent.cli.main import main
from dp_agent.data import DemoError, DemoReader, DemoWriter, Episode
from dp_agent.data.journal import journal_dir

SHIPPED = Path(dp_agent.demos.__file__).with_name("tree_detour.hdf5")  # the smaller one
SEED = 20240612


@dataclass(frozen=True)
class Damage:
    name: str  # what was done where, e.g. "flip 0x5a at 1234 (object header)"
    data: bytes


def landmarks(path: Path) -> tuple[list[int], list[tuple[int, int]]]:
    """Where the clean file keeps its object headers (groups, datasets and their attributes) and
    its compressed data chunks (offset, size)."""
    headers, chunks = [], []
    with h5py.File(path, "r") as f:

        def visit(_name: str, obj: Any) -> None:
            headers.append(h5py.h5o.get_info(obj.id).addr)
            if isinstance(obj, h5py.Dataset):
                for i in range(obj.id.get_num_chunks()):
                    info = obj.id.get_chunk_info(i)
                    chunks.append((info.byte_offset, info.size))

        headers.append(h5py.h5o.get_info(f.id).addr)
        f.visititems(visit)
    return sorted(headers), sorted(chunks)


def damaged_copies(clean: bytes, path: Path) -> list[Damage]:
    """About 190 seeded damages: truncations, single-byte flips and overwritten blocks, spread
    over the superblock, the object headers, the data chunks and the whole file."""
    rng = random.Random(SEED)
    n = len(clean)
    headers, chunks = landmarks(path)
    cuts = [1, 8, 40, 48, 100, 512, 1024, 2048, 4096, n - 1]
    cuts += [n * k // 40 for k in range(1, 40)]
    damages = [Damage(f"truncated at {cut}", clean[:cut]) for cut in sorted(set(cuts))]

    def pick(population: list, k: int) -> list:  # a small file (a journal entry): repeats
        if k <= len(population):
            return rng.sample(population, k)
        return [rng.choice(population) for _ in range(k)]

    def spots(headers_n: int, chunks_n: int, anywhere_n: int) -> list[tuple[int, str]]:
        at = [(h + rng.randrange(64), "object header") for h in pick(headers, headers_n)]
        at += [(c + rng.randrange(s), "data chunk") for c, s in pick(chunks, chunks_n)]
        return at + [(rng.randrange(n), "anywhere") for _ in range(anywhere_n)]

    for offset, region in [(i, "superblock") for i in range(0, 48, 2)] + spots(40, 14, 20):
        data = bytearray(clean)
        mask = rng.randrange(1, 256)
        data[min(offset, n - 1)] ^= mask
        damages.append(Damage(f"flip {mask:#04x} at {offset} ({region})", bytes(data)))
    for offset, region in spots(10, 4, 6):
        size = rng.choice([16, 64, 256])
        for kind, block in (("zeroed", bytes(size)), ("random", rng.randbytes(size))):
            data = bytearray(clean)
            data[offset : offset + size] = block[: max(0, n - offset)]
            damages.append(Damage(f"{kind} {size} bytes at {offset} ({region})", bytes(data)))
    return [d for d in damages if d.data != clean]


@pytest.fixture(scope="module")
def damages() -> list[Damage]:
    return damaged_copies(SHIPPED.read_bytes(), SHIPPED)


@pytest.fixture(scope="module")
def clean() -> dict[str, Any]:
    """What every entry point returns on the undamaged file."""
    errors, results = read_every_way(SHIPPED)
    assert not errors
    return results


def read_every_way(path: Path) -> tuple[list[tuple[str, BaseException]], dict[str, Any]]:
    """Every reading entry point on ``path``, each tried on its own: what each returned, and
    every exception raised (step, exception)."""
    try:
        reader = DemoReader(path)
    except Exception as exc:
        return [("open", exc)], {}
    errors: list[tuple[str, BaseException]] = []
    results: dict[str, Any] = {}
    with reader:
        results["names"], results["lengths"] = reader.names, reader.lengths
        results["obs_shapes"] = reader.obs_shapes
        episodes: list[Episode] = []
        steps = {
            "summary": reader.summary,
            "action_bounds": reader.action_bounds,
            "masks": lambda: {m: reader.mask(m) for m in reader.mask_names},
            "for ep in reader": lambda: episodes.extend(reader) or episodes,
        }
        for step, call in steps.items():
            try:
                results[step] = call()
            except Exception as exc:
                errors.append((step, exc))
        # By index too: the first and last episodes and the one iteration stopped at, if any
        # (reading all of them twice would double the test's time for little more).
        for i in sorted({0, len(episodes), len(reader) - 1} & set(range(len(reader)))):
            try:
                results[f"episode({i})"] = reader.episode(i)
            except Exception as exc:
                errors.append((f"episode({i})", exc))
    return errors, results


def assert_same_episode(got: Episode, expected: Episode) -> None:
    assert got.name == expected.name and got.attrs == expected.attrs
    assert got.obs.keys() == expected.obs.keys()
    for key in expected.obs:
        np.testing.assert_array_equal(got.obs[key], expected.obs[key])
    np.testing.assert_array_equal(got.actions, expected.actions)
    np.testing.assert_array_equal(got.rewards, expected.rewards)
    np.testing.assert_array_equal(got.dones, expected.dones)


def assert_reads_like(results: dict[str, Any], clean: dict[str, Any]) -> None:
    """A damaged file that reads without error tells the clean file's story, from every entry
    point: HDF5 checksums its metadata and zlib its chunks, so damage that is not detected lies
    in bytes nothing uses (a DemoError would be wrong there, a changed value worse)."""
    for key in ("names", "lengths", "obs_shapes", "summary", "masks"):
        assert results[key] == clean[key], key
    for got, expected in zip(results["action_bounds"], clean["action_bounds"], strict=True):
        np.testing.assert_array_equal(got, expected)
    episodes = clean["for ep in reader"]
    assert len(results["for ep in reader"]) == len(episodes)
    for got, expected in zip(results["for ep in reader"], episodes, strict=True):
        assert_same_episode(got, expected)
    for i in (0, len(episodes) - 1):
        assert_same_episode(results[f"episode({i})"], episodes[i])


def is_clear_demo_error(exc: BaseException, path: Path) -> bool:
    """One DemoError on one line that starts with the file and names what was being read."""
    message = str(exc)
    return (
        isinstance(exc, DemoError)
        and message.startswith(f"{path}: ")
        and len(message) > len(f"{path}: ")
        and "\n" not in message
    )


def test_the_damages_are_many_and_spread_over_the_file(damages):
    assert 150 <= len(damages) <= 300
    regions = Counter(d.name.split("(")[-1].rstrip(")") for d in damages if "(" in d.name)
    assert set(regions) == {"superblock", "object header", "data chunk", "anywhere"}
    assert sum(d.name.startswith("truncated") for d in damages) >= 40
    assert len({d.data for d in damages}) == len(damages)  # every one is a different file


@pytest.mark.slow
def test_damaged_files_read_fully_or_raise_one_demo_error_naming_the_file(tmp_path, damages, clean):
    path = tmp_path / "damaged.hdf5"
    bad, outcome = [], Counter()
    for damage in damages:
        path.write_bytes(damage.data)
        errors, results = read_every_way(path)
        bad += [
            (damage.name, step, repr(e)) for step, e in errors if not is_clear_demo_error(e, path)
        ]
        if errors:
            outcome["open" if errors[0][0] == "open" else "reading"] += 1
        else:
            assert_reads_like(results, clean)
            outcome["none"] += 1
        assert path.read_bytes() == damage.data, f"{damage.name}: reading changed the file"
    assert not bad, f"{len(bad)} calls raised something else than a clear DemoError: {bad[:10]}"
    # Both kinds of damage occur: found on open (headers), found only when data is read (chunks).
    assert outcome["open"] > 0 and outcome["reading"] > 0


@pytest.mark.slow
def test_writer_on_a_damaged_file_raises_demo_error_and_leaves_it_unchanged(tmp_path, damages):
    path = tmp_path / "damaged.hdf5"
    T = 3
    new = (np.ones((T, 4), np.float32), np.ones((T, 2), np.float32), np.zeros(T), np.ones(T))
    bad, outcomes = [], Counter()
    for damage in damages[::2]:  # every kind of damage, at half the cost
        path.write_bytes(damage.data)
        try:
            writer = DemoWriter(path)
            # Appending to a file that opens (its damage is in data chunks, copied untouched)
            # costs a copy and an fsync: a third of them are tried.
            if outcomes["opened"] % 3 == 0:
                name = writer.append_episode(*new)
                with DemoReader(path) as reader:
                    np.testing.assert_array_equal(reader.episode(name).actions, new[1])
                outcomes["appended"] += 1
            outcomes["opened"] += 1
        except DemoError as exc:
            outcomes["refused"] += 1
            if not is_clear_demo_error(exc, path) or path.read_bytes() != damage.data:
                bad.append((damage.name, repr(exc)))
        except Exception as exc:
            bad.append((damage.name, repr(exc)))
        assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary copy left
    assert not bad, f"{len(bad)} damaged files were not refused cleanly: {bad[:10]}"
    assert outcomes["refused"] > 0 and outcomes["appended"] > 0


def info_reads_fail(path: Path) -> bool:
    """Whether the reads ``demos info`` makes (open, summary, action bounds, masks) fail."""
    errors, _ = read_every_way(path)
    return any(step in ("open", "summary", "action_bounds", "masks") for step, _ in errors)


@pytest.mark.slow
def test_cli_info_on_damaged_files_prints_one_error_line_and_exits_2(tmp_path, damages, capsys):
    path = tmp_path / "damaged.hdf5"
    codes = Counter()
    for damage in damages[::8]:
        path.write_bytes(damage.data)
        expected = 2 if info_reads_fail(path) else 0
        code = main(["demos", "info", str(path)])
        out, err = capsys.readouterr()
        assert code == expected, f"{damage.name}: exit code {code}, stderr {err!r}"
        if code == 2:
            assert err.startswith(f"error: {path}: ") and err.count("\n") == 1, damage.name
            assert "Traceback" not in err
        else:
            assert not err and "episodes:  100" in out
        codes[code] += 1
    assert codes[2] >= 10


def test_cli_info_on_a_damaged_file_in_a_new_process_prints_no_traceback(tmp_path):
    path = tmp_path / "damaged.hdf5"
    clean = SHIPPED.read_bytes()
    path.write_bytes(clean[: len(clean) // 2])
    proc = subprocess.run(
        [sys.executable, "-m", "dp_agent.cli", "demos", "info", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1, proc.stderr  # no HDF5 diagnostics either
    assert proc.stderr.startswith(f"error: {path}: ") and "damaged" in proc.stderr
    assert proc.stdout == ""


# ------------------------------------------------------------------------------------------------
# Damaged journal entries


def file_with_a_pending_image_entry(path: Path) -> Path:
    """A file of three image episodes, the last two pending in the journal; returns the entry of
    the middle one."""
    writer = DemoWriter(path, {"env_name": "dp_agent/PushT-v0", "env_kwargs": {}})
    for seed in range(3):
        rng = np.random.default_rng(seed)
        T = 6 + seed
        obs = {
            "image": rng.integers(0, 256, size=(T, 32, 32, 3), dtype=np.uint8),
            "agent_pos": rng.normal(size=(T, 2)),
        }
        writer.append_episode(
            obs, rng.normal(size=(T, 2)), rng.random(T), np.r_[np.zeros(T - 1), 1]
        )
    return journal_dir(path) / "demo_1.hdf5"


def test_damaged_journal_entries_read_fully_or_raise_one_demo_error_naming_the_entry(tmp_path):
    path = tmp_path / "demos.hdf5"
    entry = file_with_a_pending_image_entry(path)
    clean_errors, clean_results = read_every_way(path)
    assert not clean_errors and len(clean_results["for ep in reader"]) == 3
    entry_bytes = entry.read_bytes()
    bad, outcome = [], Counter()
    for damage in damaged_copies(entry_bytes, entry):
        entry.write_bytes(damage.data)
        errors, results = read_every_way(path)
        bad += [(damage.name, s, repr(e)) for s, e in errors if not is_clear_demo_error(e, entry)]
        if errors:
            outcome["open" if errors[0][0] == "open" else "reading"] += 1
        else:
            assert_reads_like(results, clean_results)  # never read as missing, or as another's
            outcome["none"] += 1
    assert not bad, f"{len(bad)} calls raised something else than a clear DemoError: {bad[:10]}"
    assert outcome["open"] > 0 and outcome["reading"] > 0


def test_a_compaction_of_a_damaged_journal_entry_raises_and_changes_nothing(tmp_path):
    path = tmp_path / "demos.hdf5"
    entry = file_with_a_pending_image_entry(path)
    file_bytes, entry_bytes = path.read_bytes(), entry.read_bytes()
    bad, outcomes = [], Counter()
    for damage in damaged_copies(entry_bytes, entry)[::6]:
        path.write_bytes(file_bytes)
        journal_dir(path).mkdir(exist_ok=True)
        entry.write_bytes(damage.data)
        try:
            DemoWriter(path).compact()
            outcomes["compacted"] += 1  # damage in bytes nothing uses
        except DemoError as exc:
            outcomes["refused"] += 1
            unchanged = path.read_bytes() == file_bytes and entry.read_bytes() == damage.data
            if not is_clear_demo_error(exc, entry) or not unchanged:
                bad.append((damage.name, repr(exc)))
        except Exception as exc:
            bad.append((damage.name, repr(exc)))
        temps = [p.name for p in tmp_path.rglob(".*.tmp")]
        assert not temps, f"{damage.name}: temporary files left: {temps}"
    assert not bad, f"{len(bad)} damaged entries were not refused cleanly: {bad[:10]}"
    assert outcomes["refused"] > 0
