"""Sampling latency on this machine: one denoiser call per backend against the hardware floor,
the chunk latency of ``DiffusionPolicyAgent.predict`` per sampler (DDPM-100, DDIM-10,
DPM-Solver++-8) and the cost per environment step with the action queue.

    python benchmarks/latency.py [--network all|both|cpu-tiny,cpu-small,...]
        [--device cpu]
        [--threads 1] [--repeats 20] [--backends eager,folded,openvino,onnx]
        [--weights int8|float32] [--reference-src DIR]

Uses an untrained policy of the real size, PushT-sized observations (5 values) and actions
(2 values), To=2, Tp=16, Ta=8, batch of one env. Latency depends on the weights in one way
only: weights that are int8 rows, as the shipped students store them (``--weights int8``, the
default), let the openvino backend read its large convolutions as int8; ``--weights float32``
is a policy as trained (the shipped teachers, stored as float16, load as such weights).

The floor of one call: its compute floor is the network's per-step FLOPs (its convolutions,
counted from a forward pass; the FiLM MLPs are folded out of the step loop) over this machine's
matmul rate, measured at the start with the same thread count; its memory floor is the bytes of
weights one call reads over the rate at which one thread reads an array of that size here (from
the cache where it fits in the share a shared machine leaves, from memory where not); the
roofline floor is the larger. Every comparison is interleaved (A, B, A, B, ...) and reports
medians, so that load from other processes hits all variants alike.

``--reference-src DIR``: DIR is a local checkout of the original diffusion_policy repository;
its ``ConditionalUnet1D`` (diffusion_policy/model/diffusion/conditional_unet1d.py) is built with
the same shape as ours and its DDPM-100 loop with diffusers' DDPMScheduler is timed against our
default chunk. Nothing of it is copied here.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import functools
import importlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from dp_agent.agent import DiffusionPolicyAgent
from dp_agent.checkpoint import dequantize_int8, quantize_int8
from dp_agent.config import make_configs
from dp_agent.fast.backends import BackendUnavailable, make_backend, resolve_backend
from dp_agent.fast.compiled import WHOLE_CHUNK_MAX_STEPS, OpenVINOBackend, _FilmStep
from dp_agent.nets.unet import ConditionalUnet1D
from dp_agent.policy import DiffusionPolicy

# DDIM-2 and DDIM-3 are what the students of `dp-agent distill` run by default (the shipped
# PushT student: 3 steps on t = 99, 49, 5); their grids and v-prediction cost the same as any
# DDIM of that step count: latency does not depend on the weights or on where the steps fall
SAMPLERS = [("ddpm", 100), ("ddim", 10), ("dpmsolver++", 8), ("ddim", 3), ("ddim", 2)]
BACKEND_NAMES = ["eager", "folded", "openvino", "onnx"]
# cpu-tiny: the shipped PushT student's (32-64-128); cpu-small: its teacher's (64-128-256)
NETWORKS = ["cpu-tiny", "cpu-small", "gpu-standard"]


# ---- setup --------------------------------------------------------------------------------------


def make_agent(preset: str, device: str, weights: str = "int8") -> DiffusionPolicyAgent:
    """An untrained policy of the preset's size; ``weights="int8"``: its weights rounded to
    int8 rows as ``quantize_int8`` stores them (the shipped students'), which the openvino
    backend reads as int8."""
    pc, _ = make_configs(preset, {"obs_dim": 5, "action_dim": 2})
    policy = DiffusionPolicy(pc)
    rng = np.random.default_rng(0)
    policy.fit_normalizers(rng.uniform(0, 512, (256, 5)), rng.uniform(0, 512, (256, 2)))
    if weights == "int8":
        policy.load_state_dict(dequantize_int8(quantize_int8(policy.state_dict())))
    obs_space = gym.spaces.Box(0, 512, (5,), np.float64)
    act_space = gym.spaces.Box(0, 512, (2,), np.float32)
    return DiffusionPolicyAgent(policy, obs_space, act_space, device=device)


def machine_line(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    versions = [f"torch {torch.__version__}"]
    for package in ("openvino", "onnxruntime"):
        try:
            versions.append(f"{package} {importlib.import_module(package).__version__}")
        except ImportError:
            versions.append(f"{package} not installed")
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load average {os.getloadavg()[0]:.1f}"
    return (
        f"machine: {os.cpu_count()} cores ({cpu}), {', '.join(versions)}, "
        f"{torch.get_num_threads()} torch threads, device {device}{load}"
    )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved(candidates: dict[str, Callable[[], object]], rounds: int, per_round: int = 1):
    """Median seconds per call of each candidate, timed in turns: A, B, ..., A, B, ...
    (``per_round`` calls per turn). Each turn starts with an untimed call: the first call after
    another candidate reads weights that the others evicted from the cache, where in a control
    loop a chunk follows the last one with only the env's steps between them."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for fn in candidates.values():  # warm-up
        for _ in range(3):
            fn()
    for _ in range(rounds):
        for name, fn in candidates.items():
            fn()  # this candidate's weights back in the cache
            for _ in range(per_round):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


# ---- the floor ----------------------------------------------------------------------------------


def matmul_gflops(size: int = 512, repeats: int = 30) -> float:
    """This machine's fp32 matmul rate (GFLOP/s, median) with torch's current thread count."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t0)
    return 2 * size**3 / statistics.median(ts) / 1e9


def read_gbps(nbytes: int, repeats: int = 20) -> float:
    """The rate (GB/s, median) at which one thread reads an array of ``nbytes`` over and over,
    as a network call reads its weights: from the cache where they fit in what this machine
    leaves the process of it, from memory where they do not."""
    a = torch.ones(max(1, nbytes // 4))
    for _ in range(3):
        a.sum()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a.sum()
        ts.append(time.perf_counter() - t0)
    return a.numel() * 4 / statistics.median(ts) / 1e9


def step_weight_bytes(net: nn.Module, int8: bool) -> int:
    """Bytes of weights one per-step call reads (the FiLM MLPs are folded out of it): float32,
    or with the large convolutions int8 where ``int8`` and the weights are int8 rows."""
    step = _FilmStep(net, int8=int8)
    tensors = step.net.state_dict()
    return sum(
        t.numel() * t.element_size()
        for k, t in tensors.items()
        if ".film." not in k and not k.startswith("step_embed")
    )


def has_int8_convolutions(net: nn.Module) -> bool:
    """Whether the openvino backend would read some of ``net``'s convolutions as int8."""
    return isinstance(net, ConditionalUnet1D) and _FilmStep(net, int8=True).int8_convolutions > 0


def count_flops(net: nn.Module, args) -> tuple[float, float]:
    """(FLOPs of one forward, FLOPs of its convolutions only) at the given inputs: 2 x the
    multiply-adds of every Conv1d, ConvTranspose1d and Linear (the U-Net's Linear layers are
    its conditioning MLPs, which the folded backends compute once per chunk)."""
    macs = {"conv": 0, "linear": 0}

    def hook(module, inputs, output):
        x = inputs[0]
        if isinstance(module, nn.Conv1d):
            k = module.in_channels // module.groups * module.kernel_size[0]
            macs["conv"] += output.numel() * k
        elif isinstance(module, nn.ConvTranspose1d):
            macs["conv"] += x.numel() * module.out_channels * module.kernel_size[0]
        elif isinstance(module, nn.Linear):
            macs["linear"] += (
                x.numel() // module.in_features * module.in_features * (module.out_features)
            )

    kinds = (nn.Conv1d, nn.ConvTranspose1d, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            net(*args)
    finally:
        for h in handles:
            h.remove()
    return 2.0 * (macs["conv"] + macs["linear"]), 2.0 * macs["conv"]


# ---- one call -----------------------------------------------------------------------------------


def per_call_table(agent, names: list[str], rounds: int, gflops: float):
    """(markdown table, median seconds per call by backend) for one denoiser call at batch 1,
    each backend that can run here, interleaved; where openvino reads int8 weights, also its
    graph of float32 weights ("openvino, float32 graph")."""
    policy, device = agent.policy, agent.device
    net = policy.denoiser
    c = policy.config
    gen = torch.Generator().manual_seed(0)
    obs = torch.rand(1, c.obs_horizon, c.obs_dim, generator=gen).to(device) * 512
    x = torch.randn(1, c.pred_horizon, c.action_dim, generator=gen).to(device)
    sampler = policy.make_sampler()
    with torch.no_grad():
        cond = policy.encode(obs)
        k = sampler.timesteps[:1].to(device)
        total, conv = count_flops(net, (x, k, cond))
    steps, builds, outputs, reads = {}, {}, {}, {}
    weight_bytes = {}  # int8 -> bytes read per call (each a copy of the network to measure)
    for label, backend, int8 in _call_candidates(net, names, device, x.dtype):
        t0 = time.perf_counter()
        with torch.no_grad():
            chunk = backend.prepare(cond, sampler.timesteps)
            outputs[label] = chunk(x, 0).float().cpu()
        builds[label] = time.perf_counter() - t0
        if isinstance(net, ConditionalUnet1D) and int8 not in weight_bytes:
            weight_bytes[int8] = step_weight_bytes(net, int8)
        reads[label] = weight_bytes.get(int8, 0)

        def call(chunk=chunk):
            with torch.no_grad():
                out = chunk(x, 0)
            synchronize(device)
            return out

        steps[label] = call
    if not steps:
        return None, {}
    times = interleaved(steps, rounds, per_round=20)
    n_params = sum(p.numel() for p in net.parameters())
    floors = _floors(n_params, total, conv, gflops, reads)
    lines = [*floors.pop("lines"), "", *_call_rows(times, floors, outputs, builds)]
    return "\n".join(lines), times


def _call_candidates(net, names: list[str], device, dtype):
    """(label, backend, reads int8 weights) for each backend of ``names`` that runs here."""
    int8_net = has_int8_convolutions(net)
    for name in names:
        try:
            resolve_backend(name, net, device, dtype)
        except BackendUnavailable as e:
            print(f"  ({e})")
            continue
        backend = make_backend(name, net)
        int8 = int8_net and bool(getattr(backend, "int8_weights", False))
        yield name, backend, int8
        if int8:
            yield f"{name}, float32 graph", OpenVINOBackend(net, int8_weights=False), False


def _floors(n_params: int, total: float, conv: float, gflops: float, reads: dict) -> dict:
    """Per candidate the floor of one call: the larger of its FLOPs at the matmul rate and its
    weights' bytes at the rate this machine reads an array of that size; with the lines that
    say so."""
    compute = conv / (gflops * 1e9)
    rates = {n: read_gbps(n) for n in set(reads.values()) if n}
    lines = [
        f"One denoiser call, batch 1: {n_params / 1e6:.2f} M parameters, {total / 1e6:.1f} "
        f"MFLOP per eager call of which {conv / 1e6:.1f} MFLOP per folded step; matmul rate "
        f"{gflops:.0f} GFLOP/s -> compute floor {compute * 1e3:.2f} ms",
    ]
    for n, rate in sorted(rates.items(), reverse=True):
        lines.append(
            f"Weights read per call: {n / 1e6:.1f} MB, read at {rate:.0f} GB/s here (an array "
            f"of that size, one thread) -> memory floor {n / rate / 1e6:.2f} ms"
        )
    floors = {label: max(compute, n / rates[n] / 1e9 if n else 0.0) for label, n in reads.items()}
    return {"compute": compute, "lines": lines, **floors}


def _call_rows(times, floors, outputs, builds) -> list[str]:
    eager, ref = times.get("eager"), outputs.get("eager")
    lines = [
        "| backend | ms per call | x compute floor | x roofline floor | speed-up vs eager "
        "| max abs diff vs eager | first call (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, t in times.items():
        diff = "-" if ref is None else f"{(outputs[name] - ref).abs().max().item():.1e}"
        speed = "-" if eager is None else f"{eager / t:.1f}x"
        lines.append(
            f"| {name} | {t * 1e3:.3f} | {t / floors['compute']:.1f} | {t / floors[name]:.1f} "
            f"| {speed} | {diff} | {builds[name]:.2f} |"
        )
    return lines


# ---- chunks through predict ---------------------------------------------------------------------


def chunk_table(agent, preset: str, backends: list[str], repeats: int) -> str:
    """Per backend (one at a time, so that its weights stay as warm as in use) and sampler,
    interleaved: the latency of a predict call that samples a chunk, K direct calls of the
    backend's step, the sampler's K steps alone, and the cost per env step over one queue (the
    chunk plus Ta - 1 queued actions). Where the backend runs short chunks as one graph, the
    same chunks step by step are timed beside them (rows "..., step by step")."""
    results = {}
    for backend in backends:
        agent.set_backend(backend)
        results.update(_time_backend(agent, backend, repeats))
    agent.set_backend("auto")
    agent.set_sampler(agent.config.sampler, agent.config.num_inference_steps)
    return _chunk_lines(agent, preset, backends, results)


def _chunk_candidates(agent) -> dict:
    """(sampler, what) -> a function timing it, for every sampler, on the current backend; for
    a backend that runs short chunks as one graph (openvino), those chunks also step by step,
    and where it reads int8 weights, also as a graph of float32 weights."""
    c, policy, device = agent.config, agent.policy, agent.device
    backend = policy.runner.name
    built = policy.runner.backend()
    built = getattr(built, "backend", built)  # auto: what it chose
    whole = hasattr(built, "whole_chunk")
    f32 = None
    if whole and built.int8_weights and has_int8_convolutions(policy.denoiser):
        f32 = copy.deepcopy(agent)  # the same weights, its own backends (float32 graphs)
        f32.set_backend(backend)
        inner = f32.policy.runner.backend()
        getattr(inner, "backend", inner).int8_weights = False
    obs, ta = np.full(c.obs_dim, 200.0), c.action_horizon
    x = torch.randn(1, c.pred_horizon, c.action_dim, device=device)
    with torch.no_grad():
        cond = policy.encode(torch.full((1, c.obs_horizon, c.obs_dim), 200.0, device=device))
    candidates = {}
    for name, steps in SAMPLERS:
        sampler = policy.make_sampler(name, steps)
        with torch.no_grad():
            chunk = policy.runner.prepare(cond, sampler.timesteps)

        def queue(name=name, steps=steps, whole_chunk=True, agent=agent):
            agent.set_backend(backend, whole_chunk=whole_chunk)
            agent.set_sampler(name, steps)
            agent.reset()
            t0 = time.perf_counter()
            agent.predict(obs)  # samples a chunk
            synchronize(device)
            t1 = time.perf_counter()
            for _ in range(ta - 1):
                agent.predict(obs)  # pops the queue
            return t1 - t0, (time.perf_counter() - t0) / ta

        def calls(chunk=chunk, steps=steps):
            with torch.no_grad():
                for i in range(steps):
                    chunk(x, i)
            synchronize(device)

        def sampler_steps(sampler=sampler, steps=steps):
            eps, carry = torch.randn_like(x), None
            with torch.no_grad():
                for i in range(steps):
                    carry = sampler.step(eps, i, x, carry=carry, noise=eps).carry
            synchronize(device)

        candidates[(name, steps, "queue")] = queue
        if whole and steps <= WHOLE_CHUNK_MAX_STEPS:
            candidates[(name, steps, "queue, step by step")] = lambda q=queue: q(whole_chunk=False)
            if f32 is not None:
                candidates[(name, steps, "queue, float32 graph")] = lambda q=queue: q(agent=f32)
        candidates[(name, steps, "calls")] = calls
        candidates[(name, steps, "sampler")] = sampler_steps
    return candidates


def _time_backend(agent, backend: str, repeats: int) -> dict:
    """(sampler, backend) -> (chunk s, K calls s, sampler steps s, per env step s), medians."""
    candidates = _chunk_candidates(agent)
    times = {key: [] for key in candidates}
    for fn in candidates.values():  # warm-up (and builds)
        fn()
    for r in range(repeats):
        for key, fn in candidates.items():
            if key[0] == "ddpm" and r >= max(3, repeats // 5):
                continue  # DDPM-100 is 10x the others: fewer repeats
            fn()  # untimed, as in ``interleaved``: its weights back in the cache
            t0 = time.perf_counter()
            out = fn()
            times[key].append(out if out is not None else time.perf_counter() - t0)
    results = {}
    for name, steps in SAMPLERS:
        queued = times[(name, steps, "queue")]
        results[(name, steps, backend)] = (
            statistics.median(q[0] for q in queued),
            statistics.median(times[(name, steps, "calls")]),
            statistics.median(times[(name, steps, "sampler")]),
            statistics.median(q[1] for q in queued),
        )
        for variant in ("step by step", "float32 graph"):
            other = times.get((name, steps, f"queue, {variant}"))
            if other:
                results[(name, steps, f"{backend}, {variant}")] = (
                    statistics.median(q[0] for q in other),
                    *results[(name, steps, backend)][1:3],
                    statistics.median(q[1] for q in other),
                )
    return results


def _chunk_lines(agent, preset: str, backends: list[str], results: dict) -> str:
    n_params = sum(p.numel() for p in agent.policy.parameters())
    lines = [
        "| network | params | sampler | backend | chunk latency (ms) | K calls (ms) "
        "| chunk / K calls | sampler's K steps (ms) | per env step, queued (ms) "
        "| speed-up vs eager DDPM-100 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = results.get(("ddpm", 100, "eager"), (float("nan"),))[0]
    for name, steps in SAMPLERS:
        variants = ("", ", step by step", ", float32 graph")
        for backend in [a + v for a in backends for v in variants]:
            if (name, steps, backend) not in results:
                continue
            chunk, calls, sampler, per_step = results[(name, steps, backend)]
            lines.append(
                f"| {preset} | {n_params / 1e6:.2f} M | {name}-{steps} | {backend} | "
                f"{chunk * 1e3:.1f} | {calls * 1e3:.1f} | {chunk / calls:.2f} | "
                f"{sampler * 1e3:.2f} | {per_step * 1e3:.2f} | {base / chunk:.1f}x |"
            )
    return "\n".join(lines)


# ---- the original implementation ----------------------------------------------------------------


def load_reference_unet(src: str | Path):
    """The original ``ConditionalUnet1D`` class from a local diffusion_policy checkout."""
    src = Path(src).resolve()
    path = src / "diffusion_policy" / "model" / "diffusion" / "conditional_unet1d.py"
    if not path.is_file():
        raise FileNotFoundError(f"--reference-src: {path} not found")
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
    try:
        module = importlib.import_module("diffusion_policy.model.diffusion.conditional_unet1d")
    except ImportError as e:
        raise ImportError(
            f"importing the original ConditionalUnet1D from {src} failed ({e}); it needs einops "
            "(pip install einops)"
        ) from e
    if Path(module.__file__).resolve() != path:
        raise ImportError(f"diffusion_policy was imported from {module.__file__}, not from {src}")
    return module.ConditionalUnet1D


def reference_chunk(src, agent, generator: torch.Generator):
    """(reference model, one DDPM-100 chunk as in the original's conditional_sample): the
    original U-Net with our network's shape, stepped by diffusers' DDPMScheduler."""
    from diffusers import DDPMScheduler

    c = agent.config
    cond_dim = c.obs_horizon * (c.obs_feature_dim if c.obs_encoder == "mlp" else c.obs_dim)
    reference = load_reference_unet(src)(
        input_dim=c.action_dim,
        local_cond_dim=None,
        global_cond_dim=cond_dim,
        diffusion_step_embed_dim=c.step_embed_dim,
        down_dims=list(c.down_dims),
        kernel_size=c.kernel_size,
        n_groups=c.n_groups,
        cond_predict_scale=True,
    ).eval()
    scheduler = DDPMScheduler(
        num_train_timesteps=c.num_train_steps,
        beta_schedule=c.beta_schedule,
        clip_sample=c.clip_sample,
        prediction_type=c.prediction_type,
        variance_type="fixed_small",
    )
    cond = torch.randn(1, cond_dim, generator=generator)

    def chunk():
        with torch.no_grad():
            scheduler.set_timesteps(100)
            x = torch.randn((1, c.pred_horizon, c.action_dim), generator=generator)
            for t in scheduler.timesteps:
                out = reference(x, t, local_cond=None, global_cond=cond)
                x = scheduler.step(out, t, x, generator=generator).prev_sample
        return x

    return reference, chunk


def predict_chunk(agent, name: str, steps: int):
    """A function that samples one chunk through ``agent.predict`` with sampler ``name``."""
    obs = np.full(agent.config.obs_dim, 200.0)

    def run():
        agent.set_sampler(name, steps)
        agent.reset()
        agent.predict(obs)

    return run


def reference_table(src, agent, repeats: int, narrower=None) -> str:
    """The original's DDPM-100 loop against our default chunk and our DDPM-100, interleaved;
    with ``narrower`` (an agent of a narrower network, the shipped student's), also its DDIM-3
    chunk against the original on this network (its teacher's, whose score it keeps)."""
    reference, ref_chunk = reference_chunk(src, agent, torch.Generator().manual_seed(0))
    default = (agent.config.sampler, agent.config.num_inference_steps)
    ours = functools.partial(predict_chunk, agent)
    candidates = {
        "original ConditionalUnet1D + diffusers DDPMScheduler, DDPM-100": ref_chunk,
        "ours, DDPM-100 (agent.predict, default backend)": ours("ddpm", 100),
        f"ours, default {default[0]}-{default[1]} (agent.predict)": ours(*default),
        "ours, distilled student's ddim-3 (agent.predict)": ours("ddim", 3),
        "ours, distilled student's ddim-2 (agent.predict)": ours("ddim", 2),
    }
    if narrower is not None:
        dims = "-".join(map(str, narrower.config.down_dims))
        candidates[f"ours, a {dims} student's ddim-3 (agent.predict)"] = predict_chunk(
            narrower, "ddim", 3
        )
    times = interleaved(candidates, max(3, repeats // 5))
    agent.set_sampler(*default)
    base = times[next(iter(candidates))]
    n_ref = sum(p.numel() for p in reference.parameters())
    n_ours = sum(p.numel() for p in agent.policy.denoiser.parameters())
    lines = [
        f"Original implementation from {src}: {n_ref / 1e6:.2f} M parameters "
        f"(ours {n_ours / 1e6:.2f} M)",
        "",
        "| loop | ms per chunk | speed-up vs original DDPM-100 |",
        "|---|---|---|",
    ]
    for name, t in times.items():
        lines.append(f"| {name} | {t * 1e3:.1f} | {base / t:.1f}x |")
    return "\n".join(lines)


# ---- main ---------------------------------------------------------------------------------------


def networks_arg(text: str) -> list[str]:
    """``--network``: "all", "both" or presets, comma-separated, in the order of NETWORKS."""
    names = {"all": NETWORKS, "both": NETWORKS[1:]}.get(text) or [
        n.strip() for n in text.split(",") if n.strip()
    ]
    unknown = [n for n in names if n not in NETWORKS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown network {unknown[0]!r}; choose from {NETWORKS}")
    return [n for n in NETWORKS if n in names]


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from report import add_results_option, write_result  # benchmarks/report.py

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--network",
        default="all",
        type=networks_arg,
        help=f"the U-Net presets, comma-separated, of {', '.join(NETWORKS)}; both: cpu-small "
        "and gpu-standard; all: the three",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument(
        "--backends",
        default=",".join(BACKEND_NAMES),
        help="denoiser backends to compare (comma-separated; missing ones are skipped)",
    )
    parser.add_argument(
        "--weights",
        default="int8",
        choices=["int8", "float32"],
        help="the untrained policy's weights rounded to int8 rows as the shipped students "
        "store them (default), or float32 as trained",
    )
    parser.add_argument(
        "--reference-src",
        metavar="DIR",
        help="a local checkout of the original diffusion_policy repository to time against",
    )
    add_results_option(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out: list[str] = []  # printed as measured, and written to docs/results/latency.md

    def say(text: str = "") -> None:
        print(text, flush=True)
        out.append(text)

    print(f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(machine_line(args.device))
    gflops = matmul_gflops()
    say(f"matmul rate: {gflops:.0f} GFLOP/s (fp32 512x512, {torch.get_num_threads()} threads)")
    for preset, table in _tables(args, gflops):
        say(f"\n{preset}, {args.weights} weights\n")
        say(table)
    n = torch.get_num_threads()
    title = f"{', '.join(args.network)} on {args.device}: {args.weights} weights, {n} torch thread"
    write_result("latency", title + "s" * (n > 1), "\n".join(out), args=args)


def _tables(args, gflops: float):
    """(preset, its tables as Markdown) for each network asked for."""
    requested = [b.strip() for b in args.backends.split(",") if b.strip()]
    agents = {}
    for preset in args.network:
        agent = agents[preset] = make_agent(preset, args.device, args.weights)
        lines = []
        table, per_call = per_call_table(agent, requested, max(3, args.repeats), gflops)
        if table:
            lines += [table, ""]
        chosen = agent.policy.runner.backend()
        default = getattr(chosen, "chosen", chosen.name)
        backends = [b for b in dict.fromkeys(["eager", "folded", default]) if b in per_call]
        lines += [f"Chunks through agent.predict (the default backend here: {default}):", ""]
        lines.append(chunk_table(agent, preset, backends, args.repeats))
        if args.reference_src:
            narrower = agents.get("cpu-tiny") if preset == "cpu-small" else None
            lines += ["", reference_table(args.reference_src, agent, args.repeats, narrower)]
        yield preset, "\n".join(lines)


if __name__ == "__main__":
    main()
