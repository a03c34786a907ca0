"""Guidance of sampled trajectories: objectives J(τ) on batches of trajectories in environment
units (goal distance, keep-out regions, a learned value), the rule that applies their gradient
inside ``DiffusionPolicy.sample``'s one loop (Diffuser's μ + αΣ∇J), and best-of-N selection.

A guide is any callable ``guide(trajectories, timestep) -> (B,)`` that is differentiable in
``trajectories`` (B, H, D), env units; ``timestep`` is the diffusion timestep of the iterate it
sees (0: clean). Higher J is better. The same guides act on a planner's (state, action)
trajectories and on a policy's action chunks: they read the columns ``dims`` (default (0, 1),
the position of a Maze2D state, or a TreeDetour action).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn
from torch.nn import functional as F

from dp_agent.nets.layers import SinusoidalStepEmbedding


class Guide(Protocol):
    def __call__(self, trajectories: torch.Tensor, timestep: int) -> torch.Tensor: ...


@dataclass
class Guidance:
    """How guides steer sampling. After denoising step i (any sampler), ``n_steps`` times:
    x ← x + α Σ_i ∇_x J(unnormalize(x)), then the inpainted values are written again. Σ_i is
    ``Sampler.step_variance(i)``: DDPM's own σ², the DDPM posterior variance between the
    visited timesteps for DDIM and DPM-Solver++. ∇ is taken in the normalised space the loop
    works in (the chain rule through the normaliser). The last ``t_stopgrad`` steps are left
    unguided, as in Diffuser, so the final denoising cleans up what guidance pushed."""

    guides: Sequence[Guide] = field(default_factory=tuple)
    scale: float = 0.1  # α
    n_steps: int = 2  # gradient steps per denoising step
    t_stopgrad: int = 1  # no guidance in the last t_stopgrad denoising steps

    def __post_init__(self):
        if self.n_steps < 0 or self.t_stopgrad < 0:
            raise ValueError("Guidance: n_steps and t_stopgrad must be >= 0")
        self.guides = tuple(self.guides)

    def objective(self, trajectories: torch.Tensor, timestep: int = 0) -> torch.Tensor:
        """Σ of the guides' J for trajectories (B, H, D), env units -> (B,)."""
        total = torch.zeros(trajectories.shape[0], device=trajectories.device)
        for guide in self.guides:
            total = total + guide(trajectories, timestep)
        return total

    def active(self, i: int, num_steps: int) -> bool:
        return bool(self.guides) and self.scale != 0.0 and i < num_steps - self.t_stopgrad

    def apply(self, x: torch.Tensor, sampler, i: int, unnormalize, paint=None) -> torch.Tensor:
        """The iterate x (B, H, D), normalised, that ``sampler``'s step i returned, moved by
        ``n_steps`` gradient steps of α Σ_i ∇J; ``paint`` (``policy.Inpainting``) writes the
        known values again after each, at the iterate's noise level."""
        variance, level = sampler.step_variance(i), sampler.alpha_bar_after(i)
        timestep = int(sampler.timesteps[i + 1]) if i + 1 < sampler.num_steps else 0
        for _ in range(self.n_steps):
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                j = self.objective(unnormalize(xg), timestep)
                (grad,) = torch.autograd.grad(j.sum(), xg)
            x = x + (self.scale * variance) * grad.to(x.dtype)
            if paint is not None:
                x = paint(x, level)
        return x


def best_of(trajectories: torch.Tensor, guides: Sequence[Guide], num_samples: int):
    """Of each observation's ``num_samples`` rows (observation-major, (B*N, H, D) env units),
    the index of the one with the highest J (at timestep 0) -> (B,) long, and J (B*N,)."""
    with torch.enable_grad():  # guides may build graphs; values only are kept
        j = Guidance(guides).objective(trajectories, 0).detach()
    per_obs = j.view(-1, num_samples)  # (B, N)
    return per_obs.argmax(1) + torch.arange(per_obs.shape[0], device=j.device) * num_samples, j


def _positions(trajectories: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    return trajectories[..., list(dims)]  # (B, H, 2)


class GoalDistance:
    """J = -weight · mean over the steps of |p_t - goal| (cells): plans that get to the goal
    sooner and stay score higher. goal (2,) or (B, 2), env units."""

    def __init__(self, goal, dims: Sequence[int] = (0, 1), weight: float = 1.0):
        self.goal = torch.as_tensor(goal, dtype=torch.float32)
        self.dims, self.weight = tuple(dims), float(weight)

    def __call__(self, trajectories: torch.Tensor, timestep: int = 0) -> torch.Tensor:
        goal = self.goal.to(trajectories.device)
        goal = goal[:, None] if goal.ndim == 2 else goal  # (B, 1, 2) or (2,)
        d2 = (_positions(trajectories, self.dims) - goal).pow(2).sum(-1)  # (B, H)
        return -self.weight * (d2 + 1e-6).sqrt().mean(-1)


class KeepOut:
    """Regions a trajectory's positions should not enter: circles (x, y, r) and axis-aligned
    boxes (x0, y0, x1, y1), env units. J = -weight · Σ_t Σ_regions relu(depth + margin)², with
    depth how far inside a region a position is (r - |p - c| for a circle, the distance to the
    nearest edge for a box): zero outside (beyond ``margin``), growing smoothly inside."""

    def __init__(
        self,
        circles: Sequence[Sequence[float]] = (),
        boxes: Sequence[Sequence[float]] = (),
        dims: Sequence[int] = (0, 1),
        weight: float = 1.0,
        margin: float = 0.0,
    ):
        self.circles = torch.as_tensor(circles, dtype=torch.float32).reshape(-1, 3)
        self.boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        if (self.circles[:, 2] <= 0).any():
            raise ValueError("KeepOut: circle radii must be > 0, given as (x, y, r)")
        if (self.boxes[:, 2:] <= self.boxes[:, :2]).any():
            raise ValueError("KeepOut: boxes are (x0, y0, x1, y1) with x0 < x1 and y0 < y1")
        self.dims, self.weight, self.margin = tuple(dims), float(weight), float(margin)

    def depth(self, positions: torch.Tensor) -> torch.Tensor:
        """positions (..., 2) -> (..., regions): how far inside each region (< 0 outside)."""
        c, b = self.circles.to(positions), self.boxes.to(positions)
        p = positions[..., None, :]  # (..., 1, 2)
        to_centre = ((p - c[:, :2]).pow(2).sum(-1) + 1e-9).sqrt()  # (..., C)
        circle = c[:, 2] - to_centre
        edges = torch.cat([p - b[:, :2], b[:, 2:] - p], dim=-1)  # (..., K, 4)
        box = edges.min(-1).values  # (..., K): inside when > 0
        return torch.cat([circle, box], dim=-1)

    def entered(self, trajectories: torch.Tensor) -> torch.Tensor:
        """(B,) bool: whether any step of each trajectory (B, H, D) is inside a region."""
        depth = self.depth(_positions(trajectories, self.dims))  # (B, H, regions)
        return (depth > 0).flatten(1).any(1)

    def __call__(self, trajectories: torch.Tensor, timestep: int = 0) -> torch.Tensor:
        depth = self.depth(_positions(trajectories, self.dims))
        return -self.weight * F.relu(depth + self.margin).pow(2).flatten(1).sum(1)


class PerEnv:
    """One guide per env of a vector env (a keep-out zone or a goal each): the planner agent
    calls ``bind(envs, num_samples)`` before each batched plan, so rows i*N .. i*N+N-1 are
    scored by the guide of env ``envs[i]``."""

    def __init__(self, guides: Sequence[Guide | None]):
        self.guides = list(guides)
        self.envs, self.num_samples = list(range(len(self.guides))), 1

    def bind(self, envs: Sequence[int], num_samples: int) -> None:
        self.envs, self.num_samples = list(envs), int(num_samples)

    def __call__(self, trajectories: torch.Tensor, timestep: int = 0) -> torch.Tensor:
        parts = []
        for i, env in enumerate(self.envs):
            rows = trajectories[i * self.num_samples : (i + 1) * self.num_samples]
            guide = self.guides[env]
            parts.append(
                torch.zeros(len(rows), device=rows.device)
                if guide is None
                else guide(rows, timestep)
            )
        return torch.cat(parts)


class ValueNet(nn.Module):
    """A small temporal conv net: a noisy normalised trajectory (B, H, D) and its diffusion
    timestep (B,) -> the predicted return (B,) of the clean trajectory (Diffuser's value)."""

    def __init__(self, dim: int, width: int = 64, step_embed_dim: int = 32):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv1d(dim, width, 5, padding=2),
            nn.Mish(),
            nn.Conv1d(width, width, 5, stride=2, padding=2),
            nn.Mish(),
            nn.Conv1d(width, 2 * width, 5, stride=2, padding=2),
            nn.Mish(),
        )
        self.step = SinusoidalStepEmbedding(step_embed_dim)
        self.head = nn.Sequential(
            nn.Linear(2 * width + step_embed_dim, width), nn.Mish(), nn.Linear(width, 1)
        )

    def forward(self, x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        h = self.convs(x.transpose(1, 2)).mean(-1)  # (B, 2w)
        return self.head(torch.cat([h, self.step(timestep)], dim=-1)).squeeze(-1)  # (B,)


class ValueGuide:
    """J = weight · the learned value of a trajectory in env units (normalised with the
    planner's normaliser, as the denoiser sees it)."""

    def __init__(self, net: ValueNet, normalize: Callable, weight: float = 1.0):
        self.net, self.normalize, self.weight = net.eval(), normalize, float(weight)

    def __call__(self, trajectories: torch.Tensor, timestep: int = 0) -> torch.Tensor:
        k = torch.full((trajectories.shape[0],), max(int(timestep), 0), device=trajectories.device)
        return self.weight * self.net(self.normalize(trajectories), k)
