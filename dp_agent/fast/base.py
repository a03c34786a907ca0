"""What every fast backend shares: its error, the tolerance it keeps to the eager network, the
watch that tells when the network's weights changed, and the U-Net's FiLM folded for a chunk."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from dp_agent.nets.unet import ConditionalUnet1D

# Outputs of every backend match the eager network's to this (max abs difference, outputs of
# order 1): what float32 rounding in another order of summation gives.
TOLERANCE = 1e-4


class BackendUnavailable(RuntimeError):
    """The backend asked for cannot run this network here (package missing, wrong device)."""


class _WeightsWatch:
    """Tells whether a module's parameters and buffers changed since the last ``changed()``:
    a tensor replaced (``load_state_dict(assign=True)``, a new device or dtype) or written in
    place through autograd (optimisers, ``load_state_dict``, ``copy_``, the EMA's
    ``_foreach_lerp_``), which bumps its version counter. Writes behind autograd's back
    (``p.data.mul_()``, ``p.data = t``) are not seen: ``accelerate(policy, name,
    rebuild=True)`` after those. Reads one counter per tensor: ~0.1 ms per chunk with cold
    caches, half of what reading the storage addresses too costs."""

    def __init__(self, module: nn.Module):
        self._dicts = [d for m in module.modules() for d in (m._parameters, m._buffers) if d]
        self._tensors: list[torch.Tensor] = []
        self._version = -1

    def changed(self) -> bool:
        tensors = [t for d in self._dicts for t in d.values() if t is not None]
        try:  # versions only grow: their sum changes whenever one does
            version = sum(map(_VERSION, tensors))
        except RuntimeError:  # inference tensors have no version counter: never written
            version = 0
        same = len(tensors) == len(self._tensors) and all(map(operator.is_, tensors, self._tensors))
        if same and version == self._version:
            return False
        self._tensors, self._version = tensors, version
        return True


_VERSION = operator.attrgetter("_version")


class _FilmFolding:
    """The U-Net's conditioning for a whole chunk at once.

    A block's FiLM is Linear(Mish([step embedding; cond])) = A(k) + C(cond) with A(k) =
    W_e Mish(emb(k)) + b and C = W_c Mish(cond): A is kept per sampler (its timesteps), so a
    chunk costs one GEMM (B, Dc) x (Dc, F) for all blocks and steps, and one broadcast add."""

    def __init__(self, net: ConditionalUnet1D):
        blocks = net.res_blocks()
        weight = torch.cat([b.film[1].weight for b in blocks]).detach()  # (F, E + Dc)
        e = net.step_embed[-1].out_features
        self.w_embed = weight[:, :e].T.contiguous()  # (E, F)
        self.w_cond = weight[:, e:].T.contiguous()  # (Dc, F)
        self.bias = torch.cat([b.film[1].bias for b in blocks]).detach()
        self.step_embed = net.step_embed
        self._per_sampler: dict[tuple[int, ...], torch.Tensor] = {}
        self._last: tuple[Any, tuple[int, ...]] = (None, ())

    def table(self, cond: torch.Tensor, timesteps: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """(K, B, F): every block's [scale | bias] for each step and row."""
        if timesteps is self._last[0]:  # the sampler's own tensor, as every chunk passes it
            key = self._last[1]
        else:
            key = tuple(torch.as_tensor(timesteps).tolist())
            self._last = (timesteps, key)
        a = self._per_sampler.get(key)
        if a is None:
            ks = torch.tensor(key, device=cond.device)
            emb = F.mish(self.step_embed(ks).to(cond.dtype))  # (K, E)
            a = torch.addmm(self.bias, emb, self.w_embed)  # (K, F)
            if len(self._per_sampler) >= 8:
                self._per_sampler.clear()
            self._per_sampler[key] = a
        c = F.mish(cond) @ self.w_cond  # (B, F)
        return a[:, None, :] + c[None]  # (K, B, F)


def _plain_upsample(m: nn.Module) -> bool:
    """The U-Net's upsampling: ConvTranspose1d(C, C', 4, stride=2, padding=1) with a bias, no
    groups, dilation or output padding (what the even/odd kernels below are exact for)."""
    if not isinstance(m, nn.ConvTranspose1d) or m.bias is None or m.groups != 1:
        return False
    shape = (m.kernel_size, m.stride, m.padding, m.dilation, m.output_padding)
    return shape == ((4,), (2,), (1,), (1,), (0,))


def upsample_kernels(m: nn.ConvTranspose1d):
    """ConvTranspose1d(C, C', 4, stride=2, padding=1) as one GEMM over the columns
    [x[m-1], x[m], x[m+1]]: out[2m] = x[m] w1 + x[m-1] w3, out[2m+1] = x[m+1] w0 + x[m] w2."""
    if not _plain_upsample(m):
        raise BackendUnavailable(f"unsupported upsampling {m}")
    w = m.weight.detach()  # (Cin, Cout, 4)
    z = torch.zeros_like(w[:, :, 0])
    even = torch.stack([w[:, :, 3], w[:, :, 1], z], dim=-1)  # taps m-1, m, m+1
    odd = torch.stack([z, w[:, :, 2], w[:, :, 0]], dim=-1)
    packed = torch.stack([even, odd]).permute(0, 2, 1, 3)  # (2, Cout, Cin, 3)
    bias = m.bias.detach()
    return packed.reshape(2 * w.shape[1], -1).contiguous(), torch.cat([bias, bias])
