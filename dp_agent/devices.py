"""Which torch device to run on: CUDA > MPS > CPU for "auto", checked otherwise."""

from __future__ import annotations

import torch


def select_device(name: str | torch.device | None = "auto") -> torch.device:
    """CUDA > MPS > CPU for "auto" (or None); otherwise the named device, checked to exist."""
    name = "auto" if name is None else str(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for, but torch sees no CUDA GPU")
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ValueError(f"device {name!r} was asked for, but torch has no MPS backend here")
    return device


def device_name(device: torch.device) -> str:
    """ "NVIDIA H100 ..." for CUDA, else the device type in capitals."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type.upper()


def bf16_autocast_ok(device: torch.device) -> bool:
    """bf16 autocast pays off on CUDA GPUs with native bf16 (compute capability 8.0+)."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8
