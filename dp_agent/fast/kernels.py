"""CPU training kernels: Mish through one sigmoid, and the short convolutions of the U-Net as
matrix products. ``use_training_kernels(module)`` switches a network's ``nn.Mish`` and
``nn.Conv1d`` modules to these subclasses in place (same parameters, same state dict, the same
values to float rounding); they act only while training on a CPU and fall back to torch's own
kernels everywhere else (inference, GPUs, shapes they were not measured on).
"""

from __future__ import annotations

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


class FastMish(nn.Mish):
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


class FastConv1d(nn.Conv1d):
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


def use_training_kernels(module: nn.Module) -> nn.Module:
    """Switch every ``nn.Mish`` and ``nn.Conv1d`` of ``module`` to ``FastMish`` and ``FastConv1d``
    in place (their class only: parameters, buffers and state dict stay as they are); returns
    ``module``. A no-op where they are switched already."""
    for m in module.modules():
        if type(m) is nn.Mish:
            m.__class__ = FastMish
        elif type(m) is nn.Conv1d:
            m.__class__ = FastConv1d
    return module
