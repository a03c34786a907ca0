"""What a planner is (``PlannerConfig``: its horizon, the observation parts of its state and
goal, its denoiser) and the named planner presets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dp_agent.config import PolicyConfig, TrainConfig, option, replace_fields


@dataclass
class PlannerConfig:
    """What a planner is: the horizon, which observation parts are the state and the goal, and
    the denoiser (a small temporal U-Net by default; any ``PolicyConfig`` field via ``policy``).
    """

    horizon: int = option(64, "H, steps per plan (U-Net: a multiple of 4)")
    state_key: str | None = option("observation", "the state part of a Dict observation")
    goal_key: str | None = option("desired_goal", "the goal part (FiLM conditioning)")
    position_dims: tuple[int, ...] = option((0, 1), "of the state: what the goal fixes at H-1")
    velocity_dims: tuple[int, ...] = option((2, 3), "of the state: zero on the held frames")
    hold_end: bool = option(True, "append H-1 frames holding each episode's final state")
    down_dims: tuple[int, ...] = option((32, 64, 128), "U-Net channels per level")
    step_embed_dim: int = 32
    kernel_size: int = 5
    num_train_steps: int = 100
    # x0, as Diffuser's maze2d: learns the plan's shape fast
    prediction_type: str = option("sample", "what the network predicts: sample (x0), epsilon")
    sampler: str = "ddim"
    num_inference_steps: int = 10
    policy: dict[str, Any] = field(default_factory=dict)  # more PolicyConfig fields

    def policy_config(self, state_dim: int) -> PolicyConfig:
        """The trajectory model's config (obs/action dims are set from data): trained with the
        whole state at step 0 and the position at step H-1 known, as plans are conditioned."""
        known = ((0, tuple(range(state_dim))), (self.horizon - 1, tuple(self.position_dims)))
        fields = {
            "obs_horizon": 1,
            "pred_horizon": self.horizon,
            "action_horizon": 1,
            "obs_encoder": "identity",
            "down_dims": tuple(self.down_dims),
            "step_embed_dim": self.step_embed_dim,
            "kernel_size": self.kernel_size,
            "num_train_steps": self.num_train_steps,
            "prediction_type": self.prediction_type,
            "sampler": self.sampler,
            "num_inference_steps": self.num_inference_steps,
            "conditioned_entries": known,
        }
        return replace_fields(PolicyConfig(), {**fields, **self.policy})


# name -> (PlannerConfig fields, TrainConfig fields)
PLANNER_PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "maze2d-umaze": (
        {"horizon": 48},
        {"num_steps": 6000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 200},
    ),
    "maze2d-medium": (
        {"horizon": 96, "down_dims": (32, 64, 128, 256)},
        {"num_steps": 6000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 200},
    ),
    "toy": (
        {"horizon": 16, "down_dims": (16, 32), "step_embed_dim": 16, "goal_key": None},
        {"num_steps": 400, "batch_size": 64, "lr": 2e-3, "warmup_steps": 20},
    ),
}


def make_planner_configs(
    preset: str, planner=None, train=None
) -> tuple[PlannerConfig, TrainConfig]:
    """Planner and train configs of a preset, with field overrides applied on top."""
    if preset not in PLANNER_PRESETS:
        raise ValueError(
            f"unknown planner preset {preset!r}; choose one of {sorted(PLANNER_PRESETS)}"
        )
    p, t = PLANNER_PRESETS[preset]
    pc = replace_fields(PlannerConfig(), {**p, **(planner or {})})
    return pc, replace_fields(TrainConfig(), {**t, **(train or {})})
