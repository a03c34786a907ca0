"""Persistence in one place: a policy checkpoint is one safetensors file holding the weights
(normaliser statistics included) and a typed JSON header (``Header``: config, spaces, env id and
kwargs, training metadata, optional planner and distillation sections); resumable training state
(raw weights, optimiser) rides along under its own prefixes. Loading never unpickles anything,
never imports a module the file names, and checks the file (``dp_agent.checkpoint_checks``:
its header, its config against its tensors before allocating, digests, finite values)."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import torch

from dp_agent.checkpoint_checks import (
    INT8_SCALE,
    MAX_HEADER_DEPTH,
    CheckpointError,
    check_digests,
    check_finite,
    check_spaces,
    check_weights,
    depth,
    digests,
    env_id_of,
    policy_config_of,
    space_from_dict,
    space_of,
    space_to_dict,
    stored_shapes,
)
from dp_agent.config import MAX_WIDTH, PolicyConfig, type_problem
from dp_agent.files import atomic_path

__all__ = [  # defined in dp_agent.checkpoint_checks, used through this module
    "CheckpointError",
    "check_finite",
    "check_spaces",
    "check_weights",
    "space_from_dict",
    "space_to_dict",
    "stored_shapes",
]

if TYPE_CHECKING:
    from dp_agent.policy import DiffusionPolicy

FORMAT = "dp-agent/1"


# ----------------------------------------------------------------------------------------------
# The header


@dataclass
class DistillInfo:
    """How a distilled student was made: its teacher, data, round and ``DistillConfig``."""

    teacher: str
    round_steps: int  # the student steps of the round that made it
    round_step: int  # updates into that round
    config: dict[str, Any]  # the DistillConfig's fields, as given
    demos: str | None = None  # the data it was distilled on (before 0.2: the teacher's)


@dataclass
class TrainingInfo:
    """What produced the weights (all optional: a policy built in code has none of it)."""

    step: int | None = None
    total_steps: int | None = None
    seconds: float | None = None
    demos: str | None = None
    num_episodes: int | None = None
    num_samples: int | None = None
    device: str | None = None
    train_config: dict[str, Any] | None = None  # the TrainConfig's fields, as given
    distill: DistillInfo | None = None

    @classmethod
    def from_dict(cls, d: Any, path: str | Path = "checkpoint") -> TrainingInfo:
        d = _fields(cls, d, path, "training")
        if d.get("distill") is not None:
            d["distill"] = DistillInfo(
                **_fields(DistillInfo, d["distill"], path, "training.distill")
            )
        return cls(**d)


@dataclass
class PlannerInfo:
    """A planner's column layout: which entries of the (H, Ds+Da) trajectory are the state, the
    action, the goal position and the velocity; its observation keys; the env's own spaces."""

    state_dims: list[int]  # [first, end) columns
    action_dims: list[int]
    goal_dim: int
    position_dims: list[int]  # of the state: what the goal fixes at step H-1
    velocity_dims: list[int]
    state_key: str | None
    goal_key: str | None
    config: dict[str, Any]  # the PlannerConfig's fields
    env_spaces: tuple[gym.Space, gym.Space] | None = None  # (observation, action), when known

    @classmethod
    def from_dict(cls, d: Any, path: str | Path = "checkpoint") -> PlannerInfo:
        d = _fields(cls, d, path, "planner")
        if d.get("env_spaces"):
            d["env_spaces"] = tuple(
                space_of(s, path, "planner.env_spaces") for s in d["env_spaces"]
            )
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        spaces = self.env_spaces and [space_to_dict(s) for s in self.env_spaces]
        return {**dataclasses.asdict(self), "env_spaces": spaces}


@dataclass
class ValueInfo:
    """The shape of a planner's value network (``dp_agent.guides.ValueNet``)."""

    dim: int
    width: int
    step_embed_dim: int


@dataclass
class Header:
    """A checkpoint's header: what the weights are (``policy_config``), what they act in, how
    they were made, and the optional planner, value and optimiser sections."""

    policy_config: PolicyConfig
    observation_space: gym.Space
    action_space: gym.Space
    env_id: str | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    training: TrainingInfo = field(default_factory=TrainingInfo)
    planner: PlannerInfo | None = None
    value: ValueInfo | None = None
    optimizer: dict[str, Any] | None = None  # resumable state: param groups and scalars

    def to_dict(self) -> dict[str, Any]:
        """The header as JSON values (absent sections left out)."""
        out = {
            "policy_config": dataclasses.asdict(self.policy_config),
            "observation_space": space_to_dict(self.observation_space),
            "action_space": space_to_dict(self.action_space),
            "env_id": self.env_id,
            "env_kwargs": dict(self.env_kwargs),
            "training": _without_none(dataclasses.asdict(self.training)),
        }
        if self.planner is not None:
            out["planner"] = self.planner.to_dict()
        if self.value is not None:
            out["value"] = dataclasses.asdict(self.value)
        if self.optimizer is not None:
            out["optimizer"] = self.optimizer
        return out

    @classmethod
    def from_dict(cls, d: Any, path: str | Path = "checkpoint") -> Header:
        """Read a header as written by ``to_dict`` (or by earlier versions); a missing or
        unknown field raises CheckpointError naming the file and the field."""
        try:
            return cls._from_dict(d, path)
        except RecursionError:
            raise CheckpointError(f"{path}: the header is nested too deeply") from None

    @classmethod
    def _from_dict(cls, d: Any, path) -> Header:
        d = _fields(cls, d, path)
        d["policy_config"] = policy_config_of(_dict(d, "policy_config", path), path)
        for name in ("observation_space", "action_space"):
            d[name] = space_of(_dict(d, name, path), path, name)
        d["env_id"] = env_id_of(d.get("env_id"), path)
        d["env_kwargs"] = d.get("env_kwargs") or {}
        if not isinstance(d["env_kwargs"], dict):
            raise CheckpointError(f"{path}: header field 'env_kwargs' is not an object")
        d["training"] = TrainingInfo.from_dict(d.get("training") or {}, path)
        if d.get("planner") is not None:
            d["planner"] = PlannerInfo.from_dict(d["planner"], path)
        if d.get("value") is not None:
            d["value"] = ValueInfo(**_fields(ValueInfo, d["value"], path, "value"))
            for name, n in dataclasses.asdict(d["value"]).items():
                if not isinstance(n, int) or not 1 <= n <= MAX_WIDTH:
                    raise CheckpointError(
                        f"{path}: header field 'value.{name}' must be an integer in "
                        f"[1, {MAX_WIDTH}], got {n!r}"
                    )
        return cls(**d)


def _fields(cls, d: Any, path, where: str = "") -> dict[str, Any]:
    """``d`` checked to be an object holding every required field of ``cls`` and no other
    (``where``: the section's name, "" for the header itself)."""
    if not isinstance(d, dict):
        raise CheckpointError(f"{path}: header field {where!r} is not an object")
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in d:
        if key not in known:
            name = f"{where}.{key}" if where else key
            raise CheckpointError(
                f"{path}: header field {name!r} is not one this version of dp-agent knows"
            )
    hints = typing.get_type_hints(cls)
    for key, f in known.items():
        name = f"{where}.{key}" if where else key
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and key not in d:
            raise CheckpointError(f"{path}: header field {name!r} is missing")
        problem = type_problem(d[key], hints[key]) if key in d else None
        if problem and not (d[key] is None and not required):
            raise CheckpointError(f"{path}: header field {name!r} {problem}, got {d[key]!r:.60}")
    return dict(d)


def _dict(d: dict, name: str, path) -> dict:
    if not isinstance(d.get(name), dict):
        raise CheckpointError(f"{path}: header field {name!r} is missing or not an object")
    return d[name]


def _without_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def write_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], header: Header) -> Path:
    """Write ``tensors`` and ``header`` crash-safely (``dp_agent.files.atomic_path``)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    metadata = {"format": FORMAT, "header": json.dumps(header.to_dict())}
    metadata["digest"] = json.dumps(digests(tensors))
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


def read_header(path: str | Path) -> Header:
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
    except (KeyError, ValueError, RecursionError) as e:  # huge integers, deep nesting too
        reason = "nested too deeply" if isinstance(e, RecursionError) else e
        raise CheckpointError(
            f"{path}: metadata field 'header' is not valid JSON ({reason})"
        ) from None
    if depth(header) > MAX_HEADER_DEPTH:
        raise CheckpointError(
            f"{path}: metadata field 'header' nests deeper than {MAX_HEADER_DEPTH} levels"
        )
    return Header.from_dict(header, path)


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """-> (every tensor, float32 where stored as int8, and the ``Header``). Raises
    CheckpointError with the file name for anything unreadable."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    header = read_header(path)
    try:
        tensors = load_file(str(path), device=str(device))
        with safe_open(str(path), framework="pt") as f:
            recorded = (f.metadata() or {}).get("digest")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a safetensors checkpoint ({e})") from None
    groups = {k.removeprefix(INT8_SCALE).split(".", 1)[0] for k in tensors}
    check_digests(path, tensors, recorded, sorted(groups))
    return dequantize_int8(tensors, path), header


def read_tensors(path: str | Path, prefix: str, device: str | torch.device = "cpu"):
    """The tensors under ``prefix.`` (prefix removed) as float32 where floating point, read
    without loading the rest of the file (the training state of ``last.safetensors``)."""
    from safetensors import SafetensorError, safe_open

    def wanted(k: str) -> bool:
        return k.startswith(prefix + ".") or k.startswith(INT8_SCALE + prefix + ".")

    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            raw = {k: f.get_tensor(k) for k in f.keys() if wanted(k)}
            recorded = (f.metadata() or {}).get("digest")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a safetensors checkpoint ({e})") from None
    tensors = prefixed(dequantize_int8(raw, path), prefix)
    check_digests(path, raw, recorded, [prefix])
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}


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
    observation_space: gym.Space,
    action_space: gym.Space,
    env_id: str | None,
    training: TrainingInfo | dict | None = None,
    *,
    env_kwargs: dict[str, Any] | None = None,
    half: bool = False,
    int8: bool = False,
) -> Path:
    """Write a policy checkpoint; ``half`` stores floating-point weights as float16, ``int8``
    its matrices as int8 with a scale per row (``quantize_int8``; about a quarter of float32);
    the normaliser statistics stay float32: they set the units."""
    if not isinstance(training, TrainingInfo):  # a dict, as earlier versions held it, or None
        training = TrainingInfo.from_dict(training or {}, path)
    header = Header(
        policy.config, observation_space, action_space, env_id, env_kwargs or {}, training
    )
    return save(path, policy, header, half=half, int8=int8)


def save(
    path: str | Path,
    policy: DiffusionPolicy,
    header: Header,
    *,
    half: bool = False,
    int8: bool = False,
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``policy``'s weights (under ``model.``) with ``header`` (its config the policy's),
    and ``extra_tensors`` (a value network, resumable training state) beside them."""
    header = dataclasses.replace(header, policy_config=policy.config)
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
    """-> (policy in eval mode on ``device``, ``Header``): the one way a checkpoint becomes a
    model (policies, planners' trajectory models, distillation students and teachers). The
    config is checked against the tensors (names and shapes) before the weights are used."""
    from dp_agent.policy import DiffusionPolicy

    header = read_header(path)
    check_weights(path, header.policy_config)
    weights = read_tensors(path, "model", device)
    try:
        policy = DiffusionPolicy(header.policy_config)
        policy.load_state_dict(weights)
    except (ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path}: field 'policy_config' or the weights do not fit ({e})"
        ) from None
    return policy.to(device).eval(), header


# ----------------------------------------------------------------------------------------------
# Resumable training state: the EMA policy (what inference loads, under ``model.``), plus the raw
# weights (``train.``), the optimiser (``optim.``) and the batch generator (``rng.``)


def save_training_state(
    path: str | Path,
    ema: DiffusionPolicy,
    header: Header,
    state: tuple[torch.nn.Module, torch.optim.Optimizer, torch.Generator] | None,
) -> Path:
    """A checkpoint of the EMA policy; with ``state`` = (model, optimizer, generator) also all
    that ``load_training_state`` needs to go on exactly where training stopped."""
    if state is None:
        return save(path, ema, header)
    model, optimizer, generator = state
    opt_tensors, opt_header = optimizer_to_flat(optimizer)
    extra = {f"train.{k}": v for k, v in model.state_dict().items()}
    extra |= {f"optim.{k}": v for k, v in opt_tensors.items()}
    extra["rng.generator"] = generator.get_state()
    header = dataclasses.replace(header, optimizer=opt_header)
    return save(path, ema, header, extra_tensors=extra)


def load_training_state(
    path: str | Path,
    model: torch.nn.Module,
    ema: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> TrainingInfo:
    """Restore what ``save_training_state`` wrote into the given objects; -> its ``training``
    section (step, seconds, ...)."""
    tensors, header = read_checkpoint(path)
    training = header.training
    try:
        model.load_state_dict(prefixed(tensors, "train"))
        ema.load_state_dict(prefixed(tensors, "model"))
        optimizer_from_flat(optimizer, prefixed(tensors, "optim"), header.optimizer)
        if "rng.generator" in tensors:  # checkpoints before 0.2 re-seed instead
            generator.set_state(tensors["rng.generator"])
        else:
            generator.manual_seed(training.train_config["seed"] + training.step)
        int(training.step)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path}: cannot resume from this checkpoint (missing or bad field: {e})"
        ) from None
    return training
