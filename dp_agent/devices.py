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


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: allocated on a CUDA device, else this process's peak resident size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource  # Unix

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def native_bf16(device: torch.device) -> bool:
    """Whether the device computes in bf16 natively: CUDA GPUs of compute capability 8.0+, and
    x86 CPUs with AVX512-BF16 or AMX (where bf16 convolutions and matmuls run about 1.5x faster
    than fp32 on one core, measured by ``benchmarks/training.py``)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        try:
            with open("/proc/cpuinfo") as f:
                flags = next((line for line in f if line.startswith("flags")), "").split()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


def use_bf16(precision: str, device: torch.device) -> bool:
    """Train with bf16 autocast? ``precision`` is "auto" (where the device has native bf16),
    "bf16" or "fp32". Weights, optimiser state, EMA and sampling stay fp32 in every case."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    return precision == "bf16" or (precision == "auto" and native_bf16(device))
