"""Demonstration files: the HDF5 store (robomimic layout) and the shipped demo files.

``from dp_agent.demos import DemoWriter, DemoReader, DemoError, Episode``; light to import (h5py,
numpy and ``dp_agent.files``; no torch). A damaged or invalid file raises DemoError (a ValueError)
naming the file and the group or dataset concerned.
"""

from .store import GYM_ENV_TYPE, DemoError, DemoReader, DemoWriter, Episode, stack_obs

__all__ = ["GYM_ENV_TYPE", "DemoError", "DemoReader", "DemoWriter", "Episode", "stack_obs"]
