"""The FiLM-conditioned 1-D temporal U-Net (DP-C), the reference denoiser.

Every denoiser has the same call:
``net(sample (B, Tp, Da), timestep (B,), cond (B, Dc)) -> (B, Tp, Da)``.
"""

from __future__ import annotations

import torch
from torch import nn

from dp_agent.nets.layers import step_embedding_mlp


class Conv1dBlock(nn.Module):
    """Conv1d -> GroupNorm -> Mish, length preserving."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv1d(in_ch, out_ch, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, out_ch),
            nn.Mish(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class FiLMResidualBlock(nn.Module):
    """Two conv blocks; the conditioning vector sets a per-channel scale and bias in between."""

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.conv1 = Conv1dBlock(in_ch, out_ch, kernel_size, n_groups)
        self.conv2 = Conv1dBlock(out_ch, out_ch, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, out_ch * 2))
        self.residual = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.out_ch = out_ch

    def forward(self, x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, T) with this block's FiLM scale and bias (B, C, 1), from the network's
        ``film_table``."""
        h = self.conv1(x)  # (B, C, T)
        h = scale * h + bias
        h = self.conv2(h)
        return h + self.residual(x)


def run_unet(net, x: torch.Tensor, films, channel_dim: int) -> torch.Tensor:
    """The U-Net's topology, written once: ``net``'s ``down`` levels (two FiLM blocks, then a
    downsampling), ``mid`` blocks and ``up`` levels (the skip concatenated, two blocks, an
    upsampling), then ``final``; ``films`` yields each block's (scale, bias) in that order.
    ``ConditionalUnet1D`` runs it on its modules, channels first (B, C, T); the folded backend
    (``dp_agent.fast.folded``) on packed weights, time-major (B, T, C): ``channel_dim`` says
    which axis the skips are concatenated on."""
    skips = []
    for res1, res2, downsample in net.down:
        x = res2(res1(x, *next(films)), *next(films))
        skips.append(x)
        x = downsample(x)  # (B, C, T/2) except at the last level
    for res in net.mid:
        x = res(x, *next(films))
    for res1, res2, upsample in net.up:
        x = torch.cat([x, skips.pop()], dim=channel_dim)  # (B, 2C, T)
        x = upsample(res2(res1(x, *next(films)), *next(films)))  # (B, C', 2T)
    return net.final(x)


class ConditionalUnet1D(nn.Module):
    """Temporal U-Net over the action sequence; step embedding + observation features condition
    every residual block through FiLM.

    Args:
        action_dim: Da, channels of the diffused sequence.
        cond_dim: size of the global conditioning vector (observation features).
        down_dims: channels at each resolution; the sequence is halved between levels, so
            ``pred_horizon`` must be divisible by ``2 ** (len(down_dims) - 1)``.
    """

    def __init__(
        self,
        action_dim: int,
        cond_dim: int,
        down_dims: tuple[int, ...] = (256, 512, 1024),
        kernel_size: int = 5,
        n_groups: int = 8,
        step_embed_dim: int = 128,
    ):
        super().__init__()
        self.step_embed = step_embedding_mlp(step_embed_dim)
        film_dim = step_embed_dim + cond_dim
        dims = [action_dim, *down_dims]

        def block(i: int, o: int) -> FiLMResidualBlock:
            return FiLMResidualBlock(i, o, film_dim, kernel_size, n_groups)

        self.down = nn.ModuleList()
        for level, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            last = level == len(down_dims) - 1
            downsample = nn.Identity() if last else nn.Conv1d(d_out, d_out, 3, stride=2, padding=1)
            self.down.append(nn.ModuleList([block(d_in, d_out), block(d_out, d_out), downsample]))
        mid = down_dims[-1]
        self.mid = nn.ModuleList([block(mid, mid), block(mid, mid)])
        self.up = nn.ModuleList()
        for d_out, d_in in reversed(list(zip(down_dims[:-1], down_dims[1:], strict=True))):
            upsample = nn.ConvTranspose1d(d_out, d_out, 4, stride=2, padding=1)
            self.up.append(nn.ModuleList([block(d_in * 2, d_out), block(d_out, d_out), upsample]))
        self.final = nn.Sequential(
            Conv1dBlock(down_dims[0], down_dims[0], kernel_size, n_groups),
            nn.Conv1d(down_dims[0], action_dim, 1),
        )

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor):
        """sample (B, Tp, Da), diffusion step (B,), conditioning (B, Dc) -> (B, Tp, Da)."""
        return self.forward_film(sample, self.film_table(timestep, cond))

    # ---- the conditioning, computed apart: once per chunk in dp_agent.fast ---------------------
    def res_blocks(self) -> list[FiLMResidualBlock]:
        """The residual blocks in the order ``forward`` runs them."""
        blocks = [b for res1, res2, _ in self.down for b in (res1, res2)]
        blocks += list(self.mid)
        return blocks + [b for res1, res2, _ in self.up for b in (res1, res2)]

    @property
    def film_dim(self) -> int:
        """F, the size of one row of ``film_table``: a scale and a bias per block channel."""
        return sum(2 * b.out_ch for b in self.res_blocks())

    def film_table(self, timestep: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Every block's FiLM scale and bias for rows (timestep (N,), cond (N, Dc)): (N, F), per
        block ``[scale (C) | bias (C)]`` in ``res_blocks`` order. The part of the network that
        depends on the step and the observation only, so a chunk computes it once for all steps.
        """
        film = torch.cat([self.step_embed(timestep), cond], dim=-1)  # (N, step_dim + Dc)
        return torch.cat([b.film(film) for b in self.res_blocks()], dim=-1)

    def forward_film(self, sample: torch.Tensor, film: torch.Tensor) -> torch.Tensor:
        """``forward`` with the FiLM table given: sample (B, Tp, Da), film (B, F) from
        ``film_table`` -> (B, Tp, Da)."""
        films = iter(self._split_film(film))
        x = run_unet(self, sample.transpose(1, 2), films, channel_dim=1)  # (B, Da, Tp)
        return x.transpose(1, 2)

    def _split_film(self, film: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(B, F) -> per block (scale, bias), each (B, C, 1)."""
        sizes = [c for b in self.res_blocks() for c in (b.out_ch, b.out_ch)]
        parts = film.unsqueeze(-1).split(sizes, dim=1)
        return list(zip(parts[0::2], parts[1::2], strict=True))
