"""Min-max normalisation of observations and actions to [-1, 1], fitted on the training data."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class MinMaxNormalizer(nn.Module):
    """Maps each dimension's [min, max] to [-1, 1]. Dimensions that never vary map to 0.

    The statistics are buffers, so they travel with the policy's weights in a checkpoint.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("min", -torch.ones(dim))
        self.register_buffer("max", torch.ones(dim))

    @torch.no_grad()
    def fit(self, data: np.ndarray | torch.Tensor) -> MinMaxNormalizer:
        data = torch.as_tensor(np.asarray(data, dtype=np.float32)).reshape(-1, self.min.numel())
        if not torch.isfinite(data).all():
            raise ValueError("cannot fit the normaliser: the data contains NaN or inf")
        self.min.copy_(data.min(dim=0).values)
        self.max.copy_(data.max(dim=0).values)
        return self

    def _scale_offset(self) -> tuple[torch.Tensor, torch.Tensor]:
        span = self.max - self.min
        constant = span < 1e-6
        scale = torch.where(constant, torch.ones_like(span), 2.0 / span.clamp_min(1e-6))
        offset = torch.where(constant, -self.min, -1.0 - self.min * scale)
        return scale, offset

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        scale, offset = self._scale_offset()
        return x * scale + offset

    def unnormalize(self, y: torch.Tensor) -> torch.Tensor:
        scale, offset = self._scale_offset()
        return (y - offset) / scale
