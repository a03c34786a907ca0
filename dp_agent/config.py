"""Configuration dataclasses, one family: what a policy is (``PolicyConfig``), and how the one
training loop optimises (``OptimConfig``, shared by ``TrainConfig`` for policies and planners
and ``DistillConfig`` for distillation, with one validation); the named presets. The
``dp-agent`` flags are generated from these fields (``dp_agent.cli.flags``)."""

from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from dataclasses import dataclass, field
from typing import Any


def option(
    default,
    help: str = "",
    *,
    flag: str | None = None,
    choices=None,
    min: float | None = None,
    max: float | None = None,
):
    """A config field with what its command-line flag needs (``dp_agent.cli.flags``): the help
    text, the flag's name where it is not ``--field-name``, the allowed values, and the range
    ``[min, max]`` of a number (of each number of a tuple), which both the flag and
    ``check_fields`` (every config's ``validate``) enforce."""
    meta = {"help": help, "flag": flag, "choices": choices, "min": min, "max": max}
    return field(default=default, metadata=meta)


def metadata_of(cls, name: str) -> dict:
    """A field's ``option`` metadata, from the class that last gave it some (a subclass may
    change a field's default alone)."""
    for klass in cls.__mro__:
        for f in dataclasses.fields(klass) if dataclasses.is_dataclass(klass) else ():
            if f.name == name and f.metadata:
                return dict(f.metadata)
    return {}


def out_of_range(value, meta: dict) -> str | None:
    """Why ``value`` is outside its field's ``[min, max]`` (NaN is never inside), else None."""
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and not value >= lo:
        return f"must be at least {lo}" + (f" and at most {hi}" if hi is not None else "")
    if hi is not None and not value <= hi:
        return f"must be at most {hi}" + (f" and at least {lo}" if lo is not None else "")
    return None


def check_fields(cfg) -> None:
    """Raise ValueError for a field of ``cfg`` whose value is not of its declared type (int,
    float, str, bool, a tuple of them, or None where allowed) or outside its ``option`` range,
    so that a config read from a file is checked before anything is built from it."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        problem = type_problem(value, hints[f.name])
        if problem is None:
            values = value if isinstance(value, (tuple, list)) else (value,)
            meta = metadata_of(type(cfg), f.name)
            for v in values:
                problem = None if v is None else out_of_range(v, meta)
                if problem:
                    break
        if problem:
            name = type(cfg).__name__
            raise ValueError(f"{name}.{f.name} {problem}, got {_short(value)}")


def type_problem(value, hint) -> str | None:
    """Why ``value`` does not fit the type ``hint`` (simple types only; others pass)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        rest = [a for a in args if a is not type(None)]
        return type_problem(value, rest[0]) if len(rest) == 1 else None
    if typing.get_origin(hint) in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return "must be a list"
        items = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if len(items) == 1 and not all(type_problem(v, next(iter(items))) is None for v in value):
            return f"must be a list of {next(iter(items)).__name__}s"
        return None
    checks = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool),
        float: lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
        dict: lambda v: isinstance(v, dict),
    }
    check = checks.get(typing.get_origin(hint) or hint)
    return None if check is None or check(value) else f"must be a {hint.__name__}"


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


PRECISIONS = ("auto", "bf16", "fp32")

# sane limits of the numbers a config holds (the command line's and a checkpoint's): far above
# any network or run this project trains, far below what would exhaust a machine's memory
MAX_WIDTH = 1 << 16  # channels, features, dims
MAX_HORIZON = 1 << 12  # frames and actions of a chunk
MAX_PIXELS = 1 << 14  # a side of an image
MAX_DIFFUSION_STEPS = 100_000
MAX_BATCH = 1 << 16
MAX_STEPS = 1_000_000_000  # optimiser steps: years at 30 per second
MAX_SEED = (1 << 63) - 1


DENOISERS = ("unet", "transformer")
OBJECTIVES = ("diffusion", "mse")
OBS_ENCODERS = ("mlp", "identity")


@dataclass
class PolicyConfig:
    """What the policy is: horizons, denoiser, diffusion schedule, default sampler.

    Defaults are the reference PushT ones (To=2, Tp=16, Ta=8, 100 training steps,
    squaredcos_cap_v2, epsilon prediction, clipping to [-1, 1]).
    """

    # Do, size of one flattened observation frame (set from the data)
    obs_dim: int = option(0, min=0, max=MAX_WIDTH)
    action_dim: int = option(0, min=0, max=MAX_WIDTH)  # Da (set from the data)
    obs_horizon: int = option(2, "To, observation frames the policy sees", min=1, max=MAX_HORIZON)
    pred_horizon: int = option(16, "Tp, actions per predicted chunk", min=1, max=MAX_HORIZON)
    action_horizon: int = option(8, "Ta, actions executed per chunk", min=1, max=MAX_HORIZON)
    denoiser: str = option("unet", "unet (DP-C) or transformer (DP-T)", choices=DENOISERS)
    down_dims: tuple[int, ...] = option(
        (256, 512, 1024), "U-Net channels per level", min=1, max=MAX_WIDTH
    )
    kernel_size: int = option(5, min=1, max=65)
    n_groups: int = option(8, min=1, max=MAX_WIDTH)
    step_embed_dim: int = option(128, min=2, max=MAX_WIDTH)
    d_model: int = option(256, "transformer width", min=1, max=MAX_WIDTH)
    n_heads: int = option(4, min=1, max=1024)
    n_layers: int = option(8, min=1, max=1024)
    dropout: float = option(0.1, min=0.0, max=1.0)
    obs_encoder: str = option("mlp", "vector parts: mlp or identity", choices=OBS_ENCODERS)
    obs_feature_dim: int = option(64, min=1, max=MAX_WIDTH)
    # the observation's parts (dp_agent.observations.ObsSpec.to_dict()), set from the data;
    # None: one vector of obs_dim values (checkpoints made before observation specs)
    obs_spec: dict | None = None
    vision_widths: tuple[int, ...] = option(
        (64, 128, 256, 512), "ResNet-18's widths per stage", min=1, max=MAX_WIDTH
    )
    vision_crop: int = option(
        84, "random crop in training, centre crop at inference; 0 = none", min=0, max=MAX_PIXELS
    )
    image_feature_dim: int = option(64, min=1, max=MAX_WIDTH)
    shared_vision_encoder: bool = option(False, "one encoder for all image parts")
    num_train_steps: int = option(100, min=1, max=MAX_DIFFUSION_STEPS)
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "epsilon"
    clip_sample: bool = True
    objective: str = option("diffusion", "mse = regression baseline", choices=OBJECTIVES)
    sampler: str = option("ddim", "default sampler at inference")
    num_inference_steps: int = option(10, min=1, max=MAX_DIFFUSION_STEPS)
    # where DDPM/DDIM put their steps: "leading" (diffusers' default) or "trailing" (from T-1;
    # distilled students, whose grid is the one they were trained on)
    timestep_spacing: str = "leading"
    # an explicit grid for the default sampler (DDIM/DDPM) at its num_inference_steps, which
    # then overrides the spacing: a student distilled to a step count that does not halve its
    # teacher's (e.g. 4 -> 3 keeps the last two steps of four); None: the spacing's grid
    timesteps: tuple[int, ...] | None = None
    # a trajectory model's entries known in training, ((step, dims), ...): they enter the noisy
    # chunk clean and are left out of the loss, as Diffuser trains (planners set them,
    # ``PlannerConfig.policy_config``); () for a policy
    conditioned_entries: tuple = ()

    def observation_spec(self):
        """The policy's ``ObsSpec`` (a single vector of ``obs_dim`` values when none is set)."""
        from dp_agent.observations import ObsSpec

        return ObsSpec.from_dict(self.obs_spec) if self.obs_spec else ObsSpec.vector(self.obs_dim)

    def default_steps(self, sampler: str) -> int:
        """Denoising steps ``sampler`` runs when none are given: the policy's own default for its
        own sampler, every training step for DDPM, ``num_inference_steps`` for the others."""
        if sampler == self.sampler:
            return self.num_inference_steps
        return self.num_train_steps if sampler == "ddpm" else self.num_inference_steps

    def validate(self) -> None:
        check_fields(self)
        if len(self.down_dims) < 1 or len(self.vision_widths) < 1:
            raise ValueError("down_dims and vision_widths need at least one level")
        spec = self.observation_spec()
        if self.action_dim <= 0 or (self.obs_dim <= 0 and not spec.image_parts):
            raise ValueError("PolicyConfig needs obs_dim and action_dim > 0 (fit it on data)")
        if spec.vector_dim != self.obs_dim:
            raise ValueError(
                f"obs_dim {self.obs_dim} differs from the {spec.vector_dim} values of the vector "
                f"parts of obs_spec ({spec.describe()})"
            )
        if not 1 <= self.obs_horizon <= self.pred_horizon:
            raise ValueError(f"obs_horizon must be in [1, pred_horizon], got {self.obs_horizon}")
        if not 1 <= self.action_horizon <= self.pred_horizon - self.obs_horizon + 1:
            raise ValueError(
                f"action_horizon {self.action_horizon} does not fit: the executed slice starts at "
                f"obs_horizon-1={self.obs_horizon - 1} and must end within pred_horizon="
                f"{self.pred_horizon}"
            )
        if self.denoiser == "unet":
            factor = 2 ** (len(self.down_dims) - 1)
            if self.pred_horizon % factor:
                raise ValueError(
                    f"pred_horizon {self.pred_horizon} must be divisible by {factor} for a U-Net "
                    f"with {len(self.down_dims)} levels"
                )
        elif self.denoiser != "transformer":
            raise ValueError(f"denoiser must be 'unet' or 'transformer', got {self.denoiser!r}")
        from dp_agent.diffusion.samplers import PREDICTION_TYPES, NoiseSchedule, make_sampler

        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}"
            )
        make_sampler(  # checks the sampler name, the schedule, the step count and the spacing
            self.sampler,
            NoiseSchedule(self.num_train_steps, self.beta_schedule),
            self.num_inference_steps,
            spacing=self.timestep_spacing,
            timesteps=self.timesteps,
        )
        if self.objective not in ("diffusion", "mse"):
            raise ValueError(f"objective must be 'diffusion' or 'mse', got {self.objective!r}")
        if self.obs_encoder not in ("mlp", "identity"):
            raise ValueError(f"obs_encoder must be 'mlp' or 'identity', got {self.obs_encoder!r}")


@dataclass
class OptimConfig:
    """The optimisation every run of the training loop shares (policies, planners and
    distillation): AdamW, a cosine schedule with warm-up, gradient clipping, EMA, checkpoints."""

    batch_size: int = option(
        256, "the global batch (split across torchrun's processes)", min=1, max=MAX_BATCH
    )
    lr: float = option(1e-4, "peak learning rate", min=0.0, max=10.0)
    weight_decay: float = option(1e-6, "AdamW's weight decay", min=0.0, max=10.0)
    betas: tuple[float, float] = option((0.95, 0.999), "AdamW's betas", min=0.0, max=1.0)
    warmup_steps: int = option(
        500, "steps of linear warm-up before the cosine decay", min=0, max=MAX_STEPS
    )
    grad_clip: float = option(1.0, "clip the gradient's norm to this", min=0.0, max=1e9)
    ema_power: float = option(0.75, "EMA decay 1 - (1 + step)^-power", min=0.0, max=100.0)
    ema_max_decay: float = option(0.9999, "cap of the EMA decay", min=0.0, max=1.0)
    checkpoint_every: int = option(
        500, "steps between checkpoints (OUT/last.safetensors)", min=1, max=MAX_STEPS
    )
    log_every: int = option(10, "steps between progress reports", min=1, max=MAX_STEPS)
    seed: int = option(
        0, "seed of the batches, the noise and the initial weights", min=0, max=MAX_SEED
    )
    device: str = option("auto", "auto (CUDA > MPS > CPU), cpu, cuda, mps")
    num_threads: int = option(
        0, "CPU threads (0 = one per core)", flag="--threads", min=0, max=4096
    )
    precision: str = option(
        "auto",
        "bf16 autocast (auto: where the device has native bf16); weights stay fp32",
        choices=PRECISIONS,
    )
    # a trained policy whose weights the run starts from (``TrainConfig``, ``DistillConfig``)
    init_from: str | None = None

    def validate(self) -> None:
        check_fields(self)
        for name in ("batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}")


@dataclass
class TrainConfig(OptimConfig):
    """How to train a policy or a planner: the optimisation and its number of steps."""

    num_steps: int = option(3000, "optimiser steps", flag="--steps", min=1, max=MAX_STEPS)
    init_from: str | None = option(
        None,
        "fine-tune: start from this policy's weights (normalisers included) with a fresh "
        "optimiser and schedule (same data and network shape; ignored by --resume once OUT "
        "holds last.safetensors)",
    )

    def validate(self) -> None:
        super().validate()
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be at least 1, got {self.num_steps}")


@dataclass
class DistillConfig(OptimConfig):
    """How to distil a policy into a few-step student (``dp_agent.training.distill``): the step
    counts and the method, and the optimisation of each round (its own defaults)."""

    batch_size: int = 128
    lr: float = 3e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    ema_max_decay: float = 0.999
    precision: str = "fp32"
    teacher_steps: int = option(
        16, "DDIM steps of the first teacher (the trained policy)", min=1, max=MAX_DIFFUSION_STEPS
    )
    student_steps: int = option(
        2,
        "denoising steps of the student: teacher_steps / 2^rounds, or the last round merges "
        "only the noisiest pairs (16 -> 8 -> 4 -> 3); as many as the teacher's for a "
        "trajectory student with --init-from, e.g. into a narrower network",
        flag="--steps",
        min=1,
        max=MAX_DIFFUSION_STEPS,
    )
    steps_per_round: int = option(2000, "updates per round", min=1, max=MAX_STEPS)
    method: str = option(
        "progressive",
        "progressive: halve the steps round by round; trajectory: one round in "
        "which the student learns the teacher's whole DDIM path from noise between its own steps",
        choices=("progressive", "trajectory"),
    )
    grid: tuple[int, ...] | None = option(
        None,
        "the trajectory student's steps, points of the teacher's grid, e.g. 99,49,24 "
        "(None: the trailing grid)",
        min=0,
        max=MAX_DIFFUSION_STEPS,
    )
    init_from: str | None = option(
        None,
        "the student's first weights (None: the teacher's); its network may be another, "
        "e.g. a narrower U-Net trained on the same demos (--preset cpu-tiny), for faster calls",
    )

    def rounds(self) -> list[int]:
        """The student step count of each round: halving, e.g. [8, 4, 2] from 16 to 2; a last
        round that halves only part of the way where the count is not a power of two below the
        teacher's ([8, 4, 3] from 16 to 3); one round for the trajectory method."""
        if self.method == "trajectory":
            return [self.student_steps]
        out, k = [], self.teacher_steps
        while k > self.student_steps:
            k = max(k // 2, self.student_steps)
            out.append(k)
        return out

    def validate(self) -> None:
        check_fields(self)
        # a trajectory student with init_from (e.g. another network) may take its teacher's
        # steps: a few-step student moved into a narrower U-Net, its calls cheaper
        if self.method == "trajectory" and self.init_from is not None:
            most, rule = self.teacher_steps, "at most teacher_steps (trajectory, init_from)"
        else:
            most, rule = self.teacher_steps - 1, "fewer than teacher_steps"
        if not 1 <= self.student_steps <= most:
            raise ValueError(
                f"student_steps must be at least 1 and {rule}, got {self.student_steps} and "
                f"{self.teacher_steps}"
            )
        if self.steps_per_round < 1:
            raise ValueError(f"steps_per_round must be at least 1, got {self.steps_per_round}")
        super().validate()
        if self.method not in ("progressive", "trajectory"):
            raise ValueError(f"method must be 'progressive' or 'trajectory', got {self.method!r}")
        if self.grid is not None and (
            self.method != "trajectory" or len(self.grid) != self.student_steps
        ):
            raise ValueError(
                f"grid {list(self.grid)} needs method 'trajectory' and student_steps "
                f"{len(self.grid)}, got {self.method!r} and {self.student_steps}"
            )


@dataclass
class Preset:
    name: str
    description: str
    policy: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "cpu-small": Preset(
        "cpu-small",
        "small U-Net (64-128-256) that trains in minutes on a laptop CPU",
        policy={"down_dims": (64, 128, 256), "step_embed_dim": 64, "obs_feature_dim": 64},
        train={"num_steps": 3000, "batch_size": 128, "lr": 1e-3, "warmup_steps": 200},
    ),
    "cpu-tiny": Preset(
        "cpu-tiny",
        "a quarter of cpu-small's compute (32-64-128, 1.4 M): a fast student for few-step sampling",
        policy={"down_dims": (32, 64, 128), "step_embed_dim": 64, "obs_feature_dim": 64},
        train={"num_steps": 3000, "batch_size": 128, "lr": 1e-3, "warmup_steps": 200},
    ),
    "gpu-standard": Preset(
        "gpu-standard",
        "the reference U-Net (256-512-1024), AdamW 1e-4, for a CUDA GPU",
        policy={"down_dims": (256, 512, 1024), "step_embed_dim": 128},
        train={"num_steps": 50000, "batch_size": 256, "lr": 1e-4, "warmup_steps": 500},
    ),
    "gpu-image": Preset(
        "gpu-image",
        "visuomotor: ResNet-18 (GroupNorm, spatial softmax) per camera, the reference U-Net",
        policy={
            "down_dims": (256, 512, 1024),
            "step_embed_dim": 128,
            "vision_widths": (64, 128, 256, 512),
            "vision_crop": 84,
        },
        train={"num_steps": 50000, "batch_size": 64, "lr": 1e-4, "warmup_steps": 500},
    ),
    "cpu-image": Preset(
        "cpu-image",
        "visuomotor on a CPU: a quarter-width ResNet-18 (0.71 M) and the cpu-small U-Net",
        policy={
            "down_dims": (64, 128, 256),
            "step_embed_dim": 64,
            "vision_widths": (16, 32, 64, 128),
            "vision_crop": 84,
        },
        train={"num_steps": 6000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 200},
    ),
    "transformer-small": Preset(
        "transformer-small",
        "the transformer denoiser (DP-T), small enough for a CPU",
        policy={"denoiser": "transformer", "d_model": 128, "n_layers": 4, "dropout": 0.0},
        train={"num_steps": 3000, "batch_size": 128, "lr": 5e-4, "warmup_steps": 200},
    ),
}


def make_configs(
    preset: str = "cpu-small", policy_overrides=None, train_overrides=None
) -> tuple[PolicyConfig, TrainConfig]:
    """Policy and train configs for a preset, with field overrides applied on top."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    p = PRESETS[preset]
    policy = replace_fields(PolicyConfig(), {**p.policy, **(policy_overrides or {})})
    train = replace_fields(TrainConfig(), {**p.train, **(train_overrides or {})})
    return policy, train


def replace_fields(cfg, values: dict[str, Any]):
    """``dataclasses.replace`` that names an unknown field and restores tuples from JSON lists."""
    names = {f.name for f in dataclasses.fields(cfg)}
    for key in values:
        if key not in names:
            raise ValueError(f"{type(cfg).__name__} has no field {key!r}")
    return dataclasses.replace(cfg, **{k: _tuples(v) for k, v in values.items()})


def _tuples(value):
    """JSON lists (nested too, as in ``conditioned_entries``) back to the tuples they were."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
