"""Demonstration files: the HDF5 store (robomimic layout) and the shipped demo files.

``from dp_agent.demos import DemoWriter, DemoReader, DemoError, Episode``; light to import (h5py
and numpy only).
"""

from .store import GYM_ENV_TYPE, DemoError, DemoReader, DemoWriter, Episode, stack_obs

__all__ = ["GYM_ENV_TYPE", "DemoError", "DemoReader", "DemoWriter", "Episode", "stack_obs"]
