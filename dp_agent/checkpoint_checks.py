"""What a checkpoint must pass before it is used, the file being untrusted: its header's
config (types, ranges) and env id (a registered id, never a module to import), the config
against the stored tensors' names and shapes before anything is allocated, the tensors against
the digests recorded at save, and finite weights and normaliser statistics."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from dp_agent.config import PolicyConfig, replace_fields

INT8_SCALE = "int8_scale."  # prefix of the per-row scales of a weight stored as int8


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit what it is used with."""


def policy_config_of(d: dict, path) -> PolicyConfig:
    """The header's ``policy_config``, its types, ranges and consistency checked
    (``PolicyConfig.validate``) before any network is built from it."""
    try:
        config = replace_fields(PolicyConfig(), d)
        config.validate()
    except (ValueError, TypeError, KeyError, AttributeError, ZeroDivisionError, OverflowError) as e:
        raise CheckpointError(f"{path}: field 'policy_config': {e}") from None
    return config


def env_id_of(env_id: Any, path) -> str | None:
    """The header's ``env_id``: None or a registered Gymnasium id's form. Gymnasium's
    ``module:Env`` form would import that module when the env is made: refused."""
    if env_id is None:
        return None
    if not isinstance(env_id, str) or ":" in env_id or not 0 < len(env_id) <= 256:
        raise CheckpointError(
            f"{path}: header field 'env_id' is {env_id!r}: not a Gymnasium id (a checkpoint "
            "names a registered env, never a module to import; to use an env that a module "
            "registers, import it yourself, e.g. dp-agent eval --env-module MODULE)"
        )
    return env_id


MAX_HEADER_DEPTH = 16  # a header written by dp-agent nests 6 levels


def depth(value: Any) -> int:
    """How deeply lists and objects nest in a JSON value (without recursion)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        v, d = todo.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if d <= MAX_HEADER_DEPTH:
                todo.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def digests(tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    """SHA-256 of the tensors of each group (``model``, ``train``, ``optim``, ``value``, ...:
    the name's first part, int8 scales with their weights), over names, dtypes, shapes and
    bytes: recorded at save, checked by whatever reads a group (``check_digests``)."""
    hashes: dict[str, Any] = {}
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        group = name.removeprefix(INT8_SCALE).split(".", 1)[0]
        h = hashes.setdefault(group, hashlib.sha256())
        h.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return {group: h.hexdigest() for group, h in hashes.items()}


def check_digests(path, tensors: dict[str, torch.Tensor], recorded: str | None, groups) -> None:
    """Raise CheckpointError when the ``groups`` of ``tensors`` (as read) differ from the
    digests recorded at save; files written before digests (no ``recorded``) pass."""
    if recorded is None:
        return
    try:
        expected = json.loads(recorded)
        assert isinstance(expected, dict)
    except (ValueError, RecursionError, AssertionError):
        raise CheckpointError(f"{path}: metadata field 'digest' is not readable") from None
    actual = digests(tensors)
    for group in groups:
        if expected.get(group) != actual.get(group):
            raise CheckpointError(
                f"{path}: the tensors under '{group}.' do not match the digest recorded when "
                "the file was written: the file is damaged"
            )


def check_weights(path: str | Path, config: PolicyConfig) -> None:
    """Raise CheckpointError, naming the first tensor that differs, unless the ``model.``
    tensors stored in ``path`` (names and shapes, read from the file's index, no data) are
    exactly those of the network ``config`` describes (built on the ``meta`` device, which
    allocates nothing): a header cannot make the loader build a network of any other size."""
    from dp_agent.policy import DiffusionPolicy

    try:
        config.validate()  # here, not on the meta device: the samplers' tables need values
        skeleton = dataclasses.replace(config)
        skeleton.validate = lambda: None  # (checked just above)
        with torch.device("meta"):
            expected = DiffusionPolicy(skeleton).state_dict()
    except (ValueError, TypeError, RuntimeError, ZeroDivisionError, NotImplementedError) as e:
        raise CheckpointError(
            f"{path}: field 'policy_config' or the weights do not fit: the config describes "
            f"no network ({e})"
        ) from None
    stored = stored_shapes(path, "model.")
    for name, shape in stored_shapes(path, INT8_SCALE + "model.").items():
        if name not in stored:  # as dequantize_int8 says it
            raise CheckpointError(
                f"{path}: tensor {INT8_SCALE + 'model.' + name!r} is a scale for an int8 tensor "
                f"{'model.' + name!r} with {math.prod(shape)} rows, but {'model.' + name!r} is "
                "missing"
            )
    for name, tensor in expected.items():
        shape = stored.get(name)
        if shape != tuple(tensor.shape):
            found = "missing" if shape is None else f"of shape {list(shape)}"
            raise CheckpointError(
                f"{path}: field 'policy_config' or the weights do not fit: tensor "
                f"'model.{name}' should have shape {list(tensor.shape)}, but is {found}"
            )
    for name in sorted(stored.keys() - expected.keys()):
        raise CheckpointError(
            f"{path}: field 'policy_config' or the weights do not fit: tensor 'model.{name}' "
            "is not part of the network the config describes"
        )


def stored_shapes(path: str | Path, prefix: str) -> dict[str, tuple[int, ...]]:
    """The shapes of the tensors under ``prefix`` (prefix removed; int8 scales left out),
    from the file's index without reading any data."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {
                k[len(prefix) :]: tuple(f.get_slice(k).get_shape())
                for k in f.keys()
                if k.startswith(prefix)
            }
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a safetensors checkpoint ({e})") from None


def check_finite(path: str | Path, tensors: dict[str, torch.Tensor], prefix: str = "") -> None:
    """Raise CheckpointError naming the first floating-point tensor that holds NaN or inf
    (damaged weights, or normaliser statistics that would turn every action into NaN)."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            what = "normaliser statistics" if "normalizer" in name else "weights"
            raise CheckpointError(
                f"{path}: tensor '{prefix}{name}' holds NaN or infinite values (damaged "
                f"{what}); the file cannot be used"
            )


def space_to_dict(space: gym.Space) -> dict[str, Any]:
    """A Box, or a Dict of Boxes, as JSON (image parts by shape and bounds, not every pixel)."""
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_dict(s) for k, s in space.spaces.items()}}
    if isinstance(space, gym.spaces.Box):
        dtype = str(space.dtype)
        low, high = space.low.flat[0], space.high.flat[0]
        if space.dtype == np.uint8 and np.all(space.low == low) and np.all(space.high == high):
            # an image: the same bounds everywhere
            shape = list(space.shape)
            return {
                "type": "Box",
                "shape": shape,
                "low": low.item(),
                "high": high.item(),
                "dtype": dtype,
            }
        return {
            "type": "Box",
            "low": space.low.tolist(),
            "high": space.high.tolist(),
            "dtype": dtype,
        }
    raise CheckpointError(f"only Box and Dict spaces can be stored in a checkpoint, got {space}")


MAX_SPACE_VALUES = 1 << 26  # values of one space's part (a 4K RGB image is 25 M)


def space_from_dict(d: dict[str, Any]) -> gym.Space:
    """The space ``space_to_dict`` wrote; a declared shape is checked (at most
    ``MAX_SPACE_VALUES`` values) before anything of that size is allocated."""
    if d.get("type") == "Dict":
        return gym.spaces.Dict({k: space_from_dict(s) for k, s in d["spaces"].items()})
    if d.get("type") != "Box":
        raise CheckpointError(f"unsupported space in checkpoint: {d.get('type')!r}")
    dtype = np.dtype(d["dtype"])
    if dtype.kind not in "iuf":
        raise ValueError(f"dtype {dtype} is not a number type")
    if "shape" in d:
        shape = d["shape"]
        if not isinstance(shape, list) or not all(
            isinstance(n, int) and 0 < n <= MAX_SPACE_VALUES for n in shape
        ):
            raise ValueError(f"shape {shape!r} is not a list of positive sizes")
        if math.prod(shape) > MAX_SPACE_VALUES:
            raise ValueError(f"shape {shape} holds more than {MAX_SPACE_VALUES} values")
        for bound in ("low", "high"):
            if not isinstance(d[bound], (int, float)):
                raise ValueError(f"{bound} of an image space must be one number")
        return gym.spaces.Box(d["low"], d["high"], tuple(shape), dtype)
    for bound in ("low", "high"):
        if not isinstance(d[bound], list) or len(d[bound]) > MAX_SPACE_VALUES:
            raise ValueError(f"{bound} must be a list of at most {MAX_SPACE_VALUES} numbers")
    low = np.asarray(d["low"], dtype=dtype)
    return gym.spaces.Box(low, np.asarray(d["high"], dtype=dtype), low.shape, dtype)


def space_of(d: Any, path, name: str) -> gym.Space:
    try:
        return space_from_dict(d)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
        raise CheckpointError(f"{path}: header field {name!r} is not a space ({e})") from None


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
