"""Configuration dataclasses for the policy and for training, and the named presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PolicyConfig:
    """What the policy is: horizons, denoiser, diffusion schedule, default sampler.

    Defaults are the reference PushT ones (To=2, Tp=16, Ta=8, 100 training steps,
    squaredcos_cap_v2, epsilon prediction, clipping to [-1, 1]).
    """

    obs_dim: int = 0  # Do, size of one flattened observation frame
    action_dim: int = 0  # Da
    obs_horizon: int = 2  # To
    pred_horizon: int = 16  # Tp
    action_horizon: int = 8  # Ta
    denoiser: str = "unet"  # "unet" (DP-C) or "transformer" (DP-T)
    down_dims: tuple[int, ...] = (256, 512, 1024)
    kernel_size: int = 5
    n_groups: int = 8
    step_embed_dim: int = 128
    d_model: int = 256  # transformer width
    n_heads: int = 4
    n_layers: int = 8
    dropout: float = 0.1
    obs_encoder: str = "mlp"  # vector parts: "mlp" or "identity"
    obs_feature_dim: int = 64
    # the observation's parts (dp_agent.observations.ObsSpec.to_dict()), set from the data;
    # None: one vector of obs_dim values (checkpoints made before observation specs)
    obs_spec: dict | None = None
    vision_widths: tuple[int, ...] = (64, 128, 256, 512)  # ResNet-18's
    vision_crop: int = 84  # random crop while training, centre crop at inference; 0 = none
    image_feature_dim: int = 64
    shared_vision_encoder: bool = False  # one encoder for all image parts
    num_train_steps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "epsilon"
    clip_sample: bool = True
    objective: str = "diffusion"  # "diffusion", or "mse": a regression baseline, same backbone
    sampler: str = "ddim"  # default sampler at inference
    num_inference_steps: int = 10
    # where DDPM/DDIM put their steps: "leading" (diffusers' default) or "trailing" (from T-1;
    # distilled students, whose grid is the one they were trained on)
    timestep_spacing: str = "leading"
    # an explicit grid for the default sampler (DDIM/DDPM) at its num_inference_steps, which
    # then overrides the spacing: a student distilled to a step count that does not halve its
    # teacher's (e.g. 4 -> 3 keeps the last two steps of four); None: the spacing's grid
    timesteps: tuple[int, ...] | None = None

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
class TrainConfig:
    """How to train: optimiser, schedule, batch, EMA, checkpoints."""

    num_steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-4
    weight_decay: float = 1e-6
    betas: tuple[float, float] = (0.95, 0.999)
    warmup_steps: int = 500
    grad_clip: float = 1.0
    ema_power: float = 0.75
    ema_max_decay: float = 0.9999
    checkpoint_every: int = 500
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    num_threads: int = 0  # 0 = torch's default, one per core
    precision: str = (
        "auto"  # "auto" (bf16 autocast where the device has native bf16), "bf16", "fp32"
    )
    # a trained policy to start from (fine-tuning: its weights, normalisers included, for the
    # model and its EMA; a fresh optimiser and schedule); ignored when a run is resumed
    init_from: str | None = None

    def validate(self) -> None:
        for name in ("num_steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}")


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
    """``dataclasses.replace`` that names the unknown field and restores tuples from JSON lists."""
    names = {f.name: f for f in dataclasses.fields(cfg)}
    clean = {}
    for key, value in values.items():
        if key not in names:
            raise ValueError(f"{type(cfg).__name__} has no field {key!r}")
        if isinstance(value, list):
            value = tuple(value)
        clean[key] = value
    return dataclasses.replace(cfg, **clean)
