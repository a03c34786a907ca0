"""Crash-safe file writes, shared by checkpoints, demonstration files and the app's settings:
write a private temporary file next to the target, fsync it, rename it over the target, fsync
the folder. A kill or power loss at any moment leaves either the old file or the new one, and
the temporary file of a killed writer is removed by the next write in its folder."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temp_path_for(path: Path) -> Path:
    """A private temporary file next to ``path`` (same filesystem, so the rename is atomic);
    the writer's pid is in the name so that a later writer can tell stale ones."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


_TEMP_NAME = re.compile(r"^\.(.+)\.(\d+)\.tmp$")  # temp_path_for's names: .<target>.<pid>.tmp


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    if os.name == "nt":  # directories cannot be opened (or fsynced) on Windows
        return
    fsync_path(directory)


def replace_durably(src: Path, dst: Path) -> None:
    """fsync ``src``, rename it atomically over ``dst`` and fsync the folder: after this returns
    ``dst`` holds the new content even if the machine loses power."""
    fsync_path(src)
    os.replace(src, dst)
    fsync_dir(dst.parent)


@contextmanager
def atomic_path(path: str | os.PathLike, mode: int = 0o644) -> Iterator[Path]:
    """``with atomic_path(p) as tmp: write(tmp)``: ``p`` gets the content of ``tmp`` durably when
    the block exits normally; on an exception ``tmp`` is removed and ``p`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path.parent)
    tmp = temp_path_for(path)
    try:
        yield tmp
        os.chmod(tmp, mode)  # an ordinary readable file, not a temp file's private mode
        replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Replace ``path``'s content with ``text`` crash-safely."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def remove_stale_temp_files(folder: Path) -> None:
    """Remove the temporary files (or folders) that killed writers left in ``folder``: the ones
    named as ``temp_path_for`` names them, for any target, whose writer (the pid in the name)
    no longer runs. A live process's, this one's included, are left alone. Called by every
    ``atomic_path`` write, so a killed run's leftovers go at the next write beside them."""
    if os.name == "nt" or not folder.is_dir():  # (os.kill(pid, 0) would end the process there)
        return
    with os.scandir(folder) as entries:
        stale = [e for e in entries if _writer_is_gone(e.name)]
    for entry in stale:
        try:
            if entry.is_dir(follow_symlinks=False):  # a killed export's folder
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:  # gone already (another writer's sweep), or not ours to remove
            pass


def _writer_is_gone(name: str) -> bool:
    """Whether ``name`` is a temporary file's name whose writing process has ended."""
    m = _TEMP_NAME.match(name)
    if m is None or int(m.group(2)) == os.getpid():
        return False
    try:
        os.kill(int(m.group(2)), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # alive but another user's (PermissionError); no pid
        pass
    return False
