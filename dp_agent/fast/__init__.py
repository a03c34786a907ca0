"""Everything that exists only for speed, kept out of the model's reading path: FiLM folded once
per chunk, the per-step and whole-chunk graphs compiled by OpenVINO or ONNX Runtime, int8
weights in those graphs, and the CPU training kernels (``dp_agent.fast.kernels``). Each gives
what the eager network gives, to float32 rounding; the policy's code does not import this
package.

The one entry of the sampling fast path is ``accelerate(policy)``: it puts a backend in place
of the policy's reference ``EagerSteps`` (the policy's sampling loop is unchanged) and returns
the handle whose ``sample`` the agent calls.

The runtimes report nothing home from here: importing this package turns OpenVINO's and ONNX
Runtime's telemetry off for this process (``dp_agent.fast.compiled``).
"""

from __future__ import annotations

import copy

import torch

from dp_agent.fast.backends import (
    BACKENDS,
    BackendCache,
    BackendUnavailable,
    resolve_backend,
)

# the backends that run a plain few-step chunk as one graph (OpenVINOBackend.whole_chunk)
_WHOLE_CHUNK_BACKENDS = ("auto", "openvino")


def accelerate(policy, backend: str = "auto", *, whole_chunk: bool = True, rebuild: bool = False):
    """Run ``policy``'s denoiser through ``backend`` from now on: "auto" (the fastest that
    applies here), "eager" (the network's own forward, the reference), "folded", "openvino" or
    "onnx" (see ``dp_agent.fast.backends``); raises ``BackendUnavailable`` when ``backend``
    cannot run this network here. Returns the ``Accelerated`` handle, also installed as
    ``policy.runner``. Backends follow weight changes by themselves, except writes behind
    autograd's back (``p.data.mul_()``): ``rebuild=True`` after those. ``whole_chunk=False``
    keeps every chunk step by step where the backend (openvino) would run a short plain one as
    one graph."""
    if backend != "auto":
        if backend not in BACKENDS:
            raise BackendUnavailable(
                f"unknown backend {backend!r}; choose one of {['auto', *BACKENDS]}"
            )
        p = next(policy.denoiser.parameters())
        resolve_backend(backend, policy.denoiser, p.device, p.dtype)  # raises if it cannot run
    old = policy.runner
    cache = old.cache if isinstance(old, Accelerated) and not rebuild else BackendCache()
    policy.runner = Accelerated(policy, backend, whole_chunk, cache)
    return policy.runner


class Accelerated:
    """The fast path of one policy, its ``runner``: the policy's sampling loop calls ``prepare``
    once per chunk and the returned steps ``(x, i)`` K times, from the backend built for the
    chunk's device, dtype and torch's thread count (and cached). ``sample`` has the signature of
    ``DiffusionPolicy.sample`` and is that method itself, except where the backend may run a
    plain chunk as one graph: then ``_sample`` tries that first."""

    def __init__(self, policy, name: str = "auto", whole_chunk: bool = True, cache=None):
        self.policy, self.name, self.whole_chunk = policy, name, whole_chunk
        self.cache = BackendCache() if cache is None else cache
        graphs = whole_chunk and name in _WHOLE_CHUNK_BACKENDS
        self.sample = self._sample if graphs else policy.sample

    def prepare(self, cond, timesteps):
        """The steps of one chunk: a callable ``(x, i)`` -> the network's output at step i."""
        return self.backend(cond).prepare(cond, timesteps)

    def backend(self, like=None):
        """The backend object for tensors like ``like`` (default: the denoiser's device and
        dtype), built once and cached."""
        net = self.policy.denoiser
        like = next(net.parameters()) if like is None else like
        return self.cache.get(self.name, net, like.device, like.dtype)

    def _sample(
        self,
        obs,
        num_samples=1,
        sampler=None,
        num_inference_steps=None,
        generator=None,
        on_step=None,
        **options,
    ):
        """``DiffusionPolicy.sample``, with a plain chunk (no ``on_step``, inpainting, guidance
        or warm start; a vector observation) run as one call of the backend's graph of a whole
        chunk where it has one; else the policy's loop, on the same noise."""
        policy = self.policy
        plain = on_step is None and not (
            options.get("conditions")
            or options.get("guidance") is not None
            or options.get("start") is not None
            or options.get("start_step")
            or options.get("noise") is not None
        )
        plain = plain and torch.is_tensor(obs) and policy.config.objective != "mse"
        whole = getattr(self.backend(obs), "whole_chunk", None) if plain else None
        if whole is None:
            args = (num_samples, sampler, num_inference_steps, generator, on_step)
            return policy.sample(obs, *args, **options)
        rows = obs if num_samples == 1 else obs.repeat_interleave(num_samples, dim=0)
        s = policy.make_sampler(sampler, num_inference_steps)
        shape = (rows.shape[0], policy.config.pred_horizon, policy.config.action_dim)
        noise = policy.draw_noise(s.num_steps + 1, shape, num_samples, generator, rows.device)
        chunk = whole(policy, s, rows, noise)
        if chunk is not None:
            return chunk
        return policy.sample(obs, num_samples, sampler, num_inference_steps, noise=noise)

    def __deepcopy__(self, memo):  # a copy of the policy gets its own, empty cache
        return Accelerated(copy.deepcopy(self.policy, memo), self.name, self.whole_chunk)

    def __reduce__(self):  # compiled graphs do not travel
        return (Accelerated, (self.policy, self.name, self.whole_chunk))
