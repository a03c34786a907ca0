"""Checkpoints: one safetensors file with the weights and a JSON header (config, normaliser
statistics live in the weights, spaces, training metadata). Loading never unpickles anything."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

FORMAT = "dp-agent/1"
REQUIRED_HEADER = ("policy_config", "observation_space", "action_space", "training")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit what it is used with."""


def space_to_dict(space: gym.Space) -> dict[str, Any]:
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "low": space.low.tolist(),
            "high": space.high.tolist(),
            "dtype": str(space.dtype),
        }
    raise CheckpointError(f"only Box spaces can be stored in a checkpoint, got {space}")


def space_from_dict(d: dict[str, Any]) -> gym.spaces.Box:
    if d.get("type") != "Box":
        raise CheckpointError(f"unsupported space in checkpoint: {d.get('type')!r}")
    dtype = np.dtype(d["dtype"])
    low = np.asarray(d["low"], dtype=dtype)
    return gym.spaces.Box(low, np.asarray(d["high"], dtype=dtype), low.shape, dtype)


def write_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], header: dict) -> Path:
    """Write atomically: a temporary file in the same folder, fsync, then rename over ``path``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    metadata = {"format": FORMAT, "header": json.dumps(header)}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o644)  # an ordinary readable file, not a temp file's private mode
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """-> (tensors, header). Raises CheckpointError with the file name for anything unreadable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a safetensors checkpoint ({e})") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: metadata field 'format' is {metadata.get('format')!r}, expected {FORMAT!r} "
            "(not a dp-agent checkpoint)"
        )
    try:
        header = json.loads(metadata["header"])
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: metadata field 'header' is not valid JSON ({e})") from None
    for field in REQUIRED_HEADER:
        if not isinstance(header.get(field), dict):
            raise CheckpointError(f"{path}: header field {field!r} is missing or not an object")
    return tensors, header


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under ``prefix.`` with the prefix removed."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state as flat tensors plus a JSON-able description (no pickle)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    for name, value in meta["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
