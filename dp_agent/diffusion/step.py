"""The denoising iterate, one type for the policy, the agent and the app (a light module: the
app's drawing code imports it without loading torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class DenoiseStep:
    """One iterate of the reverse process, in environment units.

    ``step`` counts from 0 (pure noise) to ``total`` = K (the final sample); ``pred_x0`` is the
    clean sample predicted at that step (equal to ``sample`` at steps 0 and K). The policy hands
    torch tensors (B, Tp, Da) to its ``on_step`` callback; the agent hands NumPy arrays.
    """

    step: int
    total: int
    sample: Any  # (B, Tp, Da)
    pred_x0: Any  # (B, Tp, Da)
