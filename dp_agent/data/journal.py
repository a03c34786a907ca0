"""The journal: a demonstration file's pending appends, one small robomimic-layout file each in
``FILE.hdf5.journal/`` beside it, so that an append is durable without modifying the file.

Durability: HDF5 is not crash-safe (a kill during a metadata write can corrupt the whole file), so
the writer never modifies a file in place. An append writes its episodes as a new small file in
the robomimic layout, a *journal entry* ``FILE.hdf5.journal/demo_N.hdf5`` (N: its first
episode), through ``dp_agent.files.atomic_path``: a private temp file, fsynced, then renamed into
place and the folder fsynced. The rename is the commit: a kill before it leaves a temp file that
no reader looks at (the next writer removes it), after it the episodes are there. So an append
costs its episodes, whatever the size of the file (the old way, a copy of the whole file per
append, took 0.7 s per episode at 166 MB). Readers see the file's episodes followed by the
pending ones of its journal, with the same names, order and checks.

Rewrites (``delete_episode``, ``set_masks``, ``compact``; an append to a file that has no journal
id yet) work on a private copy of the file into which the journal is folded, renamed over the
file; then the folded entries are removed. A kill between the two leaves entries whose episodes
are in the file; they are recognised and skipped, since an entry is pending only if it starts at
or after the file's next demo index (``next_demo_index``: names are never reused) and carries the
file's ``journal_id`` (an entry of a file that was replaced by another one is ignored, never
deleted). Compaction is therefore idempotent, and a kill at any moment loses at most the change in
progress.

The journal belongs to its file: copy or move ``FILE.hdf5.journal`` with it, or run
``dp-agent demos compact FILE`` first (``demos generate`` compacts when it is done).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import h5py

from dp_agent.files import fsync_dir, remove_stale_temp_files

from .errors import _HDF5_ERRORS, _error, _hdf5_errors
from .layout import (
    _attr_value,
    _demo_layout,
    _DemoLayout,
    _member,
    _next_index,
    _open_hdf5,
    _parse_env_args,
    _require_env,
    _sorted_demo_names,
)

__all__ = ["journal_dir"]

_JOURNAL_ID_ATTR = "journal_id"  # data attribute: the id a journal entry carries to belong here
_ENTRY_NAME = re.compile(r"^demo_(\d+)\.hdf5$")  # a committed journal entry


def journal_dir(path: str | os.PathLike) -> Path:
    """The folder of a demo file's pending appends: ``FILE.hdf5.journal`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.name}.journal")


def _journal_entries(path: Path) -> list[tuple[int, Path]]:
    """The committed entries of ``path``'s journal as (N, file of ``demo_N.hdf5``), by N. A temp
    file (``.demo_N.hdf5.<pid>.tmp``, an entry being written or left by a killed writer) is not
    an entry."""
    folder = journal_dir(path)
    if not folder.is_dir():
        return []
    found = [(m, entry) for entry in folder.iterdir() if (m := _ENTRY_NAME.match(entry.name))]
    return sorted((int(m.group(1)), entry) for m, entry in found)


def _journal_id(data: h5py.Group) -> str | None:
    value = data.attrs.get(_JOURNAL_ID_ATTR)
    return None if value is None else str(_attr_value(value))


def _read_entry(
    entry: Path, index: int, env_id: str | None, journal_id: str | None
) -> dict[str, _DemoLayout] | None:
    """Check journal entry ``entry`` (``demo_<index>.hdf5``) from metadata, as a file is checked
    on open; returns its episodes' layouts, or None when it does not carry ``journal_id`` (an
    entry of a file that this one replaced: not this file's)."""
    with _open_hdf5(entry) as f:
        with _hdf5_errors(entry, "data"):
            data = _member(f, "data")
            if not isinstance(data, h5py.Group):
                raise _error(entry, "data", "missing group; expected a journal entry data/demo_N")
            if journal_id is None or _journal_id(data) != journal_id:
                return None
            env_args = _parse_env_args(entry, data)
            names = _sorted_demo_names(data)
        _require_env(entry, env_args.get("env_name"), env_id, " like the file it belongs to")
        if not names or names[0] != f"demo_{index}":
            raise _error(
                entry, "data", f"expected episodes from demo_{index} on (its name), got {names[:3]}"
            )
        return {name: _demo_layout(entry, data, name) for name in names}


def _entry_next_index(entry: Path) -> int:
    """The next demo index after the episodes of journal entry ``entry``."""
    with _open_hdf5(entry) as f, _hdf5_errors(entry, "data"):
        return _next_index(f["data"])


def _entry_journal_id(entry: Path) -> str | None:
    """The journal id an entry carries; None when it cannot be read."""
    try:
        with h5py.File(entry, "r") as f:
            return _journal_id(f["data"])
    except _HDF5_ERRORS:
        return None


def _remove_entries(path: Path, entries: list[Path]) -> None:
    """Remove journal entries whose episodes the file now holds, and the journal folder once it
    is empty. A kill part-way leaves entries that readers skip (below the next demo index)."""
    if not entries:
        return
    folder = journal_dir(path)
    for entry in entries:
        entry.unlink(missing_ok=True)
    fsync_dir(folder)
    if not any(folder.iterdir()):
        try:
            folder.rmdir()
        except OSError:  # an append came in meanwhile: the folder stays
            return
        fsync_dir(path.parent)


def _remove_stale_entry_temps(path: Path) -> None:
    """Remove the temp files of journal entries left by writers that were killed."""
    remove_stale_temp_files(journal_dir(path))
