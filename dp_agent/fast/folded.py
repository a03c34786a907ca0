"""The ``folded`` backend: the U-Net's FiLM computed once per chunk, and each step as
time-major matmuls in plain PyTorch (any device)."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from dp_agent.fast.base import _FilmFolding, _WeightsWatch, upsample_kernels
from dp_agent.nets.unet import ConditionalUnet1D, run_unet


class FoldedBackend:
    """FiLM once per chunk; each step as time-major matmuls in PyTorch (``_PackedUnet``)."""

    name = "folded"

    def __init__(self, denoiser: ConditionalUnet1D):
        self.net = denoiser
        self._watch = _WeightsWatch(denoiser)
        self._packed: _PackedUnet | None = None
        self._film: _FilmFolding | None = None

    def prepare(self, cond: torch.Tensor, timesteps) -> _FoldedChunk:
        if self._watch.changed() or self._packed is None:
            self._packed = _PackedUnet(self.net)
            self._film = _FilmFolding(self.net)
        table = self._film.table(cond, timesteps)  # (K, B, F)
        return _FoldedChunk(self._packed, self._packed.split_film(table))


class _FoldedChunk:
    """One chunk's steps: ``(x, i)`` -> the network's output at step i."""

    def __init__(self, packed: _PackedUnet, films: list[list[tuple[torch.Tensor, torch.Tensor]]]):
        self.packed, self.films = packed, films

    def __call__(self, x: torch.Tensor, i: int) -> torch.Tensor:
        return run_unet(self.packed, x, iter(self.films[i]), channel_dim=-1)


class _PackedUnet:
    """The U-Net's layers repacked for small batches on a CPU, laid out as ``run_unet`` walks
    them (``down``, ``mid``, ``up``, ``final``), so the topology is the network's own.

    Activations are time-major (B, T, C), like the sample itself. A Conv1d is one GEMM: the
    padded input unfolded into (B*T, C*k) columns times a view (Cout, Cin*k) of its weight. The
    ConvTranspose1d (k=4, stride 2) is one GEMM giving the even and odd outputs side by side,
    whose (B, T, 2, C) result is already the interleaved (B, 2T, C). Eager PyTorch runs these
    convolutions at batch 1 through its slow im2col path (~150 µs each); as GEMMs they cost
    what their FLOPs do. Weights are views of the network's (no copy) except the transposed
    convolutions' rearranged kernels. Each layer is a ``partial`` of a function below over its
    weights (no Python frame of its own).
    """

    def __init__(self, net: ConditionalUnet1D):
        def conv(m: nn.Conv1d):
            w = m.weight.detach()
            return w.reshape(w.shape[0], -1), m.bias.detach()

        def norm(g: nn.GroupNorm):
            return g.num_groups, g.weight.detach(), g.bias.detach(), g.eps

        def block(b):
            c1, g1 = b.conv1.block[0], b.conv1.block[1]
            c2, g2 = b.conv2.block[0], b.conv2.block[1]
            res = None if isinstance(b.residual, nn.Identity) else conv(b.residual)
            return partial(
                _block, (*conv(c1), c1.kernel_size[0], norm(g1), *conv(c2), norm(g2), res)
            )

        def downsample(m):
            return _identity if isinstance(m, nn.Identity) else partial(_downsample, *conv(m))

        self.sizes = [b.out_ch for b in net.res_blocks()]
        self.down = [(block(r1), block(r2), downsample(ds)) for r1, r2, ds in net.down]
        self.mid = [block(b) for b in net.mid]
        self.up = [
            (block(r1), block(r2), partial(_upsample, *upsample_kernels(u))) for r1, r2, u in net.up
        ]
        c, g = net.final[0].block[0], net.final[0].block[1]
        self.final = partial(_final, (*conv(c), c.kernel_size[0], norm(g), *conv(net.final[1])))

    def split_film(self, table: torch.Tensor) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
        """(K, B, F) -> per step, per block (scale, bias) views (B, 1, C)."""
        sizes = [c for c in self.sizes for _ in (0, 1)]
        parts = [part.unbind(0) for part in table.unsqueeze(2).split(sizes, dim=-1)]
        scales, biases = parts[0::2], parts[1::2]
        return [
            [(s[i], b[i]) for s, b in zip(scales, biases, strict=True)]
            for i in range(table.shape[0])
        ]


def _conv(x, w, b, k, stride=1):
    """Conv1d (padding k // 2) of time-major x (B, T, C) -> (B, T / stride, Cout)."""
    n, t, c = x.shape
    t_out = t // stride
    cols = F.pad(x, (0, 0, k // 2, k // 2)).unfold(1, k, stride)  # (B, T', C, k) view
    return F.linear(cols.reshape(n * t_out, c * k), w, b).view(n, t_out, -1)


def _norm_mish(h, norm):
    """GroupNorm then Mish of time-major h (B, T, C); the result is a (B, T, C) view."""
    groups, weight, bias, eps = norm
    return F.mish(F.group_norm(h.transpose(1, 2), groups, weight, bias, eps)).transpose(1, 2)


def _block(p, x, scale, bias):
    """A FiLM residual block on time-major x, its scale and bias (B, 1, C)."""
    w1, b1, k, n1, w2, b2, n2, res = p
    h = _norm_mish(_conv(x, w1, b1, k), n1)
    h = _norm_mish(_conv(torch.addcmul(bias, scale, h), w2, b2, k), n2)
    return h + (x if res is None else F.linear(x, *res))


def _downsample(w, b, x):
    """Conv1d(C, C, 3, stride=2, padding=1) of time-major x."""
    return _conv(x, w, b, 3, 2)


def _upsample(w, b, x):
    """ConvTranspose1d(C, C', 4, stride=2, padding=1) of time-major x as one GEMM."""
    n, t, c = x.shape
    cols = F.pad(x, (0, 0, 1, 1)).unfold(1, 3, 1).reshape(n * t, c * 3)
    return F.linear(cols, w, b).view(n, 2 * t, -1)  # even/odd side by side = interleaved


def _final(p, x):
    w, b, k, norm, w_out, b_out = p
    return F.linear(_norm_mish(_conv(x, w, b, k), norm), w_out, b_out)


def _identity(x):
    return x
