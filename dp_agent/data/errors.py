"""DemoError, the one exception for a bad demonstration file, and the translation of h5py's
exceptions into it.

Damage: every h5py call of the store runs inside ``_hdf5_errors``, so a damaged file or journal
entry (truncated, overwritten bytes) gives one DemoError naming that file and the group or dataset
being read, whichever of h5py's exceptions the broken structure led to.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["DatasetError", "DemoError"]


class DemoError(ValueError):
    """A bad demonstration file or episode; the message names the file, the field and what was
    expected."""


def _error(path: str | os.PathLike, where: str, what: str) -> DemoError:
    return DemoError(f"{path}: {where}: {what}")


# h5py reports a damaged file with whichever exception the broken structure leads to: OSError
# (an unreadable header or chunk), KeyError (a link that no longer resolves), RuntimeError,
# ValueError or TypeError (nonsense in a header or an attribute).
_HDF5_ERRORS = (OSError, KeyError, RuntimeError, ValueError, TypeError)


def _one_line(exc: BaseException) -> str:
    # str(KeyError) adds quotes; HDF5 messages may span lines, and the CLI prints one line
    text = exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str) else str(exc)
    return " ".join(text.split()) or type(exc).__name__


@contextmanager
def _hdf5_errors(path: Path, where: str, doing: str = "read") -> Iterator[None]:
    """The store's h5py calls run inside this: an h5py exception becomes one DemoError naming the
    file and ``where`` (the group or dataset being read or written); DemoErrors pass unchanged."""
    try:
        yield
    except DemoError:
        raise
    except _HDF5_ERRORS as exc:
        if doing == "read":
            what = f"damaged or unreadable HDF5 file, cannot read it ({_one_line(exc)})"
        else:
            what = f"cannot be {doing}, the file is unchanged ({_one_line(exc)}); is it damaged?"
        raise _error(path, where, what) from exc


class DatasetError(DemoError):
    """A bad LeRobot dataset folder (``dp_agent.data.lerobot_*``): a damaged or missing file, a
    path that leaves the folder, a bad template; the message names the file and the field. A
    DemoError, so code (and the CLI) that catches DemoError catches it too."""
