"""Denoising networks: the FiLM-conditioned 1-D temporal U-Net (DP-C), the transformer denoiser
(DP-T) and the MLP encoder for vector observations.

Every denoiser has the same call:
``net(sample (B, Tp, Da), timestep (B,), cond (B, Dc)) -> (B, Tp, Da)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class _SigmoidMish(torch.autograd.Function):
    """Mish through one sigmoid: with s = sigmoid(x), tanh(softplus(x)) = p / (2 - p) where
    p = s (2 - s) (as 1 + e^x = 1 / (1 - s)), and d mish / dx = t + x s (1 - t^2). The same
    function as ``F.mish``, computed in float32 (float64 stays float64) and returned in the
    input's dtype (bf16 under autocast); on this project's CPU its forward and backward together
    take a third to a fifth of the time of torch's kernels, which compute tanh, softplus and exp
    twice (Mish was 15% of a cpu-small training step;
    ``benchmarks/training.py --reference-src``)."""

    @staticmethod
    def forward(ctx, x):
        xf = x.float() if x.dtype in (torch.bfloat16, torch.float16) else x
        s = torch.sigmoid(xf)
        t = (2 - s).mul_(s)  # p
        t = t.div_(2 - t)  # tanh(softplus(x))
        ctx.save_for_backward(x, s, t)
        return (xf * t).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, s, t = ctx.saved_tensors
        d = torch.addcmul(t.new_ones(()), t, t, value=-1)  # 1 - t^2
        return d.mul_(s).mul_(x).add_(t).mul_(grad).to(x.dtype)


_FAST_MISH_DTYPES = (torch.float32, torch.bfloat16)  # the activations Mish takes the fast path for


class Mish(nn.Mish):
    """``nn.Mish``; while training on a CPU (float32 or bf16 activations), through
    ``_SigmoidMish``: the same values to float rounding, faster. Inference and GPUs run torch's
    own kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type == "cpu"  # a GPU's fused kernel is faster than several small ones
            and x.requires_grad
            and torch.is_grad_enabled()
            and x.dtype in _FAST_MISH_DTYPES
        ):
            return _SigmoidMish.apply(x)
        return F.mish(x)


class _ConvGemmWeightGrad(torch.autograd.Function):
    """A stride-1 Conv1d whose weight gradient is one matrix product of the output gradient with
    the unfolded input (B*T rows of k*C), the input gradient and the forward staying oneDNN's.
    oneDNN's bf16 weight-gradient kernel is slow on these short sequences: per call at batch 128
    on this project's CPU, 256 -> 256 channels, kernel 5: 2.8-4.1 ms against 1.6 ms at T = 4,
    5.8 against 4.2 ms at T = 16; 64 channels at T = 16: 0.46 against 0.39 ms."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding: int):
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.has_bias = padding, bias is not None
        return F.conv1d(x, weight, bias, padding=padding)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        p = ctx.padding
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [1], [p], [1], False, [0], 1, [True, False, False]
            )[0]
        if ctx.needs_input_grad[1]:
            (b, c, t_in), (o, _, k), t_out = x.shape, weight.shape, grad.shape[-1]
            # the input time-major and zero-padded: each output step's window is then k whole
            # rows of C, k*C contiguous values
            rows = x.new_zeros(b, t_in + 2 * p, c)
            rows[:, p : p + t_in].copy_(x.transpose(1, 2))
            cols = rows.as_strided((b, t_out, k * c), ((t_in + 2 * p) * c, c, 1))
            cols = cols.reshape(b * t_out, k * c)  # (B*T_out, k*C), ordered [j, c]
            g = grad.transpose(1, 2).reshape(b * t_out, o)
            grad_w = (g.t() @ cols).view(o, k, c).transpose(1, 2).contiguous()  # (O, C, k)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2))
        return grad_x, grad_w, grad_b, None


def _taps(t: int, t_in: int, k: int, p: int) -> tuple[int, int, int]:
    """Output step ``t`` of a stride-1 convolution (kernel ``k``, zero padding ``p``) reads
    input steps ``lo:hi``, with kernel taps from ``j0`` on; the taps on the padding are left out."""
    lo, hi = max(0, t - p), min(t_in, t - p + k)
    return lo, hi, lo - (t - p)


class _TapGemmConv1d(torch.autograd.Function):
    """A stride-1, zero-padded Conv1d as one matrix product per output step, forward and
    backward. With the input time-major (B, T, C), the steps an output step reads are one
    contiguous run of n*C values per sample, a matrix (B, n*C) as it lies in memory, and with the
    weight laid out (O, k*C) the taps they meet are one block of its columns: no unfolded copy
    of the input and no products with the padding's zeros (30% of a kernel-5 convolution's work
    at T = 4). oneDNN's float32 kernels are slow on the U-Nets' short inner levels; forward and
    backward together, then a GroupNorm, at batch 128 on this project's 2-core CPU (one thread):
    256 -> 256 channels, kernel 5, T = 4: 33.8 ms in oneDNN, 20.1 as one unfolded product, 14.8
    here; 128 channels, T = 8: 12.3 / 11.4 / 8.4 ms; 256 channels, T = 16: 76.5 ms / - / 59.5 ms;
    but 64 channels, T = 16 at batch 64: 3.8 against 4.6 ms, and 64 channels, T = 32: 11.0
    against 13.8 ms, hence ``_use_tap_gemm``."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding: int):
        (b, c, t_in), (o, _, k) = x.shape, weight.shape
        t_out = t_in + 2 * padding - k + 1
        xt = x.transpose(1, 2).contiguous()  # (B, T, C)
        w2 = weight.transpose(1, 2).reshape(o, k * c)  # (O, k*C), ordered [j, c]
        y = x.new_empty(t_out, b, o)
        for t in range(t_out):
            lo, hi, j0 = _taps(t, t_in, k, padding)
            rows = xt[:, lo:hi].reshape(b, (hi - lo) * c)  # a view: rows B*T*C apart
            w_t = w2[:, j0 * c : (j0 + hi - lo) * c].t()
            if bias is None:
                torch.mm(rows, w_t, out=y[t])
            else:
                torch.addmm(bias, rows, w_t, out=y[t])
        ctx.save_for_backward(xt, w2)
        ctx.padding, ctx.has_bias = padding, bias is not None
        return y.permute(1, 2, 0)  # (B, O, T_out)

    @staticmethod
    def backward(ctx, grad):
        xt, w2 = ctx.saved_tensors
        (b, t_in, c), p = xt.shape, ctx.padding
        o, t_out = grad.shape[1], grad.shape[2]
        k = w2.shape[1] // c
        g = grad.permute(2, 0, 1).contiguous()  # (T_out, B, O)
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        gx = xt.new_zeros(b, t_in, c) if need_x else None
        gw = w2.new_zeros(o, k * c) if need_w else None
        for t in range(t_out):
            lo, hi, j0 = _taps(t, t_in, k, p)
            n = hi - lo
            if need_w:
                rows = xt[:, lo:hi].reshape(b, n * c)
                gw[:, j0 * c : (j0 + n) * c].addmm_(g[t].t(), rows)
            if need_x:
                gx[:, lo:hi].view(b, n * c).addmm_(g[t], w2[:, j0 * c : (j0 + n) * c])
        grad_x = gx.transpose(1, 2) if need_x else None
        grad_w = gw.view(o, k, c).transpose(1, 2) if need_w else None
        grad_b = g.sum((0, 1)) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None


def _use_tap_gemm(c_in: int, t_in: int, k: int) -> bool:
    """Where ``_TapGemmConv1d`` was measured faster than oneDNN in float32 training (its
    docstring): sequences up to 8 steps, or up to 16 with at least 128 input channels; kernels
    wider than one (a kernel-1 convolution is one product already)."""
    return k > 1 and (t_in <= 8 or (t_in <= 16 and c_in >= 128))


# sequences up to this length (all of the U-Nets' levels at Tp = 16) take _ConvGemmWeightGrad
# under CPU bf16 autocast; longer ones were not measured and stay with oneDNN
GEMM_WEIGHT_GRAD_MAX_LEN = 16


class Conv1d(nn.Conv1d):
    """``nn.Conv1d``; while training on a CPU, a stride-1 convolution of a short sequence runs
    as matrix products: in float32 forward and backward (``_TapGemmConv1d``), under bf16 autocast
    its weight gradient (``_ConvGemmWeightGrad``). Same parameters, same values to float (or
    bf16) rounding; inference and GPUs run torch's own kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (
            x.device.type == "cpu"
            and torch.is_grad_enabled()
            and self.weight.requires_grad
            and self.stride == (1,)
            and self.dilation == (1,)
            and self.groups == 1
            and self.padding_mode == "zeros"
            and isinstance(self.padding, tuple)
        ):
            return super().forward(x)
        if torch.is_autocast_enabled("cpu"):
            if (
                torch.get_autocast_dtype("cpu") != torch.bfloat16
                or x.shape[-1] > GEMM_WEIGHT_GRAD_MAX_LEN
            ):
                return super().forward(x)
            bf16 = torch.bfloat16
            bias = None if self.bias is None else self.bias.to(bf16)
            return _ConvGemmWeightGrad.apply(
                x.to(bf16), self.weight.to(bf16), bias, self.padding[0]
            )
        if x.dtype == torch.float32 == self.weight.dtype and _use_tap_gemm(
            x.shape[1], x.shape[-1], self.kernel_size[0]
        ):
            return _TapGemmConv1d.apply(x, self.weight, self.bias, self.padding[0])
        return super().forward(x)


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
        SinusoidalStepEmbedding(dim), nn.Linear(dim, dim * 4), Mish(), nn.Linear(dim * 4, dim)
    )


class Conv1dBlock(nn.Module):
    """Conv1d -> GroupNorm -> Mish, length preserving."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.block = nn.Sequential(
            Conv1d(in_ch, out_ch, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, out_ch),
            Mish(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class FiLMResidualBlock(nn.Module):
    """Two conv blocks; the conditioning vector sets a per-channel scale and bias in between."""

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.conv1 = Conv1dBlock(in_ch, out_ch, kernel_size, n_groups)
        self.conv2 = Conv1dBlock(out_ch, out_ch, kernel_size, n_groups)
        self.film = nn.Sequential(Mish(), nn.Linear(cond_dim, out_ch * 2))
        self.residual = Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.out_ch = out_ch

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)  # (B, C, 1) each
        return self.forward_film(x, scale, bias)

    def forward_film(self, x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor):
        """The block with its FiLM scale and bias (B, C, 1) given instead of the condition."""
        h = self.conv1(x)  # (B, C, T)
        h = scale * h + bias
        h = self.conv2(h)
        return h + self.residual(x)


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
            Conv1d(down_dims[0], action_dim, 1),
        )

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor):
        film = torch.cat([self.step_embed(timestep), cond], dim=-1)  # (B, step_dim + Dc)
        x = sample.transpose(1, 2)  # (B, Da, Tp)
        skips = []
        for res1, res2, downsample in self.down:
            x = res2(res1(x, film), film)
            skips.append(x)
            x = downsample(x)  # (B, C, T/2) except at the last level
        for res in self.mid:
            x = res(x, film)
        for res1, res2, upsample in self.up:
            x = torch.cat([x, skips.pop()], dim=1)  # (B, 2C, T)
            x = upsample(res2(res1(x, film), film))  # (B, C', 2T)
        return self.final(x).transpose(1, 2)  # (B, Tp, Da)

    # ---- the network with its conditioning computed apart (dp_agent.backends) -------------------
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
        ``film_table`` -> (B, Tp, Da); equal to ``forward(sample, timestep, cond)``."""
        films = iter(self._split_film(film))
        x = sample.transpose(1, 2)  # (B, Da, Tp)
        skips = []
        for res1, res2, downsample in self.down:
            x = res2.forward_film(res1.forward_film(x, *next(films)), *next(films))
            skips.append(x)
            x = downsample(x)
        for res in self.mid:
            x = res.forward_film(x, *next(films))
        for res1, res2, upsample in self.up:
            x = torch.cat([x, skips.pop()], dim=1)
            x = upsample(res2.forward_film(res1.forward_film(x, *next(films)), *next(films)))
        return self.final(x).transpose(1, 2)

    def _split_film(self, film: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(B, F) -> per block (scale, bias), each (B, C, 1)."""
        sizes = [c for b in self.res_blocks() for c in (b.out_ch, b.out_ch)]
        parts = film.unsqueeze(-1).split(sizes, dim=1)
        return list(zip(parts[0::2], parts[1::2], strict=True))


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
            nn.Linear(d_model, 4 * d_model), Mish(), nn.Linear(4 * d_model, d_model)
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


class MLPObsEncoder(nn.Module):
    """Per-frame MLP for vector observations: (B, To, Do) -> (B, To * feature_dim)."""

    def __init__(self, obs_dim: int, feature_dim: int = 64, hidden_dim: int = 256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden_dim), Mish(), nn.Linear(hidden_dim, feature_dim)
        )
        self.feature_dim = feature_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).flatten(1)  # (B, To * feature_dim)
