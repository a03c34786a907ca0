"""The image encoder: a GroupNorm ResNet-18 with a spatial-softmax keypoint head, random crops
while training and the centre crop at inference."""

import pytest
import torch

from dp_agent.config import make_configs
from dp_agent.nets.vision import ResNetImageEncoder, SpatialSoftmax, crop_images


@pytest.mark.parametrize(
    ("widths", "millions"), [((64, 128, 256, 512), 11.20), ((16, 32, 64, 128), 0.71)]
)
def test_parameter_counts_are_the_documented_ones(widths, millions):
    n = sum(p.numel() for p in ResNetImageEncoder(3, widths).parameters())
    assert round(n / 1e6, 2) == millions


@pytest.mark.parametrize("preset", ["cpu-image", "gpu-image"])
def test_no_batchnorm_anywhere_in_an_image_policy(preset):
    from dp_agent.policy import DiffusionPolicy

    spec = {
        "single": False,
        "parts": [
            {"key": "pixels", "shape": [96, 96, 3], "dtype": "uint8", "kind": "image"},
            {"key": "agent_pos", "shape": [2], "dtype": "float32", "kind": "vector"},
        ],
    }
    pc, _ = make_configs(preset, {"obs_dim": 2, "action_dim": 2, "obs_spec": spec})
    policy = DiffusionPolicy(pc)
    norms = {type(m).__name__ for m in policy.modules() if isinstance(m, torch.nn.Module)}
    assert "GroupNorm" in norms and not any("BatchNorm" in n for n in norms)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in policy.modules())


def test_spatial_softmax_puts_a_keypoint_on_a_bright_dot():
    head = SpatialSoftmax(1, num_keypoints=1)
    with torch.no_grad():
        head.to_maps.weight.fill_(20.0)  # a sharp attention map: the dot dominates the softmax
        head.to_maps.bias.zero_()
    for row, col in [(2, 9), (10, 3), (6, 6)]:
        image = torch.zeros(1, 1, 13, 13)
        image[0, 0, row, col] = 1.0
        x, y = head(image)[0].tolist()
        grid = torch.linspace(-1, 1, 13)
        assert x == pytest.approx(grid[col].item(), abs=0.02)
        assert y == pytest.approx(grid[row].item(), abs=0.02)


def test_crops_are_random_while_training_and_central_at_inference():
    images = torch.arange(96 * 96, dtype=torch.int32).reshape(1, 1, 96, 96).repeat(40, 1, 1, 1)
    centre = crop_images(images, 84, random=False)
    assert torch.equal(centre, images[:, :, 6:90, 6:90])
    crops = crop_images(images, 84, random=True, generator=torch.Generator().manual_seed(0))
    assert crops.shape == (40, 1, 84, 84)
    tops, lefts = crops[:, 0, 0, 0] // 96, crops[:, 0, 0, 0] % 96
    assert len(set(tops.tolist())) > 3 and len(set(lefts.tolist())) > 3  # different places
    for crop, top, left in zip(crops, tops, lefts, strict=True):  # each one a window
        assert torch.equal(crop, images[0, :, top : top + 84, left : left + 84])
    encoder = ResNetImageEncoder(1, (8, 8, 8, 8), crop=84)
    encoder.eval()
    x = torch.randint(0, 255, (2, 1, 96, 96), dtype=torch.uint8)
    assert torch.equal(encoder(x), encoder(x))  # eval: the same centre crop every time
