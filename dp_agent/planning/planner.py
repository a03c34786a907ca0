"""Diffuser-style trajectory planning with the policy's own parts: a ``DiffusionPolicy`` whose
"action" is the (state, action) vector of each of H steps (pred_horizon = H) and whose
observation is the goal (obs_horizon 1), trained by ``dp_agent.training.train.train`` on
episodes this module cuts from a demonstration file; plans are conditioned by inpainting (the
start state at step 0, the goal position at step H-1) and steered by guides (``dp_agent.guides``).

A planner checkpoint is a policy checkpoint with a ``planner`` header field (which columns are
the state, the position and the action; the env's spaces) and, optionally, a learned value
(``value.*`` tensors): ``Planner.load(path)`` is the one call.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dp_agent.checkpoint import (
    CheckpointError,
    prefixed,
    read_checkpoint,
    save_policy,
    space_from_dict,
    space_to_dict,
)
from dp_agent.config import PolicyConfig, TrainConfig, replace_fields
from dp_agent.guides import Guidance, ValueGuide, ValueNet, best_of
from dp_agent.policy import DiffusionPolicy
from dp_agent.training.windows import EpisodeArrays


@dataclass
class PlannerConfig:
    """What a planner is: the horizon, which observation parts are the state and the goal, and
    the denoiser (a small temporal U-Net by default; any ``PolicyConfig`` field via ``policy``).
    """

    horizon: int = 64  # H, steps per plan
    state_key: str | None = "observation"  # the state part of a Dict observation (None: all)
    goal_key: str | None = "desired_goal"  # FiLM conditioning on the goal; None: none
    position_dims: tuple[int, ...] = (0, 1)  # of the state: what the goal fixes at step H-1
    velocity_dims: tuple[int, ...] = (2, 3)  # of the state: zero on the held frames
    hold_end: bool = True  # append H-1 frames holding the final state (zero action) per episode
    down_dims: tuple[int, ...] = (32, 64, 128)
    step_embed_dim: int = 32
    kernel_size: int = 5
    num_train_steps: int = 100
    prediction_type: str = "sample"  # x0, as Diffuser's maze2d: learns the plan's shape fast
    sampler: str = "ddim"
    num_inference_steps: int = 10
    policy: dict[str, Any] = field(default_factory=dict)  # more PolicyConfig fields

    def policy_config(self, state_dim: int) -> TrajectoryConfig:
        """The trajectory model's config (obs/action dims are set from data): trained with the
        whole state at step 0 and the position at step H-1 known, as plans are conditioned."""
        fields = dict(
            obs_horizon=1, pred_horizon=self.horizon, action_horizon=1, obs_encoder="identity",
            down_dims=tuple(self.down_dims), step_embed_dim=self.step_embed_dim,
            kernel_size=self.kernel_size, num_train_steps=self.num_train_steps,
            prediction_type=self.prediction_type, sampler=self.sampler,
            num_inference_steps=self.num_inference_steps,
            conditioned_entries=((0, tuple(range(state_dim))),
                                 (self.horizon - 1, tuple(self.position_dims))),
        )  # fmt: skip
        return replace_fields(TrajectoryConfig(), {**fields, **self.policy})


@dataclass
class TrajectoryConfig(PolicyConfig):
    """A ``PolicyConfig`` whose model diffuses (H, Ds+Da) trajectories and is trained, as
    Diffuser's, with some entries known: ``conditioned_entries`` = ((step, dims), ...) enter
    the noisy input clean and are left out of the loss (``DiffusionPolicy.conditioned_mask``).
    """

    conditioned_entries: tuple = ()


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


# ----------------------------------------------------------------------------------------------
# Data: episodes of (state, action) vectors, conditioned on the goal


class TrajectoryEpisodes(list):
    """Episodes for ``dp_agent.training.train.train``: ``obs`` the goal (T, Dg) (zeros (T, 1)
    without a goal), ``actions`` the trajectory (T, Ds+Da) = (state, action) per step. Carries
    the source file's ``path``, ``env_id`` and ``env_args`` as a ``DemoReader`` does, and the
    per-step ``rewards`` (T,) of each episode (for a value guide)."""

    path: str = "in-memory episodes"
    env_id: str | None = None
    env_args: dict = {}
    rewards: list[np.ndarray]
    state_dim: int = 0
    action_dim: int = 0
    goal_dim: int = 0


def trajectory_episodes(demos, config: PlannerConfig) -> TrajectoryEpisodes:
    """Cut a demonstration file (path or DemoReader) or episode-likes (``obs``, ``actions``,
    optional ``rewards``) into ``TrajectoryEpisodes``. With ``hold_end`` each episode gets H-1
    more frames holding its final state (velocity zero, action zero, reward repeated), so that
    windows near the end show an arrival and a rest, as a plan to a goal ends."""
    if isinstance(demos, (str, Path)):
        from dp_agent.data import DemoReader

        demos = DemoReader(demos)
    out = TrajectoryEpisodes()
    out.path = str(getattr(demos, "path", "in-memory episodes"))
    out.env_id = getattr(demos, "env_id", None)
    out.env_args = dict(getattr(demos, "env_args", {}) or {})
    out.rewards = []
    for ep in demos:
        states = _part(ep.obs, config.state_key, "state_key")  # (T, Ds)
        actions = np.asarray(ep.actions, np.float32).reshape(len(states), -1)  # (T, Da)
        goal = (_part(ep.obs, config.goal_key, "goal_key") if config.goal_key
                else np.zeros((len(states), 1), np.float32))  # fmt: skip
        rewards = np.asarray(getattr(ep, "rewards", np.zeros(len(states))), np.float32)
        if config.hold_end:
            states, actions, goal, rewards = _hold_end(states, actions, goal, rewards, config)
        out.append(EpisodeArrays(goal, np.concatenate([states, actions], axis=1)))
        out.rewards.append(rewards)
    if not out:
        raise ValueError(f"{out.path}: no episodes to plan from")
    out.state_dim, out.action_dim, out.goal_dim = states.shape[1], actions.shape[1], goal.shape[1]
    return out


def _part(obs, key: str | None, what: str) -> np.ndarray:
    if not isinstance(obs, dict):
        return np.asarray(obs, np.float32).reshape(len(obs), -1)
    if key not in obs:
        raise ValueError(
            f"PlannerConfig.{what} {key!r} is not an observation part; the demos have {sorted(obs)}"
        )
    return np.asarray(obs[key], np.float32).reshape(len(obs[key]), -1)


def _hold_end(states, actions, goal, rewards, config: PlannerConfig):
    n = config.horizon - 1
    held = np.repeat(states[-1:], n, axis=0)
    held[:, list(config.velocity_dims)] = 0.0
    return (
        np.concatenate([states, held]),
        np.concatenate([actions, np.zeros((n, actions.shape[1]), np.float32)]),
        np.concatenate([goal, np.repeat(goal[-1:], n, axis=0)]),
        np.concatenate([rewards, np.repeat(rewards[-1:], n)]),
    )


# ----------------------------------------------------------------------------------------------
# Training


def train_planner(
    demos, out_dir: str | Path, config: PlannerConfig, train_config: TrainConfig, **train_kwargs
) -> Path:
    """Train a planner on ``demos`` -> ``out_dir/final.safetensors``, a planner checkpoint
    (loadable with ``Planner.load``). ``train_kwargs`` go to ``dp_agent.training.train.train``
    (resume, overwrite, progress, json_progress). ``out_dir/planner.json`` holds the planner
    fields, so that ``export_planner`` makes a planner of any ``last.safetensors`` too."""
    from dp_agent.training.train import train

    data = trajectory_episodes(demos, config)
    info = planner_info(data, config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "planner.json").write_text(json.dumps(info, indent=1))
    pc = config.policy_config(data.state_dim)
    final = train(data, out_dir, pc, train_config, **train_kwargs)
    return export_planner(final, final)


def planner_info(data: TrajectoryEpisodes, config: PlannerConfig) -> dict[str, Any]:
    """The ``planner`` header field: column layout, goal, the env's spaces (when it is known)."""
    ds, da = data.state_dim, data.action_dim
    info = {
        "state_dims": [0, ds], "action_dims": [ds, ds + da], "goal_dim": data.goal_dim,
        "position_dims": list(config.position_dims), "velocity_dims": list(config.velocity_dims),
        "state_key": config.state_key, "goal_key": config.goal_key,
        "config": dataclasses.asdict(config), "env_spaces": None,
    }  # fmt: skip
    env_id = data.env_id
    import gymnasium as gym

    if env_id is not None and env_id in gym.registry:
        env = gym.make(env_id, **(data.env_args.get("env_kwargs") or {}))
        info["env_spaces"] = [space_to_dict(env.observation_space), space_to_dict(env.action_space)]
        env.close()
    return info


def export_planner(checkpoint, out, *, half: bool = False, value: ValueNet | None = None) -> Path:
    """Write a planner file from a training checkpoint: EMA weights only, the ``planner``
    header (from the checkpoint, else from ``planner.json`` beside it), ``half`` weights as
    float16, and a value network when given (else the checkpoint's own, if any)."""
    planner = Planner.load(checkpoint)
    if value is not None:
        planner.value_net = value
    return planner.save(out, half=half)


def _planner_info(path, header: dict) -> dict:
    """The checkpoint's ``planner`` field, else the run's ``planner.json`` beside it."""
    if "planner" in header:
        return header["planner"]
    beside = Path(path).parent / "planner.json"
    if not beside.is_file():
        raise CheckpointError(
            f"{path}: not a planner (no 'planner' header field, and no {beside.name} beside it); "
            "train one with dp_agent.planning.planner.train_planner (dp-agent plan-train)"
        )
    return json.loads(beside.read_text())


def load_trajectory_model(path, device: str | torch.device = "cpu"):
    """-> (the trajectory model in eval mode on ``device``, header); as
    ``checkpoint.load_policy``, with a ``TrajectoryConfig``."""
    tensors, header = read_checkpoint(path, device)
    try:
        config = replace_fields(TrajectoryConfig(), header["policy_config"])
        policy = DiffusionPolicy(config)
        weights = prefixed(tensors, "model")
        policy.load_state_dict({k: v.float() if v.is_floating_point() else v
                                for k, v in weights.items()})  # fmt: skip
    except (KeyError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path}: field 'policy_config' or the weights do not fit ({e})"
        ) from None
    return policy.to(device).eval(), header


def _value_tensors(value: ValueNet | None):
    """The value network's tensors (under ``value.``) and header field, or nothing."""
    if value is None:
        return {}, {}
    first = value.convs[0]
    shape = {"dim": first.in_channels, "width": first.out_channels,
             "step_embed_dim": value.step.freqs.numel() * 2}  # fmt: skip
    return {f"value.{k}": v for k, v in value.state_dict().items()}, {"value": shape}


def trajectory_windows(data: TrajectoryEpisodes, horizon: int, discount: float):
    """Every H-step window of the episodes: trajectories (N, H, D) and their discounted returns
    Σ_t γ^t r_t (N,), the targets of a value network."""
    from dp_agent.training.windows import window_indices

    lengths = [len(ep.actions) for ep in data]
    index = window_indices(lengths, 1, horizon, 1)  # (N, H)
    traj = np.concatenate([ep.actions for ep in data])[index]  # (N, H, D)
    rewards = np.concatenate(data.rewards)[index]  # (N, H)
    return traj, rewards @ (discount ** np.arange(horizon))


def train_value(
    planner: Planner, demos, *, num_steps: int = 2000, batch_size: int = 128, lr: float = 1e-3,
    discount: float = 0.97, seed: int = 0,
) -> ValueNet:  # fmt: skip
    """Diffuser's value function: a ``ValueNet`` trained to predict a window's discounted
    return from its noisy version x_t = √ᾱ x0 + √(1-ᾱ) ε at a random timestep t (MSE), on the
    planner's own windows and normalisation. Returns (B,) in reward units."""
    cfg = replace_fields(PlannerConfig(), planner.info["config"])
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


# ----------------------------------------------------------------------------------------------
# The planner


@dataclass
class Plan:
    """Planned trajectories in env units: ``states`` (R, H, Ds), ``actions`` (R, H, Da), rows
    observation-major (row b*N + n is sample n of start b); ``objective`` (R,) the guides' J of
    each plan (None without guides); ``trajectory`` (K+1, R, H, Ds+Da) every denoising iterate
    when asked for."""

    states: np.ndarray
    actions: np.ndarray
    objective: np.ndarray | None = None
    trajectory: np.ndarray | None = None

    def best(self, num_samples: int) -> Plan:
        """Per start, the plan with the highest J (the first when there are no guides)."""
        r = self.states.shape[0]
        if self.objective is None:
            idx = np.arange(0, r, num_samples)
        else:
            idx = self.objective.reshape(-1, num_samples).argmax(1) + np.arange(0, r, num_samples)
        traj = None if self.trajectory is None else self.trajectory[:, idx]
        obj = None if self.objective is None else self.objective[idx]
        return Plan(self.states[idx], self.actions[idx], obj, traj)


class Planner:
    """A trained trajectory model with its column layout: ``plan(start, goal)`` -> ``Plan``."""

    def __init__(self, policy: DiffusionPolicy, header: dict, device: torch.device):
        from dp_agent.fast import accelerate

        self.policy, self.header, self.device = accelerate(policy.eval()), header, device
        self.info = header["planner"]
        s0, s1 = self.info["state_dims"]
        a0, a1 = self.info["action_dims"]
        self.state_dim, self.action_dim = s1 - s0, a1 - a0
        self.position_dims = tuple(self.info["position_dims"])
        self.horizon = policy.config.pred_horizon
        self.env_id, self.env_kwargs = header.get("env_id"), header.get("env_kwargs") or {}
        self.value_net: ValueNet | None = None
        self.path: Path | None = None  # the file it was loaded from

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Planner:
        """A planner file (``train_planner``/``export_planner``), with its value net if any, or
        a run's ``last.safetensors`` (its ``planner.json`` beside it)."""
        from dp_agent.devices import select_device

        device = select_device(device)
        policy, header = load_trajectory_model(path, device)
        header = {**header, "planner": _planner_info(path, header)}
        planner = cls(policy, header, device)
        planner.path = Path(path)
        if "value" in header:
            tensors, _ = read_checkpoint(path, device)
            net = ValueNet(**header["value"]).to(device)
            net.load_state_dict({k: v.float() for k, v in prefixed(tensors, "value").items()})
            planner.value_net = net.eval().requires_grad_(False)
        return planner

    def save(self, path: str | Path, *, half: bool = False) -> Path:
        """One planner file: the weights (``half``: float16), the header with the ``planner``
        field, and the value network if there is one."""
        h = self.header
        extra, extra_header = _value_tensors(self.value_net)
        return save_policy(
            path, self.policy, space_from_dict(h["observation_space"]),
            space_from_dict(h["action_space"]), h.get("env_id"), h.get("training"),
            env_kwargs=h.get("env_kwargs"), half=half, extra_tensors=extra,
            extra_header={"planner": self.info, **extra_header},
        )  # fmt: skip

    def value_guide(self, weight: float = 1.0) -> ValueGuide:
        if self.value_net is None:
            raise ValueError(
                "this planner has no value network; train one with "
                "dp_agent.planning.planner.train_value"
            )
        return ValueGuide(self.value_net, self.policy.action_normalizer.normalize, weight)

    def sample(
        self, goal_features, *, conditions=None, condition_mask=None, guidance=None,
        num_samples: int = 1, sampler=None, num_inference_steps=None, generator=None,
        start=None, start_step: int = 0, on_step=None,
    ) -> torch.Tensor:  # fmt: skip
        """Trajectories (B*N, H, Ds+Da), env units, for goal features (B, Dg) (any (B, 1) when
        the planner has no goal); conditions as ``DiffusionPolicy.sample``'s."""
        obs = torch.as_tensor(np.asarray(goal_features, np.float32), device=self.device)[:, None]
        return self.policy.sample(
            obs, num_samples, sampler, num_inference_steps, generator, on_step,
            conditions=conditions, condition_mask=condition_mask, guidance=guidance,
            start=start, start_step=start_step,
        )  # fmt: skip

    def endpoint_conditions(self, start_states, goal_positions):
        """(conditions, masks) for a batch: the whole state (B, Ds) at step 0 and the position
        (B, len(position_dims)) at step H-1; the actions are free."""
        b, d = len(start_states), self.state_dim + self.action_dim
        first, last = np.zeros((b, d), np.float32), np.zeros((b, d), np.float32)
        first[:, : self.state_dim] = start_states
        m_first = np.zeros((b, d), bool)
        m_first[:, : self.state_dim] = True
        conditions, masks = {0: first}, {0: m_first}
        if goal_positions is not None:
            last[:, list(self.position_dims)] = goal_positions
            m_last = np.zeros((b, d), bool)
            m_last[:, list(self.position_dims)] = True
            conditions[self.horizon - 1], masks[self.horizon - 1] = last, m_last
        return conditions, masks

    def plan(
        self, start_states, goal=None, *, goal_position=None, guides=(), guide_scale: float = 0.1,
        guide_steps: int = 2, t_stopgrad: int = 1, num_samples: int = 1, sampler=None,
        num_inference_steps=None, generator=None, warm=None, warm_step: int = 0,
        return_trajectory: bool = False,
    ) -> Plan:  # fmt: skip
        """Plans from start states (B, Ds) to goals (B, Dg) (the FiLM features; None without a
        goal), the goal position (B, 2) (default: the goal itself) inpainted at step H-1, the
        start at step 0. ``guides`` steer each step (``Guidance``) and give each plan its J;
        ``warm`` (B*N, H, D) a previous plan to re-noise to step ``warm_step`` and denoise."""
        start_states = np.asarray(start_states, np.float32).reshape(-1, self.state_dim)
        b = len(start_states)
        features = (
            np.zeros((b, 1), np.float32)
            if goal is None
            else np.asarray(goal, np.float32).reshape(b, -1)
        )
        if goal_position is None and goal is not None:
            goal_position = features[:, : len(self.position_dims)]
        conditions, masks = self.endpoint_conditions(start_states, goal_position)
        guidance = Guidance(guides, guide_scale, guide_steps, t_stopgrad) if guides else None
        frames: list[torch.Tensor] = []
        warm_t = (
            None
            if warm is None
            else torch.as_tensor(np.asarray(warm, np.float32), device=self.device)
        )
        traj = self.sample(
            features, conditions=conditions, condition_mask=masks, guidance=guidance,
            num_samples=num_samples, sampler=sampler, num_inference_steps=num_inference_steps,
            generator=generator, start=warm_t, start_step=warm_step,
            on_step=(lambda s: frames.append(s.sample)) if return_trajectory else None,
        )  # fmt: skip
        objective = None if not guides else best_of(traj, guides, num_samples)[1].cpu().numpy()
        return self._as_plan(traj, objective, frames)

    def _as_plan(self, traj: torch.Tensor, objective, frames) -> Plan:
        t = traj.float().cpu().numpy()
        ds = self.state_dim
        stacked = np.stack([f.float().cpu().numpy() for f in frames]) if frames else None
        return Plan(t[..., :ds], t[..., ds : ds + self.action_dim], objective, stacked)


# ----------------------------------------------------------------------------------------------
# Command line: ``dp-agent plan-train`` and ``dp-agent plan-export``


def add_subcommand(sub) -> None:
    """Add ``plan-train`` (train a planner on a demo file) and ``plan-export`` (a planner file
    from a checkpoint: fp16, a value network) to the ``dp-agent`` parser's subparsers."""
    p = sub.add_parser("plan-train", help="train a Diffuser-style trajectory planner on demos")
    p.add_argument("--demos", required=True, help="demonstration file (.hdf5)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, planner.json)")
    p.add_argument("--preset", default="maze2d-umaze", choices=sorted(PLANNER_PRESETS))
    p.add_argument("--horizon", type=int, help="H, steps per plan (U-Net: a multiple of 4)")
    p.add_argument("--steps", type=int, help="optimiser steps")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: one per core)")
    p.add_argument("--value-steps", type=int, default=0, help="then train a value net this long")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--json-progress", action="store_true")
    p.set_defaults(func=_cmd_plan_train)
    e = sub.add_parser("plan-export", help="write a planner file from a planner checkpoint")
    e.add_argument("checkpoint")
    e.add_argument("out")
    e.add_argument("--half", action="store_true", help="store weights as float16")
    e.add_argument("--value-demos", help="train a value network on these demos and include it")
    e.add_argument("--value-steps", type=int, default=2000)
    e.set_defaults(func=_cmd_plan_export)


def _cmd_plan_train(args) -> int:
    import sys

    planner = {"horizon": args.horizon} if args.horizon else {}
    given = {"num_steps": args.steps, "batch_size": args.batch_size, "lr": args.lr}
    train = {k: v for k, v in given.items() if v is not None}
    train |= {"checkpoint_every": args.checkpoint_every, "num_threads": args.threads}
    pc, tc = make_planner_configs(args.preset, planner, train)
    final = train_planner(
        args.demos, args.out, pc, tc, resume=args.resume, overwrite=args.overwrite,
        json_progress=args.json_progress,
    )  # fmt: skip
    if args.value_steps:
        net = train_value(Planner.load(final), args.demos, num_steps=args.value_steps)
        export_planner(final, final, value=net)
    print(f"wrote {final}", file=sys.stderr)
    return 0


def _cmd_plan_export(args) -> int:
    import sys

    net = None
    if args.value_demos:
        net = train_value(
            Planner.load(args.checkpoint), args.value_demos, num_steps=args.value_steps
        )
    path = export_planner(args.checkpoint, args.out, half=args.half, value=net)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m dp_agent.planning.planner plan-train ...``: the subcommands without the
    dp-agent CLI."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dp_agent.planning.planner")
    add_subcommand(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
