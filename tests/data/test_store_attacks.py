"""Demonstration files made by someone else, as an attacker or a careless tool would make them:
they are read only inside themselves (no external storage, external links, virtual datasets or
soft links out of their episode), their declared sizes are checked before anything is allocated,
and no entry point of the store leaves an HDF5 file open, error paths included. Each refusal is
one DemoError naming the file and the dataset or link, through the API and the CLI alike.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
from store_examples import PUSHT, make_arrays, write_file
from test_store_corrupt import SHIPPED, damaged_copies

from dp_agent.cli.main import main
from dp_agent.data import DemoError, DemoReader, DemoWriter
from dp_agent.data.journal import journal_dir

T = 6  # steps of each crafted episode
SECRET = b"root:x:0:0:secret line of a private file, never to be read through a demo file\n" * 4


def write_plain_file(path: Path, n: int = 2) -> None:
    """A self-contained file of ``n`` episodes of ``T`` steps, written with h5py directly (the
    robomimic layout), for an attack to edit."""
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({**PUSHT, "type": 2})
        data.attrs["total"] = n * T
        for i in range(n):
            obs, actions, rewards, dones = make_arrays(i, T=T)
            g = data.create_group(f"demo_{i}")
            g["obs/state"] = obs
            g["actions"] = actions
            g["rewards"] = rewards
            g["dones"] = dones.astype(np.uint8)
            g.attrs["num_samples"] = T


def secret_hdf5(path: Path) -> Path:
    """Another HDF5 file, private to its owner, that a crafted demo file points into."""
    with h5py.File(path, "w") as f:
        f["obs/state"] = np.full((T, 5), 7.0, np.float32)
        f["actions"] = np.full((T, 2), 7.0, np.float32)
    return path


def external_storage(f: h5py.File, secret: Path) -> str:
    del f["data/demo_0/actions"]
    f["data/demo_0"].create_dataset(
        "actions", shape=(T, 2), dtype="<f4", external=[(str(secret), 0, T * 2 * 4)]
    )
    return "data/demo_0/actions"


def external_link(f: h5py.File, secret: Path) -> str:
    del f["data/demo_0/obs"]
    f["data/demo_0/obs"] = h5py.ExternalLink(str(secret.with_suffix(".hdf5")), "/obs")
    return "data/demo_0/obs"


def virtual_dataset(f: h5py.File, secret: Path) -> str:
    layout = h5py.VirtualLayout(shape=(T, 2), dtype="f4")
    layout[:] = h5py.VirtualSource(str(secret.with_suffix(".hdf5")), "actions", shape=(T, 2))
    del f["data/demo_1/actions"]
    f["data/demo_1"].create_virtual_dataset("actions", layout)
    return "data/demo_1/actions"


def soft_link_out_of_its_episode(f: h5py.File, secret: Path) -> str:
    del f["data/demo_1/actions"]
    f["data/demo_1/actions"] = h5py.SoftLink("/data/demo_0/actions")
    return "data/demo_1/actions"


def soft_link_out_of_the_data(f: h5py.File, secret: Path) -> str:
    f["stash"] = np.zeros(T, np.float32)
    del f["data/demo_0/rewards"]
    f["data/demo_0/rewards"] = h5py.SoftLink("/stash")
    return "data/demo_0/rewards"


ATTACKS = [
    external_storage,
    external_link,
    virtual_dataset,
    soft_link_out_of_its_episode,
    soft_link_out_of_the_data,
]


def crafted(tmp_path: Path, attack: Callable[[h5py.File, Path], str]) -> tuple[Path, str]:
    """A demo file edited by ``attack``; returns it and the dataset or link the attack made."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(SECRET)
    secret_hdf5(tmp_path / "secret.hdf5")
    path = tmp_path / "crafted.hdf5"
    write_plain_file(path)
    with h5py.File(path, "r+") as f:
        where = attack(f, secret)
    return path, where


def assert_refused(exc: BaseException | str, path: Path, where: str) -> None:
    """One DemoError (or CLI line) naming the file and the dataset or link, and saying no."""
    message = str(exc)
    assert message.startswith(f"{path}: {where}: "), message
    assert "refused" in message and "\n" not in message
    assert SECRET[:20].decode() not in message  # names the other file, never shows its bytes


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__)
def test_a_file_reaching_outside_itself_is_refused_by_the_reader_and_the_writer(tmp_path, attack):
    path, where = crafted(tmp_path, attack)
    before = path.read_bytes()
    with pytest.raises(DemoError) as info:
        DemoReader(path)
    assert_refused(info.value, path, where)
    with pytest.raises(DemoError) as info:
        DemoWriter(path)
    assert_refused(info.value, path, where)
    with pytest.raises(DemoError) as info:
        DemoWriter(path, PUSHT)
    assert_refused(info.value, path, where)
    assert path.read_bytes() == before


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__)
def test_a_file_reaching_outside_itself_is_refused_by_every_demos_command(tmp_path, attack, capsys):
    path, where = crafted(tmp_path, attack)
    good, out = tmp_path / "good.hdf5", tmp_path / "merged.hdf5"
    write_plain_file(good)
    before = path.read_bytes()
    commands = [
        ["demos", "info", str(path)],
        ["demos", "merge", str(out), str(good), str(path)],
        ["demos", "merge", "--force", str(good), str(path)],
        ["demos", "split", str(path)],
        ["demos", "compact", str(path)],
    ]
    for command in commands:
        assert main(command) == 2, command
        captured = capsys.readouterr()
        assert captured.out == "", command
        assert captured.err.count("\n") == 1 and captured.err.startswith("error: "), command
        assert_refused(captured.err[len("error: ") : -1], path, where)
    assert not out.exists()  # nothing merged, so nothing of the secret written anywhere
    assert path.read_bytes() == before
    with DemoReader(good) as reader:  # the file OUT would have replaced is untouched
        assert reader.num_episodes == 2


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__)
def test_a_file_reaching_outside_itself_is_refused_by_training(tmp_path, attack):
    from dp_agent.training.windows import load_episodes

    path, where = crafted(tmp_path, attack)
    with pytest.raises(DemoError) as info:
        load_episodes(path)
    assert_refused(info.value, path, where)


def test_a_journal_entry_reaching_outside_itself_is_refused_naming_the_entry(tmp_path):
    path = tmp_path / "demos.hdf5"
    write_file(path, 2, T=T)  # demo_1 pending in the journal
    entry = journal_dir(path) / "demo_1.hdf5"
    secret = secret_hdf5(tmp_path / "secret.hdf5")
    with h5py.File(entry, "r+") as f:
        del f["data/demo_1/obs"]
        f["data/demo_1/obs"] = h5py.ExternalLink(str(secret), "/obs")
    for call in (lambda: DemoReader(path), lambda: DemoWriter(path).compact()):
        with pytest.raises(DemoError) as info:
            call()
        assert_refused(info.value, entry, "data/demo_1/obs")


def test_a_soft_link_inside_its_episode_is_read_like_the_dataset_it_names(tmp_path):
    path = tmp_path / "linked.hdf5"
    write_plain_file(path)
    with h5py.File(path, "r+") as f:
        f["data/demo_0/obs/state_again"] = f["data/demo_0/obs/state"]  # a second hard link
        f["data/demo_1/obs/state_again"] = h5py.SoftLink("/data/demo_1/obs/state")
        f["data/demo_0/obs/state_also"] = h5py.SoftLink("state")  # relative, same group
        f["data/demo_1/obs/state_also"] = h5py.SoftLink("/data/demo_1/obs/state")
    with DemoReader(path) as reader:
        for ep in reader:
            np.testing.assert_array_equal(ep.obs["state_again"], ep.obs["state"])
            np.testing.assert_array_equal(ep.obs["state_also"], ep.obs["state"])


# ------------------------------------------------------------------------------------------------
# Declared sizes


def huge_declared_file(path: Path) -> None:
    """A few KB declaring an episode of 2**40 steps: (2**40, 2) actions, (2**40, 5) obs, chunked
    and compressed, only their first chunk stored."""
    n = 2**40
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({**PUSHT, "type": 2})
        data.attrs["total"] = n
        g = data.create_group("demo_0")
        for name, dim in (("obs/state", 5), ("actions", 2)):
            dset = g.create_dataset(
                name, shape=(n, dim), dtype="f4", chunks=(64, dim), compression="gzip"
            )
            dset[:64] = np.ones((64, dim), np.float32)
        g.attrs["num_samples"] = n


def test_a_declared_size_beyond_what_the_file_stores_is_refused_before_allocating(tmp_path, capsys):
    path = tmp_path / "huge.hdf5"
    huge_declared_file(path)
    assert path.stat().st_size < 20_000
    expected = "refused"
    with DemoReader(path) as reader:  # the metadata is fine: the lengths are what it declares
        assert reader.lengths == [2**40]
        for call, where in [
            (lambda: reader.actions(0), "data/demo_0/actions"),
            (lambda: reader.episode(0), "data/demo_0/obs/state"),
            (reader.action_bounds, "data/demo_0/actions"),
            (lambda: list(reader), "data/demo_0/obs/state"),
        ]:
            with pytest.raises(DemoError) as info:
                call()
            message = str(info.value)
            assert message.startswith(f"{path}: {where}: declares (1099511627776, "), message
            assert expected in message and "\n" not in message
    assert main(["demos", "info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: data/demo_0/actions: declares ") and err.count("\n") == 1


def test_training_on_a_file_declaring_more_than_it_stores_gives_one_error_line(tmp_path, capsys):
    path = tmp_path / "huge.hdf5"
    huge_declared_file(path)
    code = main(["train", "--demos", str(path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert (
        err.startswith(f"error: {path}: data/demo_0/obs/state: declares ") and err.count("\n") == 1
    )


def test_stored_data_that_compresses_as_well_as_gzip_can_is_read(tmp_path):
    path = tmp_path / "zeros.hdf5"
    writer = DemoWriter(path, PUSHT)
    n = 300_000  # zeros: 2.4 MB of actions in ~256 KiB chunks, each ~1000 times smaller on disk
    obs = np.zeros((n, 2), np.float32)
    writer.append_episode(obs, np.zeros((n, 2)), np.zeros(n), np.r_[np.zeros(n - 1), 1])
    with h5py.File(path, "r") as f:
        actions = f["data/demo_0/actions"]
        assert actions.nbytes > 500 * actions.id.get_storage_size()  # nearly as small as gzip can
    with DemoReader(path) as reader:
        ep = reader.episode(0)
        assert ep.actions.shape == (n, 2) and not ep.actions.any() and not ep.obs["state"].any()


# ------------------------------------------------------------------------------------------------
# Every handle closed on every path


@pytest.fixture
def no_garbage_collector() -> Iterator[None]:
    """The garbage collector off: a file left open until it runs stays open."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def open_hdf5_files() -> int:
    """How many HDF5 files this process has open."""
    return h5py.h5f.get_obj_count(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE)


def assert_closed(*paths: Path) -> None:
    """Each file opens for writing in this process: nothing here holds it."""
    for path in paths:
        with h5py.File(path, "a"):
            pass


def assert_leaves_nothing_open(step: Callable[[], object], *paths: Path) -> None:
    """``step``, whether it succeeds or raises DemoError, leaves no HDF5 file open, and then
    each of ``paths`` opens for writing."""
    before = open_hdf5_files()
    try:
        step()
    except DemoError:
        # closed on the way out, not later when this exception and its frames are freed
        assert open_hdf5_files() == before
    assert open_hdf5_files() == before
    assert_closed(*paths)


def read_everything(path: Path) -> None:
    with DemoReader(path) as reader:
        list(reader)
        reader.summary()
        reader.action_bounds()
        for mask in reader.mask_names:
            reader.mask(mask)


def test_every_store_entry_point_closes_its_files(tmp_path, no_garbage_collector, capsys):
    from dp_agent.training.windows import load_episodes

    path, other, out = tmp_path / "demos.hdf5", tmp_path / "other.hdf5", tmp_path / "out.hdf5"
    write_file(path, 3)  # demo_1, demo_2 pending in the journal
    write_file(other, 2)
    entries = sorted(journal_dir(path).iterdir())
    steps: list[tuple[Callable[[], object], tuple[Path, ...]]] = [
        (lambda: main(["demos", "info", str(path)]), (path, *entries)),
        (lambda: read_everything(path), (path, *entries)),
        (lambda: load_episodes(path), (path, *entries)),
        (lambda: main(["demos", "merge", str(out), str(path), str(other)]), (path, other, out)),
        (lambda: main(["demos", "split", str(out)]), (out,)),
        (lambda: read_everything(out), (out,)),
        (lambda: DemoWriter(out).delete_episode("demo_0"), (out,)),
        (lambda: DemoWriter(other).append_episode(*make_arrays(9)), (other,)),
        (lambda: main(["demos", "compact", str(other)]), (other,)),
        (lambda: main(["demos", "merge", "--force", str(path), str(other)]), (path, other)),
        (lambda: read_everything(path), (path,)),
        (lambda: DemoWriter(path).append_episode(*make_arrays(7)), (path,)),
        (lambda: DemoWriter(path).compact(), (path,)),
    ]
    for step, paths in steps:
        assert_leaves_nothing_open(step, *paths)
    capsys.readouterr()


def test_refused_files_are_closed_on_every_error_path(tmp_path, no_garbage_collector, capsys):
    from dp_agent.training.windows import load_episodes

    path, good, huge = tmp_path / "crafted.hdf5", tmp_path / "good.hdf5", tmp_path / "huge.hdf5"
    write_plain_file(good)
    steps = (
        lambda: DemoReader(path),
        lambda: DemoWriter(path),
        lambda: load_episodes(path),
        lambda: main(["demos", "info", str(path)]),
        lambda: main(["demos", "merge", str(tmp_path / "out.hdf5"), str(good), str(path)]),
        lambda: main(["demos", "compact", str(path)]),
    )
    for attack in ATTACKS:
        assert crafted(tmp_path, attack)[0] == path
        for step in steps:
            assert_leaves_nothing_open(step, path, good)
    huge_declared_file(huge)
    for step in (lambda: main(["demos", "info", str(huge)]), lambda: load_episodes(huge)):
        assert_leaves_nothing_open(step, huge)
    capsys.readouterr()


def test_an_error_found_while_reading_closes_the_file_before_it_is_raised(
    tmp_path, no_garbage_collector, capsys
):
    from dp_agent.training.windows import load_episodes

    path, good = tmp_path / "nan.hdf5", tmp_path / "good.hdf5"
    write_plain_file(good)
    write_plain_file(path)
    with h5py.File(path, "r+") as f:  # found only when the values are read
        f["data/demo_1/actions"][2, 0] = np.nan
    for step in (
        lambda: read_everything(path),
        lambda: load_episodes(path),  # training's reader
        lambda: main(["demos", "info", str(path)]),
        lambda: main(["demos", "merge", str(tmp_path / "out.hdf5"), str(good), str(path)]),
    ):
        assert_leaves_nothing_open(step, path, good)
    assert not (tmp_path / "out.hdf5").exists()
    capsys.readouterr()


def test_damaged_files_are_closed_on_every_path(tmp_path, no_garbage_collector, capsys):
    path, good = tmp_path / "damaged.hdf5", tmp_path / "good.hdf5"
    write_plain_file(good)
    clean = SHIPPED.read_bytes()
    new = make_arrays(3, obs_dim=4)
    for damage in damaged_copies(clean, SHIPPED)[::5]:
        for step in (
            lambda: read_everything(path),
            lambda: DemoWriter(path).append_episode(*new),
            lambda: main(["demos", "info", str(path)]),
            lambda: main(["demos", "merge", str(tmp_path / "out.hdf5"), str(path), str(good)]),
            lambda: main(["demos", "compact", str(path)]),
        ):
            path.write_bytes(damage.data)
            assert_leaves_nothing_open(step, good)
            path.write_bytes(clean)  # the same file (inode), whole again: it opens for writing
            assert_closed(path)
            (tmp_path / "out.hdf5").unlink(missing_ok=True)
    capsys.readouterr()


# ------------------------------------------------------------------------------------------------
# demos generate


def test_generate_for_an_env_without_an_expert_gives_one_error_line(tmp_path, capsys):
    pytest.importorskip("dp_agent.envs.experts")
    out = tmp_path / "cartpole.hdf5"
    args = ["demos", "generate", "--task", "CartPole-v1", "--episodes", "2", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --task CartPole-v1: no scripted expert") and err.count("\n") == 1
    assert not out.exists()
