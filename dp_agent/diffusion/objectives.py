"""Training objectives: what the denoiser is trained to predict from what input, given a clean
chunk x0, its noise and its diffusion steps. DDPM's (ε, x0 or v prediction at a point of the
forward process) and plain regression (the MSE baseline on the same network); a new objective
(flow matching's velocity, say) is one more class with the same ``example`` and a sampler."""

from __future__ import annotations

import torch

from dp_agent.diffusion.samplers import NoiseSchedule


class DDPMObjective:
    """x_k = √ᾱ_k x0 + √(1-ᾱ_k) ε at a uniform step k; the target is ε, x0 or v
    (``prediction_type``)."""

    name = "diffusion"

    def __init__(self, schedule: NoiseSchedule, prediction_type: str):
        self.schedule, self.prediction_type = schedule, prediction_type

    def example(self, x0: torch.Tensor, noise: torch.Tensor, k: torch.Tensor):
        """(network input (B, Tp, Da), its step (B,), target (B, Tp, Da)) for clean x0."""
        noisy = self.schedule.add_noise(x0, noise, k)
        return noisy, k, self.schedule.target(x0, noise, k, self.prediction_type)


class RegressionObjective:
    """The MSE baseline: the chunk itself predicted from zeros at step 0."""

    name = "mse"

    def example(self, x0: torch.Tensor, noise: torch.Tensor, k: torch.Tensor):
        return torch.zeros_like(x0), torch.zeros_like(k), x0


def make_objective(name: str, schedule: NoiseSchedule, prediction_type: str):
    """The objective a ``PolicyConfig.objective`` names."""
    if name == "mse":
        return RegressionObjective()
    if name == "diffusion":
        return DDPMObjective(schedule, prediction_type)
    raise ValueError(f"objective must be 'diffusion' or 'mse', got {name!r}")
