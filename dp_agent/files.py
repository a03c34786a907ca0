"""Crash-safe file writes, shared by checkpoints, demonstration files and the app's settings:
write a private temporary file next to the target, fsync it, rename it over the target, fsync
the folder. A kill or power loss at any moment leaves either the old file or the new one."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temp_path_for(path: Path) -> Path:
    """A private temporary file next to ``path`` (same filesystem, so the rename is atomic);
    the writer's pid is in the name so that a later writer can tell stale ones."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


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


def remove_stale_temp_files(path: Path) -> None:
    """Remove temporary files left next to ``path`` by writers that were killed."""
    if os.name == "nt" or not path.parent.is_dir():
        return
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.tmp$")
    for entry in path.parent.iterdir():
        m = pattern.match(entry.name)
        if not m or int(m.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            entry.unlink(missing_ok=True)
        except OSError:  # alive but not ours (PermissionError): leave it
            pass
