"""Denoiser shapes and conditioning."""

import torch

from dp_agent.nets.layers import MLPObsEncoder
from dp_agent.nets.transformer import TransformerDenoiser
from dp_agent.nets.unet import ConditionalUnet1D


def test_unet_maps_action_sequences_to_same_shape_and_uses_the_condition():
    torch.manual_seed(0)
    net = ConditionalUnet1D(action_dim=2, cond_dim=10, down_dims=(16, 32, 64), step_embed_dim=16)
    x, k = torch.randn(3, 16, 2), torch.tensor([0, 50, 99])
    c1, c2 = torch.randn(3, 10), torch.randn(3, 10)
    out = net(x, k, c1)
    assert out.shape == (3, 16, 2)
    assert not torch.allclose(out, net(x, k, c2))  # FiLM: the condition changes the output
    assert not torch.allclose(out, net(x, k + 1, c1))  # and so does the diffusion step


def test_transformer_self_attention_is_causal_over_action_tokens():
    torch.manual_seed(0)
    net = TransformerDenoiser(
        2, cond_dim=6, pred_horizon=8, obs_horizon=2, d_model=32, n_layers=2, dropout=0.0
    ).eval()
    x, k, c = torch.randn(2, 8, 2), torch.tensor([3, 7]), torch.randn(2, 6)
    out = net(x, k, c)
    x2 = x.clone()
    x2[:, 5:] += 1.0  # change the future tokens only
    out2 = net(x2, k, c)
    assert out.shape == (2, 8, 2)
    torch.testing.assert_close(out[:, :5], out2[:, :5])
    assert not torch.allclose(out[:, 5:], out2[:, 5:])
    assert not torch.allclose(out, net(x, k, torch.randn(2, 6)))  # observation memory matters


def test_mlp_encoder_flattens_per_frame_features():
    enc = MLPObsEncoder(obs_dim=5, feature_dim=7)
    assert enc(torch.randn(4, 2, 5)).shape == (4, 14)


def test_training_mish_equals_torch_mish_in_value_and_gradient():
    from torch.nn import functional as F

    from dp_agent.fast.kernels import FastMish as Mish
    from dp_agent.fast.kernels import _SigmoidMish

    x64 = (torch.randn(400, dtype=torch.float64) * 6).requires_grad_()
    assert torch.autograd.gradcheck(_SigmoidMish.apply, (x64,))
    x = torch.cat([torch.linspace(-100, 100, 4001), torch.randn(4000) * 3]).requires_grad_()
    ref = x.detach().double().requires_grad_()
    y, y_ref = Mish()(x), F.mish(ref)
    assert y.grad_fn is not None and "SigmoidMish" in type(y.grad_fn).__name__  # the fast path
    (g,) = torch.autograd.grad(y.sum(), x)
    (g_ref,) = torch.autograd.grad(y_ref.sum(), ref)
    assert torch.isfinite(y).all() and torch.isfinite(g).all()
    # within 3 float32 ulps of the float64 function (torch's own kernel: within 2)
    rel = (y.double() - y_ref).abs() / y_ref.abs().clamp_min(1e-3)
    assert rel.max() < 3.6e-7
    assert (g.double() - g_ref).abs().max() < 1e-5
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 in, bf16 out, rounded once
        xb = x.detach().bfloat16().requires_grad_()
        yb = Mish()(xb)
    assert yb.dtype == torch.bfloat16
    torch.testing.assert_close(yb, F.mish(xb.detach()), rtol=1e-2, atol=1e-2)


def _conv_both_ways(c_in, c_out, k, t, *, bf16: bool):
    """(our Conv1d's, torch's own) (output, input grad, weight grad, bias grad) for one random
    input and output gradient, and the name of our forward's grad_fn."""
    from dp_agent.fast.kernels import FastConv1d as Conv1d

    conv = Conv1d(c_in, c_out, k, padding=k // 2)
    x = torch.randn(6, c_in, t, requires_grad=True)
    g = torch.randn(6, c_out, t)
    grads, fn = {}, None
    for fast in (True, False):
        conv.zero_grad()
        x.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = conv(x) if fast else torch.nn.Conv1d.forward(conv, x)
        fn = type(y.grad_fn).__name__ if fast else fn
        y.float().backward(g)
        grads[fast] = (y.detach().float(), x.grad, conv.weight.grad, conv.bias.grad)
    return grads[True], grads[False], fn


def test_conv_weight_gradient_by_matrix_product_equals_onednns():
    from dp_agent.fast.kernels import _ConvGemmWeightGrad

    torch.manual_seed(0)
    for c_in, c_out, k, t in [(8, 16, 5, 4), (32, 32, 5, 16), (24, 8, 1, 8)]:
        ours, torchs, fn = _conv_both_ways(c_in, c_out, k, t, bf16=True)
        assert "ConvGemmWeightGrad" in fn
        for name, a, b in zip(("output", "x", "weight", "bias"), ours, torchs, strict=True):
            scale = b.abs().max()
            assert (a - b).abs().max() <= 2e-2 * scale, (name, c_in, c_out, k, t)
    # float64 against the definition (no autocast, called directly)
    x = torch.randn(3, 4, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 4, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: _ConvGemmWeightGrad.apply(x, w, b, 1), (x, w, b)
    )


def test_float32_training_convolution_by_one_product_per_step_equals_onednns():
    from dp_agent.fast.kernels import FastConv1d as Conv1d
    from dp_agent.fast.kernels import _TapGemmConv1d

    torch.manual_seed(0)
    # (c_in, c_out, kernel, T): the short inner levels, a wide one at T = 16, kernel 3
    for c_in, c_out, k, t in [(8, 16, 5, 4), (16, 8, 5, 8), (128, 16, 5, 16), (12, 12, 3, 2)]:
        ours, torchs, fn = _conv_both_ways(c_in, c_out, k, t, bf16=False)
        assert "TapGemm" in fn, (c_in, k, t)
        for name, a, b in zip(("output", "x", "weight", "bias"), ours, torchs, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item(), msg=name)
    # not taken where oneDNN was measured faster, nor at inference
    conv = Conv1d(64, 64, 5, padding=2)
    x = torch.randn(2, 64, 32, requires_grad=True)
    assert "TapGemm" not in type(conv(x).grad_fn).__name__
    with torch.no_grad():
        assert conv(x[..., :4]).grad_fn is None
    # float64 against the definition, with and without padding and bias
    for padding, bias in ((2, True), (0, False), (1, True)):
        x = torch.randn(3, 4, 6, dtype=torch.float64, requires_grad=True)
        w = torch.randn(5, 4, 5, dtype=torch.float64, requires_grad=True)
        b = torch.randn(5, dtype=torch.float64, requires_grad=True) if bias else None
        assert torch.autograd.gradcheck(
            lambda x, w, b, p=padding: _TapGemmConv1d.apply(x, w, b, p), (x, w, b)
        )
        ref = torch.nn.functional.conv1d(x, w, b, padding=padding)
        torch.testing.assert_close(_TapGemmConv1d.apply(x, w, b, padding), ref)
