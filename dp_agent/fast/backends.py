"""Denoiser backends: how ``DiffusionPolicy.sample`` runs its network during a chunk.

A chunk of K denoising steps calls the network K times with one observation and K known
timesteps. Everything that depends on those only (the step embedding, the observation features
and every residual block's FiLM scale and bias) is computed once per chunk by ``prepare``; each
step then runs the network without its conditioning MLPs:

    backend = make_backend("folded", denoiser)        # once per network (the policy caches it)
    chunk = backend.prepare(cond, sampler.timesteps)  # once per chunk: cond (B, Dc), (K,)
    eps = chunk.step(x, i)                            # K times: x (B, Tp, Da) -> (B, Tp, Da)

Backends, all equal to the eager network to float32 rounding (``TOLERANCE``):

- ``eager``: the network's own ``forward`` at every step, the reference; any denoiser.
- ``folded``: the U-Net's FiLM computed once per chunk and each step as time-major (B, T, C)
  matmuls (Conv1d as im2col + one GEMM on a view of its weights) in plain PyTorch; any device.
- ``openvino``: the per-step U-Net (standard ops, FiLM as an input) compiled by OpenVINO;
  CPU, float32, needs ``pip install openvino``. A plain chunk of at most
  ``WHOLE_CHUNK_MAX_STEPS`` steps (a distilled student's) with a vector observation runs as
  one graph of the whole chunk instead (``OpenVINOBackend.whole_chunk``): encoder, FiLM, the
  K unrolled steps and the sampler's updates, one call from observation to actions. The
  large convolutions of a checkpoint stored as int8 run on int8 weights (``_Int8Conv1d``).
- ``onnx``: the same graph exported to ONNX and run by ONNX Runtime; CPU, float32, needs
  ``pip install onnx onnxruntime``.

``auto`` is the fastest that applies (measured by ``benchmarks/latency.py``): on a CPU,
``openvino`` when installed, else ``folded`` up to ``FOLDED_MAX_BATCH`` rows per chunk (beyond,
eager PyTorch's batched convolutions catch up); ``eager`` on other devices and for any denoiser
but the U-Net. Compiling takes 1-3 s once per network, so ``auto`` compiles only networks of at
least ``COMPILE_MIN_PARAMS`` parameters (smaller ones are under 0.5 ms a call with ``folded``).
``onnx`` is never chosen by itself: faster than ``folded`` at batch 1 but slower from a few
rows on.
Packed weights and compiled graphs follow the network's weights: a backend checks them at every
``prepare`` and rebuilds after any change (an optimiser step, ``load_state_dict``, ``.to``).
"""

from __future__ import annotations

import copy
import operator
import threading
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dp_agent.nets.unet import ConditionalUnet1D

BACKENDS = ("eager", "folded", "openvino", "onnx")
AUTO_ORDER = ("openvino", "folded")  # tried in this order for a U-Net on the CPU
FOLDED_MAX_BATCH = 16  # auto runs larger chunks of the folded backend's choice with eager
COMPILE_MIN_PARAMS = 500_000  # auto compiles (openvino) networks at least this large
# Outputs of every backend match the eager network's to this (max abs difference, outputs of
# order 1): what float32 rounding in another order of summation gives.
TOLERANCE = 1e-4
_PACKAGES = {"openvino": ("openvino",), "onnx": ("onnx", "onnxruntime")}


class BackendUnavailable(RuntimeError):
    """The backend asked for cannot run this network here (package missing, wrong device)."""


# ----------------------------------------------------------------------------------------------
# Choosing
# ----------------------------------------------------------------------------------------------


def _missing_packages(name: str) -> list[str]:
    missing = []
    for package in _PACKAGES.get(name, ()):
        try:
            __import__(package)
        except ImportError:
            missing.append(package)
    return missing


def unavailable_reason(name: str, denoiser: nn.Module, device: torch.device, dtype) -> str | None:
    """Why backend ``name`` cannot run ``denoiser`` on ``device`` in ``dtype``; None if it can."""
    if name not in BACKENDS:
        return f"unknown backend {name!r}; choose one of {['auto', *BACKENDS]}"
    if name == "eager":
        return None
    if not isinstance(denoiser, ConditionalUnet1D):
        return f"backend {name!r} runs the U-Net only, not {type(denoiser).__name__}"
    if name == "folded":
        return None
    if torch.device(device).type != "cpu" or dtype != torch.float32:
        return f"backend {name!r} runs float32 on the CPU only, not {dtype} on {device}"
    missing = _missing_packages(name)
    if missing:
        return f"backend {name!r} needs `pip install {' '.join(missing)}`"
    return None


def resolve_backend(name: str, denoiser: nn.Module, device: torch.device, dtype) -> list[str]:
    """The backends to try, in order, for ``name`` ("auto" or one of ``BACKENDS``)."""
    if name != "auto":
        reason = unavailable_reason(name, denoiser, device, dtype)
        if reason is not None:
            raise BackendUnavailable(reason)
        return [name]
    if not isinstance(denoiser, ConditionalUnet1D) or torch.device(device).type != "cpu":
        return ["eager"]
    small = sum(p.numel() for p in denoiser.parameters()) < COMPILE_MIN_PARAMS
    usable = [
        n
        for n in AUTO_ORDER
        if unavailable_reason(n, denoiser, device, dtype) is None and not (small and n in _PACKAGES)
    ]
    return [*usable, "eager"]


def available_backends(denoiser: nn.Module, device="cpu", dtype=torch.float32) -> list[str]:
    """The backends that can run ``denoiser`` here."""
    return [n for n in BACKENDS if unavailable_reason(n, denoiser, device, dtype) is None]


def make_backend(name: str, denoiser: nn.Module):
    """A new backend object; packing weights waits for the first ``prepare`` and compiling a
    graph for the first step."""
    classes = {
        "eager": EagerBackend,
        "folded": FoldedBackend,
        "openvino": OpenVINOBackend,
        "onnx": OnnxRuntimeBackend,
    }
    if name not in classes:
        raise BackendUnavailable(f"unknown backend {name!r}; choose one of {['auto', *BACKENDS]}")
    return classes[name](denoiser)


class BackendCache:
    """The backends a policy has built, by (name, network, device, dtype, threads). Dropped
    when the policy is copied or pickled (compiled graphs do not travel)."""

    def __init__(self, max_entries: int = 4):
        self.max_entries = max_entries
        self.entries: dict[tuple, Any] = {}
        self.lock = threading.Lock()

    def get(self, name: str, denoiser: nn.Module, device: torch.device, dtype):
        key = (name, id(denoiser), device, dtype, torch.get_num_threads())
        backend = self.entries.get(key)
        if backend is not None and backend.net is denoiser:
            return backend
        with self.lock:
            backend = self.entries.get(key)
            if backend is None or backend.net is not denoiser:
                backend = self._build(name, denoiser, device, dtype)
                if len(self.entries) >= self.max_entries:
                    self.entries.pop(next(iter(self.entries)))
                self.entries[key] = backend
            return backend

    @staticmethod
    def _build(name, denoiser, device, dtype):
        if name != "auto":
            resolve_backend(name, denoiser, device, dtype)  # raises BackendUnavailable
            return make_backend(name, denoiser)
        return AutoBackend(denoiser, resolve_backend(name, denoiser, device, dtype))

    def __deepcopy__(self, memo):
        return BackendCache(self.max_entries)

    def __getstate__(self):
        return {"max_entries": self.max_entries}

    def __setstate__(self, state):
        self.__init__(state["max_entries"])


# ----------------------------------------------------------------------------------------------
# The backends
# ----------------------------------------------------------------------------------------------


class _WeightsWatch:
    """Tells whether a module's parameters and buffers changed since the last ``changed()``:
    a tensor replaced (``load_state_dict(assign=True)``, a new device or dtype) or written in
    place through autograd (optimisers, ``load_state_dict``, ``copy_``, the EMA's
    ``_foreach_lerp_``), which bumps its version counter. Writes behind autograd's back
    (``p.data.mul_()``, ``p.data = t``) are not seen: ``policy.set_backend(name,
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


class EagerBackend:
    """The network's ``forward(x, timestep, cond)`` at every step: the reference."""

    name = "eager"

    def __init__(self, denoiser: nn.Module):
        self.net = denoiser

    def prepare(self, cond: torch.Tensor, timesteps: torch.Tensor) -> _EagerChunk:
        ks = torch.as_tensor(timesteps).to(cond.device)[:, None].expand(-1, cond.shape[0])
        return _EagerChunk(self.net, cond, ks)


class _EagerChunk:
    def __init__(self, net, cond, ks):
        self.net, self.cond, self.ks = net, cond, ks

    def step(self, x: torch.Tensor, i: int) -> torch.Tensor:
        return self.net(x, self.ks[i], self.cond)


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
    def __init__(self, packed, films):
        self.packed, self.films = packed, films

    def step(self, x: torch.Tensor, i: int) -> torch.Tensor:
        return self.packed.step(x, [f[i] for f in self.films])


class _PackedUnet:
    """``ConditionalUnet1D.forward_film`` rewritten for small batches on a CPU.

    Activations are time-major (B, T, C), like the sample itself. A Conv1d is one GEMM: the
    padded input unfolded into (B*T, C*k) columns times a view (Cout, Cin*k) of its weight. The
    ConvTranspose1d (k=4, stride 2) is one GEMM giving the even and odd outputs side by side,
    whose (B, T, 2, C) result is already the interleaved (B, 2T, C). Eager PyTorch runs these
    convolutions at batch 1 through its slow im2col path (~150 µs each); as GEMMs they cost
    what their FLOPs do. Weights are views of the network's (no copy) except the transposed
    convolutions' rearranged kernels.
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
            return (*conv(c1), c1.kernel_size[0], norm(g1), *conv(c2), norm(g2), res)

        self.sizes = [b.out_ch for b in net.res_blocks()]
        self.down = []
        for res1, res2, downsample in net.down:
            ds = None if isinstance(downsample, nn.Identity) else conv(downsample)
            self.down.append((block(res1), block(res2), ds))
        self.mid = [block(b) for b in net.mid]
        self.up = [(block(r1), block(r2), self._upsample(u)) for r1, r2, u in net.up]
        c, g = net.final[0].block[0], net.final[0].block[1]
        self.final = (*conv(c), c.kernel_size[0], norm(g), *conv(net.final[1]))

    @staticmethod
    def _upsample(m: nn.ConvTranspose1d):
        """ConvTranspose1d(C, C', 4, stride=2, padding=1) as one GEMM over the columns
        [x[m-1], x[m], x[m+1]]: out[2m] = x[m] w1 + x[m-1] w3, out[2m+1] = x[m+1] w0 + x[m] w2."""
        if not _plain_upsample(m):
            raise BackendUnavailable(f"folded backend: unsupported upsampling {m}")
        w = m.weight.detach()  # (Cin, Cout, 4)
        z = torch.zeros_like(w[:, :, 0])
        even = torch.stack([w[:, :, 3], w[:, :, 1], z], dim=-1)  # taps m-1, m, m+1
        odd = torch.stack([z, w[:, :, 2], w[:, :, 0]], dim=-1)
        packed = torch.stack([even, odd]).permute(0, 2, 1, 3)  # (2, Cout, Cin, 3)
        bias = m.bias.detach()
        return packed.reshape(2 * w.shape[1], -1).contiguous(), torch.cat([bias, bias])

    def split_film(self, table: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        """(K, B, F) -> per block scale and bias, each a K-tuple of (B, 1, C) views."""
        sizes = [c for c in self.sizes for _ in (0, 1)]
        return [part.unbind(0) for part in table.unsqueeze(2).split(sizes, dim=-1)]

    @staticmethod
    def _conv(x, w, b, k, stride=1):
        """Conv1d (padding k // 2) of time-major x (B, T, C) -> (B, T / stride, Cout)."""
        n, t, c = x.shape
        t_out = t // stride
        cols = F.pad(x, (0, 0, k // 2, k // 2)).unfold(1, k, stride)  # (B, T', C, k) view
        return F.linear(cols.reshape(n * t_out, c * k), w, b).view(n, t_out, -1)

    @staticmethod
    def _norm_mish(h, norm):
        """GroupNorm then Mish of time-major h (B, T, C); the result is a (B, T, C) view."""
        groups, weight, bias, eps = norm
        return F.mish(F.group_norm(h.transpose(1, 2), groups, weight, bias, eps)).transpose(1, 2)

    def _block(self, x, p, scale, bias):
        w1, b1, k, n1, w2, b2, n2, res = p
        h = self._norm_mish(self._conv(x, w1, b1, k), n1)
        h = self._norm_mish(self._conv(torch.addcmul(bias, scale, h), w2, b2, k), n2)
        return h + (x if res is None else F.linear(x, *res))

    def step(self, sample: torch.Tensor, films: list[torch.Tensor]) -> torch.Tensor:
        """sample (B, Tp, Da) and per block [scale, bias] views (B, 1, C) -> (B, Tp, Da)."""
        films = iter(films)
        x, skips = sample, []
        for p1, p2, ds in self.down:
            x = self._block(x, p1, next(films), next(films))
            x = self._block(x, p2, next(films), next(films))
            skips.append(x)
            if ds is not None:
                x = self._conv(x, *ds, 3, 2)
        for p in self.mid:
            x = self._block(x, p, next(films), next(films))
        for p1, p2, (w, b) in self.up:
            x = torch.cat([x, skips.pop()], dim=-1)
            x = self._block(x, p1, next(films), next(films))
            x = self._block(x, p2, next(films), next(films))
            n, t, c = x.shape
            cols = F.pad(x, (0, 0, 1, 1)).unfold(1, 3, 1).reshape(n * t, c * 3)
            x = F.linear(cols, w, b).view(n, 2 * t, -1)  # even/odd side by side = interleaved
        w, b, k, norm, w_out, b_out = self.final
        h = self._norm_mish(self._conv(x, w, b, k), norm)
        return F.linear(h, w_out, b_out)


# ---- compiled per-step graphs: OpenVINO, ONNX Runtime ---------------------------------------


class _GroupNormAsLayerNorm(nn.Module):
    """GroupNorm written as a layer norm over each group's (C/G * T) values, which the
    runtimes map to their fused normalisation kernel (their GroupNorm kernels are slower)."""

    def __init__(self, norm: nn.GroupNorm):
        super().__init__()
        self.groups, self.eps = norm.num_groups, norm.eps
        self.weight, self.bias = norm.weight, norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t = x.shape
        size = int(c // self.groups * t)  # a constant of the graph (only the batch is dynamic)
        y = F.layer_norm(x.reshape(n, self.groups, size), (size,), eps=self.eps)
        return y.reshape(n, c, t) * self.weight[:, None] + self.bias[:, None]


def _plain_upsample(m: nn.Module) -> bool:
    """The U-Net's upsampling: ConvTranspose1d(C, C', 4, stride=2, padding=1) with a bias, no
    groups, dilation or output padding (what the even/odd kernels below are exact for)."""
    if not isinstance(m, nn.ConvTranspose1d) or m.bias is None or m.groups != 1:
        return False
    shape = (m.kernel_size, m.stride, m.padding, m.dilation, m.output_padding)
    return shape == ((4,), (2,), (1,), (1,), (0,))


class _UpsampleAsConv(nn.Module):
    """ConvTranspose1d(C, C', 4, stride=2, padding=1) as a Conv1d(C, 2C', 3, padding=1) of the
    even and odd outputs (``_PackedUnet._upsample``'s kernels), then interleaved: the runtimes'
    transposed convolutions run a slow generic GEMM at these sizes (OpenVINO: 20-55 µs each
    against ~10 for the convolution, on the 1.3 M cpu-tiny U-Net; its 3-step chunk 2-7 % faster
    overall, 2026-12-04)."""

    def __init__(self, m: nn.ConvTranspose1d):
        super().__init__()
        weight, bias = _PackedUnet._upsample(m)  # (2C', C*3), (2C',)
        self.out_ch = m.out_channels
        # buffers, not an nn.Conv1d: its random initialisation would draw from torch's global
        # generator whenever a graph is built, and move what seeded code samples next
        self.register_buffer("weight", weight.view(2 * self.out_ch, m.in_channels, 3).clone())
        self.register_buffer("bias", bias.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv1d(x, self.weight, self.bias, padding=1)  # (B, [even | odd], T)
        n, _, t = y.shape
        return y.view(n, 2, self.out_ch, t).permute(0, 2, 3, 1).reshape(n, self.out_ch, 2 * t)


INT8_MIN_VALUES = 131_072  # convolutions at least this large (0.5 MB in float32) run as int8


def int8_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(int8 values, float32 scale per row along the first axis) that give back ``weight``
    to float32 rounding, or None where it is not such a product: the weights of a checkpoint
    stored as int8 (``checkpoint.quantize_int8``) and loaded, never trained float32 weights,
    whose values fall anywhere between the steps of a row (off by a quarter step on average)."""
    rows = weight.detach().float().reshape(weight.shape[0], -1)
    scale = rows.abs().amax(1).clamp_min(1e-30) / 127.0
    q = torch.round(rows / scale[:, None])
    if (q * scale[:, None] - rows).abs().gt(1e-4 * scale[:, None]).any():
        return None
    return q.to(torch.int8).reshape(weight.shape), scale


class _Int8Conv1d(nn.Module):
    """A Conv1d whose weights are int8 rows (``int8_rows``), as the taps side by side (B, T,
    k*C) times the int8 matrix converted and scaled in the graph, which OpenVINO runs as one
    fully connected layer reading its weights as int8. At batch 1 the deep convolutions of the
    U-Net are bound by reading their weights; in int8 they read a quarter of the bytes, and
    the network's weights fit in the cache a shared machine leaves it."""

    def __init__(self, conv: nn.Conv1d, q: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        c_out, c_in, k = q.shape
        # the taps' order, tap-major: column j * C_in + c
        self.register_buffer("q", q.permute(0, 2, 1).reshape(c_out, k * c_in).contiguous())
        self.register_buffer("scale", scale[:, None].clone())
        bias = conv.bias if conv.bias is not None else torch.zeros(c_out)
        self.register_buffer("bias", bias.detach().float().clone())
        self.k, self.pad, self.stride = k, conv.padding[0], conv.stride[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t_out = (x.shape[-1] + 2 * self.pad - self.k) // self.stride + 1
        x = F.pad(x, (self.pad, self.pad)) if self.pad else x
        span = self.stride * (t_out - 1) + 1
        taps = torch.cat([x[:, :, j : j + span : self.stride] for j in range(self.k)], dim=1)
        weight = self.q.to(torch.float32) * self.scale  # (C_out, k*C_in), int8 in the graph
        return (torch.matmul(taps.transpose(1, 2), weight.t()) + self.bias).transpose(1, 2)


def _int8_convolutions(net: nn.Module) -> int:
    """Swap, in place, every plain Conv1d of at least ``INT8_MIN_VALUES`` weights that are
    int8 rows for an ``_Int8Conv1d``; the number swapped."""
    swapped = 0
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if not (
                isinstance(child, nn.Conv1d)
                and child.weight.numel() >= INT8_MIN_VALUES
                and child.groups == 1
                and child.dilation == (1,)
                and child.padding_mode == "zeros"
                and isinstance(child.padding, tuple)
            ):
                continue
            rows = int8_rows(child.weight)
            if rows is not None:
                setattr(module, name, _Int8Conv1d(child, *rows))
                swapped += 1
    return swapped


class _FilmStep(nn.Module):
    """(sample (B, Tp, Da), film (B, F)) -> (B, Tp, Da): the graph the runtimes compile, on a
    copy of the network (the compiled graph is a snapshot of the weights anyway). With
    ``int8``, the large convolutions whose weights are int8 rows run as ``_Int8Conv1d``."""

    def __init__(self, net: ConditionalUnet1D, layer_norm_groups: bool = True, int8=False):
        super().__init__()
        self.net = copy.deepcopy(net).float().cpu().eval()
        for module in list(self.net.modules()):
            for name, child in list(module.named_children()):
                if layer_norm_groups and isinstance(child, nn.GroupNorm):
                    setattr(module, name, _GroupNormAsLayerNorm(child))
                elif _plain_upsample(child):
                    setattr(module, name, _UpsampleAsConv(child))
        self.int8_convolutions = _int8_convolutions(self.net) if int8 else 0

    def forward(self, sample: torch.Tensor, film: torch.Tensor) -> torch.Tensor:
        return self.net.forward_film(sample, film)


class _CompiledBackend:
    """FiLM once per chunk in PyTorch, the per-step graph in a runtime (float32, CPU)."""

    name = ""
    int8_weights = False  # whether the graph reads the weights of int8 checkpoints as int8

    def __init__(self, denoiser: ConditionalUnet1D):
        self.net = denoiser
        self._watch = _WeightsWatch(denoiser)
        self._film: _FilmFolding | None = None
        self._runner = None
        self._shape: tuple[int, int] | None = None
        self._lock = threading.Lock()  # one compilation at a time

    def prepare(self, cond: torch.Tensor, timesteps) -> _CompiledChunk:
        if cond.device.type != "cpu" or cond.dtype != torch.float32:
            raise BackendUnavailable(f"backend {self.name!r} runs float32 on the CPU only")
        if self._watch.changed() or self._runner is None:
            self._film = _FilmFolding(self.net)
            self._runner = None
        table = self._film.table(cond, timesteps).numpy()  # (K, B, F)
        return _CompiledChunk(self, table)

    def run(self, x: torch.Tensor, film: np.ndarray) -> torch.Tensor:
        shape = tuple(x.shape[1:])
        runner = self._runner
        if runner is None or self._shape != shape:
            with self._lock:
                if self._runner is None or self._shape != shape:
                    self._runner, self._shape = self._compile(x, film), shape
                runner = self._runner
        return torch.from_numpy(runner(np.ascontiguousarray(x.numpy()), film))

    def _example(self, x: torch.Tensor, film: np.ndarray):
        step = _FilmStep(self.net, int8=self.int8_weights)
        return step, (torch.zeros_like(x), torch.from_numpy(np.zeros_like(film)))

    def _compile(self, x, film):
        raise NotImplementedError


class _CompiledChunk:
    def __init__(self, backend: _CompiledBackend, table: np.ndarray):
        self.backend, self.table = backend, table

    def step(self, x: torch.Tensor, i: int) -> torch.Tensor:
        return self.backend.run(x, self.table[i])


class OpenVINOBackend(_CompiledBackend):
    """The per-step graph converted from PyTorch by OpenVINO (``_openvino_runner``: compiled
    for one row, and with the batch dynamic for more), run with as many threads as torch
    uses, in float32 (no bf16 downcast on CPUs that have it).
    Chunks of at most ``WHOLE_CHUNK_MAX_STEPS`` steps run as one graph (``whole_chunk``)."""

    name = "openvino"

    def __init__(self, denoiser: ConditionalUnet1D, int8_weights: bool = True):
        super().__init__(denoiser)
        self.int8_weights = int8_weights  # large convolutions of int8 checkpoints read as int8
        self._policy_watch: tuple[Any, _WeightsWatch] | None = None
        self._chunks: dict[int, tuple[Any, Any, tuple]] = {}  # id(sampler) -> graph

    def _compile(self, x, film):
        step, example = self._example(x, film)
        shapes = [[-1, *x.shape[1:]], [-1, film.shape[-1]]]
        return _openvino_runner(step, example, shapes)

    def whole_chunk(self, policy, sampler, obs: torch.Tensor, noise: torch.Tensor):
        """The chunk (R, Tp, Da) in env units for ``obs`` (R, To, Do) env units and ``noise``
        (K+1, R, Tp, Da), in one call of a graph of the whole chunk (``_ChunkGraph``); None
        where that does not apply (more steps, image or dict observations, not CPU float32),
        for the caller to run the chunk step by step."""
        if (
            sampler.num_steps > WHOLE_CHUNK_MAX_STEPS
            or not isinstance(obs, torch.Tensor)
            or obs.dtype != torch.float32
            or obs.device.type != "cpu"
            or policy.obs_spec.image_parts
        ):
            return None
        watch = self._policy_watch
        if watch is None or watch[0] is not policy:
            watch = self._policy_watch = (policy, _WeightsWatch(policy))
        if watch[1].changed():
            self._chunks.clear()
        shape = (tuple(obs.shape[1:]), tuple(noise.shape[2:]))
        entry = self._chunks.get(id(sampler))
        if entry is None or entry[0] is not sampler or entry[2] != shape:
            with self._lock:
                graph = _ChunkGraph(policy, sampler, int8=self.int8_weights)
                example = (obs, noise)
                shapes = [[-1, *shape[0]], [noise.shape[0], -1, *shape[1]]]
                entry = (sampler, _openvino_runner(graph, example, shapes), shape)
                if len(self._chunks) >= 4:
                    self._chunks.pop(next(iter(self._chunks)))
                self._chunks[id(sampler)] = entry
        return torch.from_numpy(entry[1](np.ascontiguousarray(obs.numpy()), noise.numpy()))


WHOLE_CHUNK_MAX_STEPS = 4  # openvino runs chunks of at most this many steps as one graph


class _ChunkGraph(nn.Module):
    """A whole chunk as one graph, the steps unrolled: (obs (R, To, Do) env units, noise
    (K+1, R, Tp, Da)) -> the chunk (R, Tp, Da) in env units. The observation encoder, every
    step's FiLM (``_FilmFolding``), K per-step U-Nets (``_FilmStep``: one set of weights,
    shared by the K calls in the compiled graph) and the sampler's updates, whose per-step
    coefficients become constants. What is left between the calls of a few-step chunk (the
    encoder, the FiLM table, the updates, tensor conversions) costs as much as a network call
    at batch 1; in one graph it is gone."""

    def __init__(self, policy, sampler, int8: bool = False):
        super().__init__()
        self.policy, self.sampler = policy, sampler
        self.film = _FilmFolding(policy.denoiser)
        self.step = _FilmStep(policy.denoiser, int8=int8)

    def forward(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        table = self.film.table(self.policy.encode(obs), self.sampler.timesteps)  # (K, R, F)
        x, carry = noise[0], None
        for i in range(self.sampler.num_steps):
            out = self.sampler.step(self.step(x, table[i]), i, x, carry=carry, noise=noise[i + 1])
            x, carry = out.prev_sample, out.carry
        return self.policy.action_normalizer.unnormalize(x)


def _openvino_model(module: nn.Module, example: tuple[torch.Tensor, ...], shapes):
    """``module`` traced on zeros shaped like ``example`` and converted to an OpenVINO model
    whose inputs have ``shapes`` (-1: dynamic)."""
    import openvino as ov

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on constant sizes
        example = tuple(torch.zeros_like(t) for t in example)
        traced = torch.jit.trace(module, example, check_trace=False)  # faster to convert
        return ov.convert_model(
            traced, example_input=example, input=[ov.PartialShape(s) for s in shapes]
        )


def _openvino_config(core) -> dict[str, Any]:
    """The CPU plugin's settings: float32 arithmetic, one stream for latency, as many threads as
    torch uses. And no dynamic quantisation: where the CPU has VNNI (AVX-512 or AMX) OpenVINO
    by default rounds the activations entering a layer of int8 weights to int8 in groups of
    32, which moved a step of the shipped student by 2e-3 in the network's units (against 1e-6
    without), for 13% less time a call (0.71 against 0.80 ms on an AVX-512 AMD EPYC,
    2026-12-04): the graphs are to compute what the eager network does."""
    config = {
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
        "ENABLE_CPU_PINNING": False,
    }
    if "DYNAMIC_QUANTIZATION_GROUP_SIZE" in core.get_property("CPU", "SUPPORTED_PROPERTIES"):
        config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = 0
    return config


def _openvino_runner(module: nn.Module, example: tuple[torch.Tensor, ...], shapes):
    """``module`` traced, converted by OpenVINO with ``shapes`` (-1: the batch, dynamic) and
    compiled for latency on as many threads as torch uses: a function of NumPy arrays, one per
    input, returning the first output. A batch of one row, the latency case, gets a graph
    compiled for exactly that shape, at its first call (about 1 s): on the 4.55 M U-Net the
    dynamic graph spends ~1 ms per call on shapes at batch 1 (the 3-step chunk graph: 12.6
    against 10.1 ms, timed side by side on a loaded 2-core machine, 2026-12-03). Other
    batches share the dynamic graph."""
    import openvino as ov

    model = _openvino_model(module, example, shapes)
    core = ov.Core()
    config = _openvino_config(core)
    compiled = {None: core.compile_model(model, "CPU", config)}  # batch -> compiled graph
    batch_axis = list(shapes[0]).index(-1)  # where the first input has its batch
    lock = threading.Lock()
    # A request serves one thread at a time: one per (OS thread, graph), in a plain dict, not
    # a threading.local: PyQt gives a QThread a new Python thread state for every slot and
    # drops it after; requests held in a threading.local died in that teardown and crashed the
    # app (segfault or "double free or corruption", every run of a policy on its worker).
    requests: dict[tuple[int, int | None], Any] = {}

    def request_for(batch: int | None):
        key = (threading.get_ident(), batch)
        request = requests.get(key)
        if request is None:
            with lock:
                if batch not in compiled:
                    static = model.clone()
                    static.reshape(
                        {i: [batch if d == -1 else d for d in s] for i, s in enumerate(shapes)}
                    )
                    compiled[batch] = core.compile_model(static, "CPU", config)
                # (a thread that ended leaves its requests to the next thread given its id)
                request = requests[key] = compiled[batch].create_infer_request()
        return request

    def run(*arrays: np.ndarray) -> np.ndarray:
        batch = arrays[0].shape[batch_axis]
        request = request_for(1 if batch == 1 else None)
        # the inputs set as shared tensors: InferRequest.infer(inputs) spends ~0.1 ms
        # converting them; then the synchronous call, in this thread: start_async() + wait()
        # hands the request to a worker thread and back, ~0.6 ms more per call (a 3-step
        # chunk of the 1.3 M cpu-tiny U-Net: 2.5-2.7 against 3.1-3.3 ms, medians side by side,
        # 2026-12-04)
        for i, a in enumerate(arrays):
            request.set_input_tensor(i, ov.Tensor(a, shared_memory=True))
        request.infer(share_outputs=True)  # (by default it copies every output into a dict)
        return request.get_output_tensor(0).data.copy()

    return run


class OnnxRuntimeBackend(_CompiledBackend):
    """The per-step graph exported to ONNX (batch dimension dynamic) and run by ONNX Runtime
    with as many intra-op threads as torch uses."""

    name = "onnx"

    def _compile(self, x, film):
        import io

        import onnxruntime as ort

        step, example = self._example(x, film)
        buffer = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                step,
                example,
                buffer,
                dynamo=False,
                opset_version=18,
                input_names=["sample", "film"],
                output_names=["out"],
                dynamic_axes={"sample": {0: "batch"}, "film": {0: "batch"}, "out": {0: "batch"}},
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(
            buffer.getvalue(), options, providers=["CPUExecutionProvider"]
        )

        def run(x: np.ndarray, film: np.ndarray) -> np.ndarray:
            return session.run(None, {"sample": x, "film": film})[0]

        return run


class AutoBackend:
    """The first of ``names`` that builds and runs; one that fails (at ``prepare`` or at its
    first step, where runtimes compile) falls through to the next with a warning, ending at
    ``eager``. Once a backend has run a step, its chunks are returned as they are."""

    name = "auto"

    def __init__(self, denoiser: nn.Module, names: list[str]):
        self.net = denoiser
        self.names = list(names)
        self.backend = make_backend(self.names[0], denoiser)
        self.proven = len(self.names) == 1
        self._eager = EagerBackend(denoiser)
        self._no_whole_chunk: set[str] = set()

    @property
    def chosen(self) -> str:
        return self.backend.name

    def prepare(self, cond: torch.Tensor, timesteps):
        if self.backend.name == "folded" and cond.shape[0] > FOLDED_MAX_BATCH:
            return self._eager.prepare(cond, timesteps)
        chunk = self._prepare(cond, timesteps)
        return chunk if self.proven else _FirstChunk(self, chunk, cond, timesteps)

    def whole_chunk(self, policy, sampler, obs, noise):
        """The chosen backend's ``whole_chunk`` where it has one, else None; one that fails
        is not tried again (the chunks run step by step) and says so once."""
        run = getattr(self.backend, "whole_chunk", None)
        if run is None or self.backend.name in self._no_whole_chunk:
            return None
        try:
            return run(policy, sampler, obs, noise)
        except Exception as e:
            self._no_whole_chunk.add(self.backend.name)
            warnings.warn(
                f"denoiser backend {self.backend.name!r} could not run the chunk as one graph "
                f"({type(e).__name__}: {e}); running it step by step",
                RuntimeWarning,
                stacklevel=3,
            )
            return None

    def _prepare(self, cond, timesteps):
        while True:
            try:
                return self.backend.prepare(cond, timesteps)
            except Exception as e:
                self._fall_through(e)

    def _fall_through(self, error: Exception) -> None:
        if len(self.names) == 1:
            raise error
        failed = self.names.pop(0)
        warnings.warn(
            f"denoiser backend {failed!r} failed ({type(error).__name__}: {error}); "
            f"using {self.names[0]!r}",
            RuntimeWarning,
            stacklevel=5,
        )
        self.backend = make_backend(self.names[0], self.net)
        self.proven = len(self.names) == 1


class _FirstChunk:
    """A chunk of an auto backend not yet proven: a failing step moves to the next backend."""

    def __init__(self, auto: AutoBackend, chunk, cond, timesteps):
        self.auto, self.chunk, self.args = auto, chunk, (cond, timesteps)

    def step(self, x: torch.Tensor, i: int) -> torch.Tensor:
        while True:
            try:
                out = self.chunk.step(x, i)
                self.auto.proven = True
                return out
            except Exception as e:
                self.auto._fall_through(e)
                self.chunk = self.auto._prepare(*self.args)
