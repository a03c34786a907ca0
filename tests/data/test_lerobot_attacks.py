"""Attacks on the LeRobot converter, each its own test: a dataset folder whose meta/info.json or
links point outside it, path templates that walk Python attributes, and a demo file whose obs key
would take the export out of its folder. Each is refused with one DatasetError (a DemoError)
before anything outside the folder is read or written; the CLI says it in one line."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest
from lerobot_examples import (
    edit_info,
    error_line,
    extra,
    make_demos,
    write_v3_by_hand,
    write_v21_by_hand,
)

from dp_agent.cli.main import main
from dp_agent.data import DemoError, DemoReader
from dp_agent.data.errors import DatasetError

DATA_FILES = "chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_FILES = "{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"


def refused(ds, capsys, *messages):
    """Import ``ds`` through the API and the CLI: a DatasetError naming ``messages`` from the
    first and one error line with exit code 2 from the second, no demo file written."""
    from dp_agent.data.lerobot_import import LeRobotSource

    with pytest.raises(DatasetError) as caught:
        LeRobotSource(ds)
    for message in messages:
        assert message in str(caught.value), str(caught.value)
    out = ds.parent / "out.hdf5"
    capsys.readouterr()
    assert main(["demos", "import-lerobot", str(ds), "--out", str(out)]) == 2
    assert error_line(capsys) == f"error: {caught.value}"
    assert not out.exists()
    return str(caught.value)


def move_out(ds, folder):
    """Move ``ds/<folder>`` out of the dataset, to a sibling ``outside-<folder>``; returns it."""
    outside = ds.parent / f"outside-{folder}"
    shutil.move(ds / folder, outside)
    return outside


@pytest.fixture
def ds(tmp_path):
    """A v3.0 dataset written by hand in LeRobot's layout (one camera, two data files)."""
    write_v3_by_hand(tmp_path / "ds")
    return tmp_path / "ds"


# ----------------------------------------------------------------------------------------------
# Paths from meta/info.json and from links stay inside the dataset folder


def test_the_import_of_an_intact_folder_still_works(ds, tmp_path):
    out = tmp_path / "out.hdf5"
    assert main(["demos", "import-lerobot", str(ds), "--out", str(out)]) == 0
    with DemoReader(out) as reader:
        assert reader.num_episodes == 3


@pytest.mark.parametrize("template", ["data_path", "video_path"])
def test_a_template_with_dotdot_is_refused(ds, capsys, template):
    folder = "data" if template == "data_path" else "videos"
    move_out(ds, folder)  # the rows (or frames) now lie only outside: an import would read them
    files = DATA_FILES if template == "data_path" else VIDEO_FILES
    edit_info(ds, lambda info: info.update({template: f"../outside-{folder}/{files}"}))
    message = refused(ds, capsys, f"meta/info.json: {template}: ", "outside the dataset folder")
    assert f"'../outside-{folder}/" in message


@pytest.mark.parametrize("template", ["data_path", "video_path"])
def test_an_absolute_template_is_refused(ds, capsys, template):
    folder = "data" if template == "data_path" else "videos"
    outside = move_out(ds, folder)
    files = DATA_FILES if template == "data_path" else VIDEO_FILES
    edit_info(ds, lambda info: info.update({template: f"{outside}/{files}"}))
    refused(ds, capsys, f"meta/info.json: {template}: ", "outside the dataset folder")


SYMLINKS = {  # what is replaced by a link to a copy outside the folder
    "data folder": "data",
    "video file": "videos/observation.images.top/chunk-000/file-001.mp4",
    "episodes table": "meta/episodes/chunk-000/file-000.parquet",
    "info.json": "meta/info.json",
}


@pytest.mark.parametrize("linked", SYMLINKS, ids=list(SYMLINKS))
def test_a_symlink_out_of_the_folder_is_refused(ds, capsys, linked):
    inside = ds / SYMLINKS[linked]
    outside = ds.parent / f"outside-{inside.name}"
    shutil.move(inside, outside)
    inside.symlink_to(outside, target_is_directory=outside.is_dir())
    message = refused(ds, capsys, "outside the dataset folder")
    assert str(outside.resolve()) in message


def test_a_symlink_that_stays_inside_the_folder_is_followed(ds, tmp_path):
    shutil.move(ds / "data", ds / "rows")
    (ds / "data").symlink_to("rows", target_is_directory=True)
    out = tmp_path / "out.hdf5"
    assert main(["demos", "import-lerobot", str(ds), "--out", str(out)]) == 0


def test_a_dataset_folder_given_by_a_link_is_read(ds, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(ds, target_is_directory=True)
    out = tmp_path / "out.hdf5"
    assert main(["demos", "import-lerobot", str(link), "--out", str(out)]) == 0


def test_a_video_key_that_climbs_out_is_refused(ds, capsys):
    outside = move_out(ds, "videos")
    (ds / "videos").mkdir()  # the key climbs from here to the videos outside
    key = f"../../{outside.name}/observation.images.top"

    def rename(info):
        info["features"][key] = info["features"].pop("observation.images.top")

    edit_info(ds, rename)
    episodes = ds / "meta/episodes/chunk-000/file-000.parquet"
    pa, pq, _ = extra()
    table = pq.read_table(episodes)
    names = [
        n.replace("videos/observation.images.top/", f"videos/{key}/") for n in table.column_names
    ]
    pq.write_table(table.rename_columns(names), episodes)
    refused(ds, capsys, "meta/info.json: video_path: ", "outside the dataset folder")


# ----------------------------------------------------------------------------------------------
# Templates are filled with the documented fields only


HOSTILE_TEMPLATES = {
    "attribute walk": "data/{chunk_index.__class__.__init__.__globals__}/file.parquet",
    "attribute": "data/chunk-{chunk_index.real:03d}/file-{file_index.real:03d}.parquet",
    "indexing": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet{video_key[0]}",
    "conversion": "data/chunk-{chunk_index!r}/file-{file_index:03d}.parquet",
    "positional": "data/chunk-{0}/file-{file_index:03d}.parquet",
    "undocumented": "data/chunk-{chunk_index:03d}/file-{total_episodes}.parquet",
    "nested spec": "data/chunk-{chunk_index:{file_index}}/file-000.parquet",
    "huge width": "data/chunk-{chunk_index:0999d}/file-{file_index:03d}.parquet",
}


@pytest.mark.parametrize("case", HOSTILE_TEMPLATES, ids=list(HOSTILE_TEMPLATES))
def test_a_template_with_attribute_access_or_indexing_is_refused(ds, capsys, case):
    edit_info(ds, lambda info: info.update(data_path=HOSTILE_TEMPLATES[case]))
    refused(ds, capsys, "meta/info.json: data_path: ", "chunk_index, file_index")


def test_a_v2_template_with_attribute_access_is_refused(tmp_path, capsys):
    ds = tmp_path / "ds"
    write_v21_by_hand(ds)
    template = "data/chunk-{episode_chunk:03d}/{episode_index.__class__.__name__}.parquet"
    edit_info(ds, lambda info: info.update(data_path=template))
    refused(ds, capsys, "meta/info.json: data_path: ", "episode_chunk, episode_index")


def test_a_chunk_index_that_is_not_a_count_is_refused(ds, capsys):
    """Values from the episodes table fill the templates too: a text chunk_index would put
    anything into the path."""
    pa, pq, _ = extra()
    episodes = ds / "meta/episodes/chunk-000/file-000.parquet"
    table = pq.read_table(episodes)
    column = pa.array(["../../x"] * len(table))
    index = table.column_names.index("data/chunk_index")
    pq.write_table(table.set_column(index, "data/chunk_index", column), episodes)
    edit_info(ds, lambda info: info.update(data_path="data/{chunk_index}/" + "file.parquet"))
    refused(ds, capsys, "column data/chunk_index: ", "expected counts")


# ----------------------------------------------------------------------------------------------
# The export writes only inside its folder


class RenamedKeys:
    """A DemoReader whose obs keys are renamed: the HDF5 layout cannot hold a key with '/', but
    export_lerobot takes any reader."""

    def __init__(self, reader: DemoReader, names: dict[str, str]):
        self.reader, self.names = reader, names

    def __getattr__(self, name):
        return getattr(self.reader, name)

    @property
    def obs_keys(self):
        return [self.names.get(k, k) for k in self.reader.obs_keys]

    @property
    def obs_shapes(self):
        return {self.names.get(k, k): v for k, v in self.reader.obs_shapes.items()}

    @property
    def obs_dtypes(self):
        return {self.names.get(k, k): v for k, v in self.reader.obs_dtypes.items()}

    def __iter__(self):
        for ep in self.reader:
            obs = {self.names.get(k, k): v for k, v in ep.obs.items()}
            yield dataclasses.replace(ep, obs=obs)


def files_under(folder: Path) -> set[str]:
    """Every file and folder under ``folder``, relative to it."""
    found = set()
    for top, dirs, files in os.walk(folder):
        found |= {os.path.relpath(os.path.join(top, name), folder) for name in dirs + files}
    return found


@pytest.mark.parametrize("key", ["../../../../escaped", "a/b", "..\\x\0"])
def test_an_obs_key_that_would_leave_the_export_folder_is_refused(tmp_path, key):
    from dp_agent.data.lerobot_export import export_lerobot

    extra()
    demos = make_demos(tmp_path / "demo.hdf5", episodes=1, T=4)
    (tmp_path / "out").mkdir()
    before = files_under(tmp_path)
    with DemoReader(demos) as reader, pytest.raises(DemoError) as caught:
        export_lerobot(RenamedKeys(reader, {"image": key}), tmp_path / "out" / "ds")
    assert f"obs/{key}: " in str(caught.value) and "a name" in str(caught.value)
    assert files_under(tmp_path) == before


# ----------------------------------------------------------------------------------------------
# Other values of the episodes table


def test_tasks_that_are_not_strings_are_refused(tmp_path, capsys):
    ds = tmp_path / "ds"
    write_v21_by_hand(ds)
    episodes = ds / "meta/episodes.jsonl"
    lines = episodes.read_text().splitlines()
    lines[1] = json.dumps({"episode_index": 1, "tasks": 5, "length": 8})
    episodes.write_text("\n".join(lines) + "\n")
    refused(ds, capsys, "meta/episodes.jsonl: line 2: tasks: expected a list of task strings")
