"""Layers the denoisers and encoders share: the sinusoidal step embedding and its MLP, and the
MLP encoder of vector observations."""

from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalStepEmbedding(nn.Module):
    """Diffusion step k -> (B, dim) sinusoidal features (the transformer positional code)."""

    def __init__(self, dim: int):
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / (half - 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        args = timestep.float()[:, None] * self.freqs[None, :]  # (B, dim/2)
        return torch.cat([args.sin(), args.cos()], dim=-1)  # (B, dim)


def step_embedding_mlp(dim: int) -> nn.Sequential:
    return nn.Sequential(
        SinusoidalStepEmbedding(dim), nn.Linear(dim, dim * 4), nn.Mish(), nn.Linear(dim * 4, dim)
    )


class MLPObsEncoder(nn.Module):
    """Per-frame MLP for vector observations: (B, To, Do) -> (B, To * feature_dim)."""

    def __init__(self, obs_dim: int, feature_dim: int = 64, hidden_dim: int = 256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden_dim), nn.Mish(), nn.Linear(hidden_dim, feature_dim)
        )
        self.feature_dim = feature_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).flatten(1)  # (B, To * feature_dim)
