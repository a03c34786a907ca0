"""Demonstration data: the HDF5 store (robomimic layout, journaled appends), the LeRobot
converter and the lookup of the files that ship with the package.

``from dp_agent.data import DemoWriter, DemoReader, DemoError, Episode``; light to import (h5py,
numpy and ``dp_agent.files``; no torch). A damaged or invalid file raises DemoError (a ValueError)
naming the file and the group or dataset concerned.
"""

from .store import GYM_ENV_TYPE, DemoError, DemoReader, DemoWriter, Episode, stack_obs

__all__ = ["GYM_ENV_TYPE", "DemoError", "DemoReader", "DemoWriter", "Episode", "stack_obs"]
