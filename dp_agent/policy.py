"""The diffusion policy p(A_t | O_t): normalisers, observation encoder, denoiser and noise
schedule in one module, with the training loss and the sampling loop.

Tensors given to and returned by the public methods are in environment units; everything inside
is normalised to [-1, 1].
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from dp_agent.config import PolicyConfig
from dp_agent.networks import ConditionalUnet1D, MLPObsEncoder, TransformerDenoiser
from dp_agent.normalizer import MinMaxNormalizer
from dp_agent.schedulers import NoiseSchedule, make_sampler


@dataclass
class DenoiseStep:
    """One iterate of the reverse process, normalised units.

    ``step`` counts from 0 (pure noise) to K (the final sample); ``pred_x0`` is the clean sample
    predicted at that step (equal to ``sample`` at step 0 and K).
    """

    step: int
    total: int
    sample: torch.Tensor  # (B, Tp, Da)
    pred_x0: torch.Tensor  # (B, Tp, Da)


class DiffusionPolicy(nn.Module):
    def __init__(self, config: PolicyConfig):
        super().__init__()
        config.validate()
        self.config = config
        c = config
        self.obs_normalizer = MinMaxNormalizer(c.obs_dim)
        self.action_normalizer = MinMaxNormalizer(c.action_dim)
        if c.obs_encoder == "mlp":
            self.obs_encoder = MLPObsEncoder(c.obs_dim, c.obs_feature_dim)
            cond_dim = c.obs_horizon * c.obs_feature_dim
        else:
            self.obs_encoder = nn.Flatten(1)
            cond_dim = c.obs_horizon * c.obs_dim
        if c.denoiser == "unet":
            self.denoiser = ConditionalUnet1D(
                c.action_dim, cond_dim, c.down_dims, c.kernel_size, c.n_groups, c.step_embed_dim
            )
        else:
            self.denoiser = TransformerDenoiser(
                c.action_dim,
                cond_dim,
                c.pred_horizon,
                c.obs_horizon,
                c.d_model,
                c.n_heads,
                c.n_layers,
                c.dropout,
            )
        self.schedule = NoiseSchedule(c.num_train_steps, c.beta_schedule)

    def fit_normalizers(self, observations, actions) -> None:
        """Fit both normalisers on all frames of the data: observations (N, Do), actions (N, Da)."""
        self.obs_normalizer.fit(observations)
        self.action_normalizer.fit(actions)

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, To, Do) environment units -> (B, Dc) conditioning vector."""
        return self.obs_encoder(self.obs_normalizer.normalize(obs))

    def compute_loss(
        self, obs: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Training loss for a batch: obs (B, To, Do), actions (B, Tp, Da), environment units.

        Diffusion: MSE between the injected noise and its prediction at a random step k.
        MSE baseline: regression of the action chunk with the same backbone (input zeros, k = 0).
        """
        cond = self.encode(obs)
        x0 = self.action_normalizer.normalize(actions)  # (B, Tp, Da) in [-1, 1]
        b = x0.shape[0]
        if self.config.objective == "mse":
            zeros = torch.zeros_like(x0)
            k = torch.zeros(b, dtype=torch.long, device=x0.device)
            return F.mse_loss(self.denoiser(zeros, k, cond), x0)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        k = torch.randint(
            0, self.config.num_train_steps, (b,), generator=generator, device=x0.device
        )
        noisy = self.schedule.add_noise(x0, noise, k)
        target = noise if self.config.prediction_type == "epsilon" else x0
        return F.mse_loss(self.denoiser(noisy, k, cond), target)

    @torch.no_grad()
    def iter_denoise(
        self,
        obs: torch.Tensor,
        num_samples: int = 1,
        sampler: str | None = None,
        num_inference_steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Iterator[DenoiseStep]:
        """Run the reverse process for obs (B, To, Do) and yield every iterate (K+1 in all).

        Samples are laid out observation-major: row ``b * num_samples + n`` belongs to obs ``b``.
        The MSE baseline yields its single prediction as one step.
        """
        cond = self.encode(obs).repeat_interleave(num_samples, dim=0)  # (B*N, Dc)
        shape = (cond.shape[0], self.config.pred_horizon, self.config.action_dim)
        if self.config.objective == "mse":
            k = torch.zeros(shape[0], dtype=torch.long, device=cond.device)
            x0 = self.denoiser(torch.zeros(shape, device=cond.device), k, cond)
            yield DenoiseStep(1, 1, x0, x0)
            return
        steps = num_inference_steps or self.config.num_inference_steps
        s = make_sampler(
            sampler or self.config.sampler,
            self.schedule,
            steps,
            prediction_type=self.config.prediction_type,
            clip_sample=self.config.clip_sample,
        )
        # every step's (B*N,) timestep batch, made once before the loop
        ks = s.timesteps.to(cond.device)[:, None].expand(-1, shape[0])
        x = s.initial_noise(shape, generator=generator, device=cond.device, dtype=cond.dtype)
        yield DenoiseStep(0, s.num_steps, x, x)
        carry = None
        for i in range(s.num_steps):
            out = s.step(self.denoiser(x, ks[i], cond), i, x, carry=carry, generator=generator)
            x, carry = out.prev_sample, out.carry
            yield DenoiseStep(i + 1, s.num_steps, x, out.pred_x0)

    @torch.no_grad()
    def sample(self, obs: torch.Tensor, num_samples: int = 1, **kwargs) -> torch.Tensor:
        """Final action chunks (B * num_samples, Tp, Da) in environment units."""
        last = deque(self.iter_denoise(obs, num_samples, **kwargs), maxlen=1)[0]
        return self.action_normalizer.unnormalize(last.sample)
