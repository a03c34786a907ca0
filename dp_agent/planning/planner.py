"""Diffuser-style trajectory planning with the policy's own parts: a ``DiffusionPolicy`` whose
"action" is the (state, action) vector of each of H steps (pred_horizon = H) and whose
observation is the goal (obs_horizon 1), trained by the one training loop on episodes cut from
demonstrations (``dp_agent.planning.train``); plans are conditioned by inpainting (the start
state at step 0, the goal position at step H-1) and steered by guides (``dp_agent.guides``).

A planner checkpoint is a policy checkpoint whose header has a ``planner`` section (which
columns are the state, the position and the action; the env's spaces) and, optionally, a
learned value (``value.*`` tensors): ``Planner.load(path)`` is the one call.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dp_agent.checkpoint import (
    CheckpointError,
    Header,
    PlannerInfo,
    ValueInfo,
    check_finite,
    load_policy,
    read_tensors,
    save,
)
from dp_agent.guides import Guidance, ValueGuide, ValueNet, best_of
from dp_agent.policy import DiffusionPolicy


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

    def __init__(self, policy: DiffusionPolicy, header: Header, device: torch.device):
        from dp_agent.fast import accelerate

        self.policy, self.header, self.device = policy.eval(), header, device
        self._sampling = accelerate(self.policy)  # the fast path's handle: its sample
        self.info: PlannerInfo = header.planner
        s0, s1 = self.info.state_dims
        a0, a1 = self.info.action_dims
        self.state_dim, self.action_dim = s1 - s0, a1 - a0
        self.position_dims = tuple(self.info.position_dims)
        self.horizon = policy.config.pred_horizon
        self.env_id, self.env_kwargs = header.env_id, header.env_kwargs
        self.value_net: ValueNet | None = None
        self.path: Path | None = None  # the file it was loaded from

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Planner:
        """A planner's checkpoint (``train_planner``: final or last; ``export_planner``), with
        its value net if any. Non-finite weights or normaliser statistics are refused
        (``CheckpointError``): the app and ``DiffuserAgent.load`` load planners here."""
        from dp_agent.devices import select_device

        device = select_device(device)
        policy, header = load_policy(path, device)
        check_finite(path, policy.state_dict(), "model.")
        if header.planner is None:
            header = dataclasses.replace(header, planner=_planner_beside(path))
        planner = cls(policy, header, device)
        planner.path = Path(path)
        if header.value is not None:
            net = ValueNet(**dataclasses.asdict(header.value)).to(device)
            net.load_state_dict(read_tensors(path, "value", device))
            check_finite(path, net.state_dict(), "value.")
            planner.value_net = net.eval().requires_grad_(False)
        return planner

    def save(self, path: str | Path, *, half: bool = False, int8: bool = False) -> Path:
        """One planner file: the weights (``half``: float16; ``int8``: matrices as int8), the
        header with the ``planner`` section, and the value network if there is one."""
        net, tensors, value = self.value_net, {}, None
        if net is not None:
            tensors = {f"value.{k}": v for k, v in net.state_dict().items()}
            first = net.convs[0]
            value = ValueInfo(first.in_channels, first.out_channels, net.step.freqs.numel() * 2)
        header = dataclasses.replace(self.header, planner=self.info, value=value, optimizer=None)
        return save(path, self.policy, header, half=half, int8=int8, extra_tensors=tensors)

    def value_guide(self, weight: float = 1.0) -> ValueGuide:
        if self.value_net is None:
            raise ValueError(
                "this planner has no value network; train one with "
                "dp_agent.planning.train.train_value"
            )
        return ValueGuide(self.value_net, self.policy.action_normalizer.normalize, weight)

    def sample(
        self,
        goal_features,
        *,
        conditions=None,
        condition_mask=None,
        guidance=None,
        num_samples: int = 1,
        sampler=None,
        num_inference_steps=None,
        generator=None,
        start=None,
        start_step: int = 0,
        on_step=None,
    ) -> torch.Tensor:
        """Trajectories (B*N, H, Ds+Da), env units, for goal features (B, Dg) (any (B, 1) when
        the planner has no goal); conditions as ``DiffusionPolicy.sample``'s."""
        obs = torch.as_tensor(np.asarray(goal_features, np.float32), device=self.device)[:, None]
        return self._sampling.sample(
            obs,
            num_samples,
            sampler,
            num_inference_steps,
            generator,
            on_step,
            conditions=conditions,
            condition_mask=condition_mask,
            guidance=guidance,
            start=start,
            start_step=start_step,
        )

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
        self,
        start_states,
        goal=None,
        *,
        goal_position=None,
        guides=(),
        guide_scale: float = 0.1,
        guide_steps: int = 2,
        t_stopgrad: int = 1,
        num_samples: int = 1,
        sampler=None,
        num_inference_steps=None,
        generator=None,
        warm=None,
        warm_step: int = 0,
        return_trajectory: bool = False,
    ) -> Plan:
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
            features,
            conditions=conditions,
            condition_mask=masks,
            guidance=guidance,
            num_samples=num_samples,
            sampler=sampler,
            num_inference_steps=num_inference_steps,
            generator=generator,
            start=warm_t,
            start_step=warm_step,
            on_step=(lambda s: frames.append(s.sample)) if return_trajectory else None,
        )
        objective = None if not guides else best_of(traj, guides, num_samples)[1].cpu().numpy()
        return self._as_plan(traj, objective, frames)

    def _as_plan(self, traj: torch.Tensor, objective, frames) -> Plan:
        t = traj.float().cpu().numpy()
        ds = self.state_dim
        stacked = np.stack([f.float().cpu().numpy() for f in frames]) if frames else None
        return Plan(t[..., :ds], t[..., ds : ds + self.action_dim], objective, stacked)


def _planner_beside(path) -> PlannerInfo:
    """The ``planner.json`` that runs of earlier versions wrote beside their checkpoints (theirs
    carry no planner section)."""
    beside = Path(path).parent / "planner.json"
    if not beside.is_file():
        raise CheckpointError(
            f"{path}: not a planner (no 'planner' header field, and no {beside.name} beside it); "
            "train one with dp_agent.planning.train.train_planner (dp-agent plan-train)"
        )
    return PlannerInfo.from_dict(json.loads(beside.read_text()), beside)
