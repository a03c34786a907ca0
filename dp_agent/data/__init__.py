"""Demonstration data: the HDF5 store (robomimic layout, journaled appends), the LeRobot
converter and the lookup of the files that ship with the package.

``from dp_agent.data import DemoWriter, DemoReader, DemoError, Episode``; light to import (h5py,
numpy and ``dp_agent.files``; no torch). A damaged or invalid file raises DemoError (a ValueError)
naming the file and the group or dataset concerned; so does a file that would make the store read
outside it (external links or storage, virtual datasets, soft links out of their episode) or
allocate more than it stores (a declared shape beyond its stored bytes).

The store: ``layout`` (the file layout, Episode and the structure checks), ``errors``
(DemoError), ``journal`` (pending appends beside a file), ``reader`` (DemoReader) and ``writer``
(DemoWriter). LeRobot datasets: ``lerobot_format`` (what both directions share),
``lerobot_meta`` and ``lerobot_import`` (reading one), ``lerobot_export`` (writing one); they
need the optional ``[lerobot]`` extra and are not imported here. ``shipped``: the files that ship.
"""

from .errors import DatasetError, DemoError
from .layout import GYM_ENV_TYPE, Episode, stack_obs
from .reader import DemoReader
from .writer import DemoWriter

__all__ = [
    "GYM_ENV_TYPE",
    "DatasetError",
    "DemoError",
    "DemoReader",
    "DemoWriter",
    "Episode",
    "stack_obs",
]
