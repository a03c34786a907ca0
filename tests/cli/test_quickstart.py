"""The headless quickstart (the README's main command on a machine with no display)."""

import subprocess
import sys

import numpy as np
import pygame
import pytest

pytestmark = pytest.mark.slow  # the headless quickstart, end to end


def test_quickstart_trains_evaluates_and_draws_the_denoising(tmp_path):
    out = tmp_path / "qs"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dp_agent.cli",
            "quickstart",
            "--steps",
            "10",
            "--episodes",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "trained now" in proc.stdout and "shipped pretrained" in proc.stdout
    assert (out / "final.safetensors").exists()
    image = pygame.surfarray.array3d(pygame.image.load(str(out / "denoising.png")))
    assert image.shape == (5 * 320, 320, 3)  # five panels, noise to plan
    panels = [image[i * 320 : (i + 1) * 320] for i in range(5)]
    assert not np.array_equal(panels[0], panels[-1])  # the trajectories changed as they denoised
