"""The image encoder of visuomotor Diffusion Policy, our own code: a ResNet-18 topology with
GroupNorm in place of BatchNorm (batch statistics do not mix with EMA weights and small batches),
a spatial-softmax keypoint head and a linear projection; random crops while training, the
centre crop at inference.

Shapes for a 96x96 RGB image cropped to 84 (widths w = (64, 128, 256, 512), ResNet-18):

    (B, 3, 96, 96) uint8 -> crop (B, 3, 84, 84) -> /255 float
    stem   7x7/2 conv, GN, ReLU, 3x3/2 max-pool    -> (B, w0, 21, 21)
    stage1 2 basic blocks                          -> (B, w0, 21, 21)
    stage2 2 basic blocks, first with stride 2     -> (B, w1, 11, 11)
    stage3                                         -> (B, w2, 6, 6)
    stage4                                         -> (B, w3, 3, 3)
    spatial softmax: 1x1 conv to K=32 maps, a softmax over each map's positions, its expected
    (x, y) in [-1, 1]                              -> (B, 2K) = (B, 64)
    linear + ReLU                                  -> (B, feature_dim)

Parameters: 11.2 M with the ResNet-18 widths (the ``gpu-image`` preset), 0.71 M with
(16, 32, 64, 128) (``cpu-image``); ``tests/test_vision.py`` checks both counts.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def feature_map_size(image_size: int, stages: int = 4) -> int:
    """Side of the last feature map for square images of ``image_size`` (stride 2 in the stem,
    the pool and every stage but the first)."""
    size = image_size
    for _ in range(2 + stages - 1):
        size = (size + 1) // 2
    return size


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 16 channels per group (the reference's choice), at least one group."""
    return nn.GroupNorm(max(1, channels // 16), channels)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and a residual connection (ResNet-18's block)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.norm1 = group_norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.norm2 = group_norm(out_ch)
        self.skip = (
            nn.Identity()
            if stride == 1 and in_ch == out_ch
            else nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), group_norm(out_ch))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(y)) + self.skip(x))


class SpatialSoftmax(nn.Module):
    """Keypoints of a feature map: (B, C, H, W) -> (B, 2K), the expected (x, y) of each of K
    softmax-normalised attention maps, coordinates in [-1, 1]."""

    def __init__(self, in_ch: int, num_keypoints: int = 32):
        super().__init__()
        self.to_maps = nn.Conv2d(in_ch, num_keypoints, 1)
        self.num_keypoints = num_keypoints

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        maps = self.to_maps(features)  # (B, K, H, W)
        b, k, h, w = maps.shape
        attention = maps.flatten(2).softmax(-1).view(b, k, h, w)
        ys = torch.linspace(-1.0, 1.0, h, device=maps.device, dtype=attention.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=maps.device, dtype=attention.dtype)
        x = (attention.sum(2) * xs).sum(-1)  # (B, K)
        y = (attention.sum(3) * ys).sum(-1)
        return torch.stack([x, y], dim=-1).flatten(1)  # (B, 2K)


class ResNetImageEncoder(nn.Module):
    """uint8 images (N, C, H, W) -> features (N, feature_dim); crops to ``crop`` x ``crop``
    (random per image in training mode, the centre in eval mode) before the backbone."""

    def __init__(
        self,
        in_channels: int = 3,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        crop: int | None = 84,
        num_keypoints: int = 32,
        feature_dim: int = 64,
    ):
        super().__init__()
        self.crop = crop
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False),
            group_norm(widths[0]),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        )
        blocks, ch = [], widths[0]
        for i, w in enumerate(widths):
            blocks += [BasicBlock(ch, w, 1 if i == 0 else 2), BasicBlock(w, w, 1)]
            ch = w
        self.stages = nn.Sequential(*blocks)
        self.keypoints = SpatialSoftmax(ch, num_keypoints)
        self.project = nn.Sequential(nn.Linear(2 * num_keypoints, feature_dim), nn.ReLU())
        self.feature_dim = feature_dim

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None):
        x = crop_images(images, self.crop, random=self.training, generator=generator)
        x = x.float() / 255.0
        return self.project(self.keypoints(self.stages(self.stem(x))))


def crop_images(
    images: torch.Tensor, size: int | None, random: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size): at a random place per image, or the centre."""
    n, _, h, w = images.shape
    if size is None or (size >= h and size >= w):
        return images
    if not random:
        top, left = (h - size) // 2, (w - size) // 2
        return images[:, :, top : top + size, left : left + size]
    device = images.device
    top = torch.randint(0, h - size + 1, (n,), generator=generator, device=device)
    left = torch.randint(0, w - size + 1, (n,), generator=generator, device=device)
    rows = (top[:, None] + torch.arange(size, device=device))[:, None, :, None]  # (N, 1, s, 1)
    cols = (left[:, None] + torch.arange(size, device=device))[:, None, None, :]  # (N, 1, 1, s)
    batch = torch.arange(n, device=device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=device)[None, :, None, None]
    return images[batch, channel, rows, cols]
