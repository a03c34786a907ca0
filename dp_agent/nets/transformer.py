"""The transformer denoiser (DP-T): action tokens attend causally to each other and to the
step and observation tokens."""

from __future__ import annotations

import torch
from torch import nn

from dp_agent.nets.layers import SinusoidalStepEmbedding


class TransformerDenoiser(nn.Module):
    """Action tokens attend causally to each other (decoder self-attention) and to a memory made of
    the step token and one token per observation frame (cross-attention)."""

    def __init__(
        self,
        action_dim: int,
        cond_dim: int,
        pred_horizon: int,
        obs_horizon: int,
        d_model: int = 256,
        n_heads: int = 4,
        n_layers: int = 8,
        dropout: float = 0.1,
        causal: bool = True,
    ):
        super().__init__()
        if cond_dim % obs_horizon:
            raise ValueError(f"cond_dim {cond_dim} is not a multiple of obs_horizon {obs_horizon}")
        self.obs_horizon = obs_horizon
        self.action_in = nn.Linear(action_dim, d_model)
        self.action_pos = nn.Parameter(torch.zeros(1, pred_horizon, d_model))
        self.step_embed = SinusoidalStepEmbedding(d_model)
        self.obs_in = nn.Linear(cond_dim // obs_horizon, d_model)
        self.memory_pos = nn.Parameter(torch.zeros(1, obs_horizon + 1, d_model))
        self.memory_encoder = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.Mish(), nn.Linear(4 * d_model, d_model)
        )
        layer = nn.TransformerDecoderLayer(
            d_model,
            n_heads,
            4 * d_model,
            dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.decoder = nn.TransformerDecoder(layer, n_layers)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, action_dim)
        mask = torch.triu(torch.full((pred_horizon, pred_horizon), float("-inf")), diagonal=1)
        self.register_buffer("causal_mask", mask if causal else None, persistent=False)
        nn.init.normal_(self.action_pos, std=0.02)
        nn.init.normal_(self.memory_pos, std=0.02)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor):
        b, tp, _ = sample.shape
        tokens = self.action_in(sample) + self.action_pos[:, :tp]  # (B, Tp, d)
        obs_tokens = self.obs_in(cond.view(b, self.obs_horizon, -1))  # (B, To, d)
        step_token = self.step_embed(timestep).unsqueeze(1)  # (B, 1, d)
        memory = torch.cat([step_token, obs_tokens], dim=1) + self.memory_pos  # (B, To+1, d)
        memory = self.memory_encoder(memory)
        mask = None if self.causal_mask is None else self.causal_mask[:tp, :tp]
        h = self.decoder(tokens, memory, tgt_mask=mask)  # (B, Tp, d)
        return self.head(self.norm(h))  # (B, Tp, Da)
