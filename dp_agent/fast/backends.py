"""Denoiser backends: how the sampling loop runs the U-Net during a chunk, faster than the
network's own forward and equal to it.

A chunk of K denoising steps calls the network K times with one observation and K known
timesteps. Everything that depends on those only (the step embedding, the observation features
and every residual block's FiLM scale and bias) is computed once per chunk by ``prepare``; each
step then runs the network without its conditioning MLPs:

    backend = make_backend("folded", denoiser)        # once per network (cached per policy)
    chunk = backend.prepare(cond, sampler.timesteps)  # once per chunk: cond (B, Dc), (K,)
    eps = chunk(x, i)                                 # K times: x (B, Tp, Da) -> (B, Tp, Da)

Backends, all equal to the eager network to float32 rounding (``TOLERANCE``):

- ``eager``: the network's own ``forward`` at every step (``dp_agent.policy.EagerSteps``), the
  reference; any denoiser.
- ``folded``: the U-Net's FiLM computed once per chunk and each step as time-major (B, T, C)
  matmuls (Conv1d as im2col + one GEMM on a view of its weights) in plain PyTorch; any device.
- ``openvino``: the per-step U-Net (standard ops, FiLM as an input) compiled by OpenVINO;
  CPU, float32, needs ``pip install openvino``. A plain chunk of at most
  ``WHOLE_CHUNK_MAX_STEPS`` steps (a distilled student's) with a vector observation runs as
  one graph of the whole chunk instead (``OpenVINOBackend.whole_chunk`` in
  ``dp_agent.fast.compiled``): encoder, FiLM, the K unrolled steps and the sampler's updates,
  one call from observation to actions. The large convolutions of a checkpoint stored as int8
  run on int8 weights (``_Int8Conv1d``).
- ``onnx``: the same graph exported to ONNX and run by ONNX Runtime; CPU, float32, needs
  ``pip install onnx onnxruntime``.

``auto`` is the fastest that applies (measured by ``benchmarks/latency.py``): on a CPU,
``openvino`` when installed, else ``folded`` up to ``FOLDED_MAX_BATCH`` rows per chunk (beyond,
eager PyTorch's batched convolutions catch up); ``eager`` on other devices and for any denoiser
but the U-Net. Compiling takes 1-3 s once per network, so ``auto`` compiles only networks of at
least ``COMPILE_MIN_PARAMS`` parameters (smaller ones are under 0.5 ms a call with ``folded``).
``onnx`` is never chosen by itself: faster than ``folded`` at batch 1 but slower from a few
rows on.
Packed weights and compiled graphs follow the network's weights: a backend checks them at every
``prepare`` and rebuilds after any change (an optimiser step, ``load_state_dict``, ``.to``).
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

import torch
from torch import nn

from dp_agent.fast.base import TOLERANCE, BackendUnavailable
from dp_agent.fast.compiled import OnnxRuntimeBackend, OpenVINOBackend
from dp_agent.fast.folded import FoldedBackend
from dp_agent.nets.unet import ConditionalUnet1D
from dp_agent.policy import EagerSteps

__all__ = ["TOLERANCE", "BackendUnavailable", "BACKENDS", "make_backend", "resolve_backend"]

BACKENDS = ("eager", "folded", "openvino", "onnx")
AUTO_ORDER = ("openvino", "folded")  # tried in this order for a U-Net on the CPU
FOLDED_MAX_BATCH = 16  # auto runs larger chunks of the folded backend's choice with eager
COMPILE_MIN_PARAMS = 500_000  # auto compiles (openvino) networks at least this large
_PACKAGES = {"openvino": ("openvino",), "onnx": ("onnx", "onnxruntime")}


def _missing_packages(name: str) -> list[str]:
    missing = []
    for package in _PACKAGES.get(name, ()):
        try:
            __import__(package)
        except ImportError:
            missing.append(package)
    return missing


def unavailable_reason(name: str, denoiser: nn.Module, device: torch.device, dtype) -> str | None:
    """Why backend ``name`` cannot run ``denoiser`` on ``device`` in ``dtype``; None if it can."""
    if name not in BACKENDS:
        return f"unknown backend {name!r}; choose one of {['auto', *BACKENDS]}"
    if name == "eager":
        return None
    if not isinstance(denoiser, ConditionalUnet1D):
        return f"backend {name!r} runs the U-Net only, not {type(denoiser).__name__}"
    if name == "folded":
        return None
    if torch.device(device).type != "cpu" or dtype != torch.float32:
        return f"backend {name!r} runs float32 on the CPU only, not {dtype} on {device}"
    missing = _missing_packages(name)
    if missing:
        return f"backend {name!r} needs `pip install {' '.join(missing)}`"
    return None


def resolve_backend(name: str, denoiser: nn.Module, device: torch.device, dtype) -> list[str]:
    """The backends to try, in order, for ``name`` ("auto" or one of ``BACKENDS``)."""
    if name != "auto":
        reason = unavailable_reason(name, denoiser, device, dtype)
        if reason is not None:
            raise BackendUnavailable(reason)
        return [name]
    if not isinstance(denoiser, ConditionalUnet1D) or torch.device(device).type != "cpu":
        return ["eager"]
    small = sum(p.numel() for p in denoiser.parameters()) < COMPILE_MIN_PARAMS
    usable = [
        n
        for n in AUTO_ORDER
        if unavailable_reason(n, denoiser, device, dtype) is None and not (small and n in _PACKAGES)
    ]
    return [*usable, "eager"]


def available_backends(denoiser: nn.Module, device="cpu", dtype=torch.float32) -> list[str]:
    """The backends that can run ``denoiser`` here."""
    return [n for n in BACKENDS if unavailable_reason(n, denoiser, device, dtype) is None]


def make_backend(name: str, denoiser: nn.Module):
    """A new backend object; packing weights waits for the first ``prepare`` and compiling a
    graph for the first step."""
    classes = {
        "eager": EagerSteps,
        "folded": FoldedBackend,
        "openvino": OpenVINOBackend,
        "onnx": OnnxRuntimeBackend,
    }
    if name not in classes:
        raise BackendUnavailable(f"unknown backend {name!r}; choose one of {['auto', *BACKENDS]}")
    return classes[name](denoiser)


class BackendCache:
    """The backends a policy has built, by (name, network, device, dtype, threads). A copied or
    pickled policy starts with an empty one (``Accelerated``: compiled graphs do not travel)."""

    def __init__(self, max_entries: int = 4):
        self.max_entries = max_entries
        self.entries: dict[tuple, Any] = {}
        self.lock = threading.Lock()

    def get(self, name: str, denoiser: nn.Module, device: torch.device, dtype):
        key = (name, id(denoiser), device, dtype, torch.get_num_threads())
        backend = self.entries.get(key)
        if backend is not None and backend.net is denoiser:
            return backend
        with self.lock:
            backend = self.entries.get(key)
            if backend is None or backend.net is not denoiser:
                backend = self._build(name, denoiser, device, dtype)
                if len(self.entries) >= self.max_entries:
                    self.entries.pop(next(iter(self.entries)))
                self.entries[key] = backend
            return backend

    @staticmethod
    def _build(name, denoiser, device, dtype):
        if name != "auto":
            resolve_backend(name, denoiser, device, dtype)  # raises BackendUnavailable
            return make_backend(name, denoiser)
        return AutoBackend(denoiser, resolve_backend(name, denoiser, device, dtype))


class AutoBackend:
    """The first of ``names`` that builds and runs; one that fails (at ``prepare`` or at its
    first step, where runtimes compile) falls through to the next with a warning, ending at
    ``eager``. Once a backend has run a step, its chunks are returned as they are."""

    name = "auto"

    def __init__(self, denoiser: nn.Module, names: list[str]):
        self.net = denoiser
        self.names = list(names)
        self.backend = make_backend(self.names[0], denoiser)
        self.proven = len(self.names) == 1
        self._eager = EagerSteps(denoiser)
        self._no_whole_chunk: set[str] = set()

    @property
    def chosen(self) -> str:
        return self.backend.name

    def prepare(self, cond: torch.Tensor, timesteps):
        if self.backend.name == "folded" and cond.shape[0] > FOLDED_MAX_BATCH:
            return self._eager.prepare(cond, timesteps)
        chunk = self._prepare(cond, timesteps)
        return chunk if self.proven else _FirstChunk(self, chunk, cond, timesteps)

    def whole_chunk(self, policy, sampler, obs, noise):
        """The chosen backend's ``whole_chunk`` where it has one, else None; one that fails
        is not tried again (the chunks run step by step) and says so once."""
        run = getattr(self.backend, "whole_chunk", None)
        if run is None or self.backend.name in self._no_whole_chunk:
            return None
        try:
            return run(policy, sampler, obs, noise)
        except Exception as e:
            self._no_whole_chunk.add(self.backend.name)
            warnings.warn(
                f"denoiser backend {self.backend.name!r} could not run the chunk as one graph "
                f"({type(e).__name__}: {e}); running it step by step",
                RuntimeWarning,
                stacklevel=3,
            )
            return None

    def _prepare(self, cond, timesteps):
        while True:
            try:
                return self.backend.prepare(cond, timesteps)
            except Exception as e:
                self._fall_through(e)

    def _fall_through(self, error: Exception) -> None:
        if len(self.names) == 1:
            raise error
        failed = self.names.pop(0)
        warnings.warn(
            f"denoiser backend {failed!r} failed ({type(error).__name__}: {error}); "
            f"using {self.names[0]!r}",
            RuntimeWarning,
            stacklevel=5,
        )
        self.backend = make_backend(self.names[0], self.net)
        self.proven = len(self.names) == 1


class _FirstChunk:
    """A chunk of an auto backend not yet proven: a failing step moves to the next backend."""

    def __init__(self, auto: AutoBackend, chunk, cond, timesteps):
        self.auto, self.chunk, self.args = auto, chunk, (cond, timesteps)

    def __call__(self, x: torch.Tensor, i: int) -> torch.Tensor:
        while True:
            try:
                out = self.chunk(x, i)
                self.auto.proven = True
                return out
            except Exception as e:
                self.auto._fall_through(e)
                self.chunk = self.auto._prepare(*self.args)
