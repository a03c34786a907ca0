"""Training planners: the trajectory model by the one training loop (``train_planner``), a
value network for guidance (``train_value``), and planner files (``export_planner``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from dp_agent.checkpoint import PlannerInfo
from dp_agent.config import TrainConfig, replace_fields
from dp_agent.guides import ValueNet
from dp_agent.planning.config import PlannerConfig
from dp_agent.planning.data import TrajectoryEpisodes, trajectory_episodes, trajectory_windows
from dp_agent.planning.planner import Planner
from dp_agent.training.train import train


def train_planner(
    demos, out_dir: str | Path, config: PlannerConfig, train_config: TrainConfig, **train_kwargs
) -> Path:
    """Train a planner on ``demos`` with the one training loop -> ``out_dir/final.safetensors``,
    a planner checkpoint (loadable with ``Planner.load``, as is every ``last.safetensors`` of the
    run: each carries the planner section). ``train_kwargs`` go to
    ``dp_agent.training.train.train`` (resume, overwrite, progress, json_progress)."""
    data = trajectory_episodes(demos, config)
    pc = config.policy_config(data.state_dim)
    info = planner_info(data, config)
    return train(data, out_dir, pc, train_config, planner=info, **train_kwargs)


def planner_info(data: TrajectoryEpisodes, config: PlannerConfig) -> PlannerInfo:
    """The ``planner`` header section: column layout, goal, the env's spaces (when known)."""
    import gymnasium as gym

    ds, da, spaces = data.state_dim, data.action_dim, None
    if data.env_id is not None and data.env_id in gym.registry:
        env = gym.make(data.env_id, **(data.env_args.get("env_kwargs") or {}))
        spaces = (env.observation_space, env.action_space)
        env.close()
    config_fields = json.loads(json.dumps(dataclasses.asdict(config)))  # tuples as JSON lists
    return PlannerInfo(
        state_dims=[0, ds],
        action_dims=[ds, ds + da],
        goal_dim=data.goal_dim,
        position_dims=list(config.position_dims),
        velocity_dims=list(config.velocity_dims),
        state_key=config.state_key,
        goal_key=config.goal_key,
        config=config_fields,
        env_spaces=spaces,
    )


def export_planner(checkpoint, out, *, half: bool = False, value: ValueNet | None = None) -> Path:
    """Write a planner file from a training checkpoint: EMA weights only, the ``planner``
    header (from the checkpoint, else from ``planner.json`` beside it), ``half`` weights as
    float16, and a value network when given (else the checkpoint's own, if any)."""
    planner = Planner.load(checkpoint)
    if value is not None:
        planner.value_net = value
    return planner.save(out, half=half)


def train_value(
    planner: Planner,
    demos,
    *,
    num_steps: int = 2000,
    batch_size: int = 128,
    lr: float = 1e-3,
    discount: float = 0.97,
    seed: int = 0,
) -> ValueNet:
    """Diffuser's value function: a ``ValueNet`` trained to predict a window's discounted
    return from its noisy version x_t = √ᾱ x0 + √(1-ᾱ) ε at a random timestep t (MSE), on the
    planner's own windows and normalisation. Returns (B,) in reward units."""
    cfg = replace_fields(PlannerConfig(), planner.info.config)
    traj, returns = trajectory_windows(trajectory_episodes(demos, cfg), planner.horizon, discount)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    policy = planner.policy
    x0 = policy.action_normalizer.normalize(torch.as_tensor(traj, device=planner.device))
    target = torch.as_tensor(returns, dtype=torch.float32, device=planner.device)
    net = ValueNet(x0.shape[-1]).to(planner.device)
    opt = torch.optim.AdamW(net.parameters(), lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, num_steps)
    for _ in range(num_steps):
        idx = torch.randint(len(x0), (batch_size,), generator=g).to(planner.device)
        k = torch.randint(policy.config.num_train_steps, (batch_size,), generator=g).to(
            planner.device
        )
        noise = torch.randn(x0[idx].shape, generator=g).to(planner.device)
        noisy = policy.schedule.add_noise(x0[idx], noise, k)
        loss = torch.nn.functional.mse_loss(net(noisy, k), target[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval().requires_grad_(False)
