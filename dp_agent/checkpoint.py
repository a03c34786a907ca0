"""Persistence in one place: a policy checkpoint is one safetensors file holding the weights
(normaliser statistics included) and a JSON header (config, spaces, env id and kwargs, training
metadata); resumable training state (raw weights, optimiser) rides along under its own prefixes.
Loading never unpickles anything. Also: checking a checkpoint's spaces against an env."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch

from dp_agent.files import atomic_path

if TYPE_CHECKING:
    from dp_agent.policy import DiffusionPolicy

FORMAT = "dp-agent/1"
REQUIRED_HEADER = ("policy_config", "observation_space", "action_space", "training")
INT8_SCALE = "int8_scale."  # prefix of the per-row scales of a weight stored as int8


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit what it is used with."""


def space_to_dict(space: gym.Space) -> dict[str, Any]:
    """A Box, or a Dict of Boxes, as JSON (image parts by shape and bounds, not every pixel)."""
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_dict(s) for k, s in space.spaces.items()}}
    if isinstance(space, gym.spaces.Box):
        uniform = (
            space.dtype == np.uint8
            and np.all(space.low == space.low.flat[0])
            and np.all(space.high == space.high.flat[0])
        )
        if uniform:  # an image: the same bounds everywhere
            return {"type": "Box", "shape": list(space.shape), "low": space.low.flat[0].item(),
                    "high": space.high.flat[0].item(), "dtype": str(space.dtype)}  # fmt: skip
        return {"type": "Box", "low": space.low.tolist(), "high": space.high.tolist(),
                "dtype": str(space.dtype)}  # fmt: skip
    raise CheckpointError(f"only Box and Dict spaces can be stored in a checkpoint, got {space}")


def space_from_dict(d: dict[str, Any]) -> gym.Space:
    if d.get("type") == "Dict":
        return gym.spaces.Dict({k: space_from_dict(s) for k, s in d["spaces"].items()})
    if d.get("type") != "Box":
        raise CheckpointError(f"unsupported space in checkpoint: {d.get('type')!r}")
    dtype = np.dtype(d["dtype"])
    if "shape" in d:
        return gym.spaces.Box(d["low"], d["high"], tuple(d["shape"]), dtype)
    low = np.asarray(d["low"], dtype=dtype)
    return gym.spaces.Box(low, np.asarray(d["high"], dtype=dtype), low.shape, dtype)


def write_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], header: dict) -> Path:
    """Write ``tensors`` and ``header`` crash-safely (``dp_agent.files.atomic_path``)."""
    from safetensors.torch import save_file

    metadata = {"format": FORMAT, "header": json.dumps(header)}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


def read_header(path: str | Path) -> dict:
    """The header of a checkpoint, read from its metadata without loading its tensors. Raises
    CheckpointError with the file name for anything unreadable."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
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
    return header


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """-> (tensors, header). Raises CheckpointError with the file name for anything unreadable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    header = read_header(path)
    try:
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a safetensors checkpoint ({e})") from None
    return dequantize_int8(tensors, path), header


def stored_dtypes(path: str | Path, prefix: str = "model.") -> dict[str, float]:
    """The share of the policy's values stored in each dtype ("F32", "F16", "I8", ...), read
    from the file's index without loading it (``read_checkpoint`` returns float32 weights)."""
    from safetensors import safe_open

    counts: dict[str, int] = {}
    with safe_open(str(path), framework="pt") as f:
        for k in f.keys():
            if k.startswith(prefix):
                tensor = f.get_slice(k)
                n = math.prod(tensor.get_shape())  # 1 for a scalar
                counts[tensor.get_dtype()] = counts.get(tensor.get_dtype(), 0) + n
    total = sum(counts.values()) or 1
    return {k: v / total for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}


def quantize_int8(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weight-only int8 for storage: every floating-point matrix or kernel (2-D or more, at
    least 256 values) becomes int8 with one float32 scale per row along its first axis
    (symmetric, max-abs / 127, so no weight moves by more than half a step of its row); smaller
    tensors (biases, norms) become float16; the normaliser statistics and integer tensors stay as
    they are. ``dequantize_int8`` undoes it on load."""
    out = {}
    for k, v in tensors.items():
        if not v.is_floating_point() or "normalizer" in k:
            out[k] = v
        elif v.ndim >= 2 and v.numel() >= 256:
            rows = v.detach().float().reshape(v.shape[0], -1)
            scale = rows.abs().amax(1).clamp_min(1e-30) / 127.0
            out[k] = torch.round(rows / scale[:, None]).to(torch.int8).reshape(v.shape)
            out[INT8_SCALE + k] = scale
        else:
            out[k] = v.half()
    return out


def dequantize_int8(tensors: dict[str, torch.Tensor], path="checkpoint") -> dict[str, torch.Tensor]:
    """Float32 weights back from ``quantize_int8``'s int8 rows and scales (others unchanged)."""
    scales = {k[len(INT8_SCALE) :]: v for k, v in tensors.items() if k.startswith(INT8_SCALE)}
    if not scales:
        return tensors
    out = {k: v for k, v in tensors.items() if not k.startswith(INT8_SCALE)}
    for k, scale in scales.items():
        q = out.get(k)
        if q is None or q.dtype != torch.int8 or scale.shape != (q.shape[0],):
            raise CheckpointError(
                f"{path}: tensor {INT8_SCALE + k!r} is a scale for an int8 tensor {k!r} with "
                f"{scale.numel()} rows, but {k!r} is "
                + ("missing" if q is None else f"{q.dtype} of shape {tuple(q.shape)}")
            )
        out[k] = q.float() * scale.float().view(-1, *([1] * (q.ndim - 1)))
    return out


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


# ----------------------------------------------------------------------------------------------
# Policies


def save_policy(
    path: str | Path,
    policy: DiffusionPolicy,
    observation_space: gym.spaces.Box,
    action_space: gym.spaces.Box,
    env_id: str | None,
    training: dict[str, Any] | None = None,
    *,
    env_kwargs: dict[str, Any] | None = None,
    half: bool = False,
    int8: bool = False,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    extra_header: dict[str, Any] | None = None,
) -> Path:
    """Write a policy checkpoint (weights under ``model.``); ``half`` stores floating-point
    weights as float16, ``int8`` its matrices as int8 with a scale per row (``quantize_int8``;
    about a quarter of float32); the normaliser statistics stay float32: they set the units."""
    header = {
        "policy_config": dataclasses.asdict(policy.config),
        "observation_space": space_to_dict(observation_space),
        "action_space": space_to_dict(action_space),
        "env_id": env_id,
        "env_kwargs": env_kwargs or {},
        "training": training or {},
        **(extra_header or {}),
    }
    tensors = {f"model.{k}": v for k, v in policy.state_dict().items()}
    if half:
        tensors = {
            k: v.half() if v.is_floating_point() and "normalizer" not in k else v
            for k, v in tensors.items()
        }
    if int8:
        tensors = quantize_int8(tensors)
    return write_checkpoint(path, {**tensors, **(extra_tensors or {})}, header)


def load_policy(path: str | Path, device: str | torch.device = "cpu"):
    """-> (policy in eval mode on ``device``, header)."""
    from dp_agent.config import PolicyConfig, replace_fields
    from dp_agent.policy import DiffusionPolicy

    tensors, header = read_checkpoint(path, device)
    try:
        policy = DiffusionPolicy(replace_fields(PolicyConfig(), header["policy_config"]))
        weights = {
            k: v.float() if v.is_floating_point() else v
            for k, v in prefixed(tensors, "model").items()
        }
        policy.load_state_dict(weights)
    except (KeyError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path}: field 'policy_config' or the weights do not fit ({e})"
        ) from None
    return policy.to(device).eval(), header


def check_spaces(path, obs_spec, act_space, env: gym.Env, env_id: str | None) -> None:
    """Raise CheckpointError when an env's spaces differ from the checkpoint's: observations by
    part (``obs_spec``, naming the part that differs), actions by shape."""
    from dp_agent.observations import ObservationError

    try:
        obs_spec.check_space(env.observation_space, f"field 'observation_space' ({env_id!r})")
    except ObservationError as e:
        raise CheckpointError(f"{path}: {e}") from None
    theirs = env.action_space
    if not isinstance(theirs, gym.spaces.Box) or theirs.shape != act_space.shape:
        raise CheckpointError(
            f"{path}: field 'action_space' has shape {act_space.shape} (trained on {env_id!r}), "
            f"but the env's action_space is {theirs}"
        )


# ----------------------------------------------------------------------------------------------
# Resumable training state: the EMA policy (what inference loads, under ``model.``), plus the raw
# weights (``train.``), the optimiser (``optim.``) and the batch generator (``rng.``)


def save_training_state(
    path: str | Path,
    ema: DiffusionPolicy,
    observation_space: gym.spaces.Box,
    action_space: gym.spaces.Box,
    env_id: str | None,
    training: dict[str, Any],
    env_kwargs: dict[str, Any],
    state: tuple[torch.nn.Module, torch.optim.Optimizer, torch.Generator] | None,
) -> Path:
    """A checkpoint of the EMA policy; with ``state`` = (model, optimizer, generator) also all
    that ``load_training_state`` needs to go on exactly where training stopped."""
    extra, header = {}, {}
    if state is not None:
        model, optimizer, generator = state
        opt_tensors, header["optimizer"] = optimizer_to_flat(optimizer)
        extra = {f"train.{k}": v for k, v in model.state_dict().items()}
        extra |= {f"optim.{k}": v for k, v in opt_tensors.items()}
        extra["rng.generator"] = generator.get_state()
    return save_policy(
        path,
        ema,
        observation_space,
        action_space,
        env_id,
        training,
        env_kwargs=env_kwargs,
        extra_tensors=extra,
        extra_header=header,
    )


def load_training_state(
    path: str | Path,
    model: torch.nn.Module,
    ema: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> dict[str, Any]:
    """Restore what ``save_training_state`` wrote into the given objects; -> its "training"
    header (step, seconds, ...)."""
    tensors, header = read_checkpoint(path)
    try:
        model.load_state_dict(prefixed(tensors, "train"))
        ema.load_state_dict(prefixed(tensors, "model"))
        optimizer_from_flat(optimizer, prefixed(tensors, "optim"), header["optimizer"])
        if "rng.generator" in tensors:  # checkpoints before 0.2 re-seed instead
            generator.set_state(tensors["rng.generator"])
        else:
            tr = header["training"]
            generator.manual_seed(tr["train_config"]["seed"] + tr["step"])
        int(header["training"]["step"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path}: cannot resume from this checkpoint (missing or bad field: {e})"
        ) from None
    return header["training"]
