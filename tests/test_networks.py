"""Denoiser shapes and conditioning."""

import torch

from dp_agent.networks import ConditionalUnet1D, MLPObsEncoder, TransformerDenoiser


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
