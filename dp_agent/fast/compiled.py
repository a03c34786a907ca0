"""The compiled backends: the U-Net's per-step graph (FiLM as an input) compiled by OpenVINO or
ONNX Runtime, a few-step chunk as one OpenVINO graph, and int8 weights in those graphs. CPU,
float32; each needs its runtime installed. Importing this module keeps both runtimes' telemetry
out of the process (see "No calls home" below)."""

from __future__ import annotations

import copy
import importlib.abc
import os
import sys
import threading
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dp_agent.fast.base import (
    BackendUnavailable,
    _FilmFolding,
    _plain_upsample,
    _WeightsWatch,
    upsample_kernels,
)
from dp_agent.nets.unet import ConditionalUnet1D

# No calls home. Two runtimes report usage from the moment they are imported unless told not to,
# and each is told so here, for this process only; what the user chose (their consent files,
# their environment) stands.
# - OpenVINO's conversion API (openvino.tools.ovc, imported by ``import openvino``) reports to
#   Intel's Google Analytics through the openvino-telemetry package: at import and at each
#   conversion it writes a client id to ~/intel/openvino_ga_cid and forks a process per event to
#   send it (openvino_telemetry/backend/backend_ga4.py), which without a network outlives ours.
#   ovc has a silent stand-in for when that package is missing (openvino/tools/ovc/
#   telemetry_stub.py): here ovc gets that stand-in. ~/intel/openvino_telemetry, the user's
#   consent file, and other importers of openvino_telemetry are left as they are.
# - ONNX Runtime (1.32, Linux included) sends events to Microsoft (its 1DS client) and keeps a
#   device id in ~/.cache/Microsoft/DeveloperTools/.onnxruntime, unless ORT_DISABLE_TELEMETRY is
#   set when it loads; set for this process unless the user has set it (``=0`` keeps it on).


class _OvcWithoutTelemetry(importlib.abc.MetaPathFinder):
    """Answers "not installed" to ``import openvino_telemetry`` while openvino.tools.ovc is
    being imported (so that ovc takes its stub); any other import goes to the usual finders."""

    def find_spec(self, name, path=None, target=None):
        if name == "openvino_telemetry" and _being_imported("openvino.tools.ovc"):
            raise ModuleNotFoundError(f"{name} is kept out of OpenVINO by dp-agent", name=name)
        return None


def _being_imported(name: str) -> bool:
    spec = getattr(sys.modules.get(name), "__spec__", None)
    return bool(getattr(spec, "_initializing", False))  # set by importlib while it runs the module


if not any(isinstance(f, _OvcWithoutTelemetry) for f in sys.meta_path):
    sys.meta_path.insert(0, _OvcWithoutTelemetry())  # before anything imports openvino
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before anything imports onnxruntime


class _GroupNormAsLayerNorm(nn.Module):
    """GroupNorm written as a layer norm over each group's (C/G * T) values, which the
    runtimes map to their fused normalisation kernel (their GroupNorm kernels are slower)."""

    def __init__(self, norm: nn.GroupNorm):
        super().__init__()
        self.groups, self.eps = norm.num_groups, norm.eps
        self.weight, self.bias = norm.weight, norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t = x.shape
        size = int(c // self.groups * t)  # a constant of the graph (only the batch is dynamic)
        y = F.layer_norm(x.reshape(n, self.groups, size), (size,), eps=self.eps)
        return y.reshape(n, c, t) * self.weight[:, None] + self.bias[:, None]


class _UpsampleAsConv(nn.Module):
    """ConvTranspose1d(C, C', 4, stride=2, padding=1) as a Conv1d(C, 2C', 3, padding=1) of the
    even and odd outputs (``upsample_kernels``), then interleaved: the runtimes'
    transposed convolutions run a slow generic GEMM at these sizes (OpenVINO: 20-55 µs each
    against ~10 for the convolution, on the 1.3 M cpu-tiny U-Net; its 3-step chunk 2-7 % faster
    overall, 2026-12-04)."""

    def __init__(self, m: nn.ConvTranspose1d):
        super().__init__()
        weight, bias = upsample_kernels(m)  # (2C', C*3), (2C',)
        self.out_ch = m.out_channels
        # buffers, not an nn.Conv1d: its random initialisation would draw from torch's global
        # generator whenever a graph is built, and move what seeded code samples next
        self.register_buffer("weight", weight.view(2 * self.out_ch, m.in_channels, 3).clone())
        self.register_buffer("bias", bias.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv1d(x, self.weight, self.bias, padding=1)  # (B, [even | odd], T)
        n, _, t = y.shape
        return y.view(n, 2, self.out_ch, t).permute(0, 2, 3, 1).reshape(n, self.out_ch, 2 * t)


INT8_MIN_VALUES = 131_072  # convolutions at least this large (0.5 MB in float32) run as int8


def int8_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(int8 values, float32 scale per row along the first axis) that give back ``weight``
    to float32 rounding, or None where it is not such a product: the weights of a checkpoint
    stored as int8 (``checkpoint.quantize_int8``) and loaded, never trained float32 weights,
    whose values fall anywhere between the steps of a row (off by a quarter step on average)."""
    rows = weight.detach().float().reshape(weight.shape[0], -1)
    scale = rows.abs().amax(1).clamp_min(1e-30) / 127.0
    q = torch.round(rows / scale[:, None])
    if (q * scale[:, None] - rows).abs().gt(1e-4 * scale[:, None]).any():
        return None
    return q.to(torch.int8).reshape(weight.shape), scale


class _Int8Conv1d(nn.Module):
    """A Conv1d whose weights are int8 rows (``int8_rows``), as the taps side by side (B, T,
    k*C) times the int8 matrix converted and scaled in the graph, which OpenVINO runs as one
    fully connected layer reading its weights as int8. At batch 1 the deep convolutions of the
    U-Net are bound by reading their weights; in int8 they read a quarter of the bytes, and
    the network's weights fit in the cache a shared machine leaves it."""

    def __init__(self, conv: nn.Conv1d, q: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        c_out, c_in, k = q.shape
        # the taps' order, tap-major: column j * C_in + c
        self.register_buffer("q", q.permute(0, 2, 1).reshape(c_out, k * c_in).contiguous())
        self.register_buffer("scale", scale[:, None].clone())
        bias = conv.bias if conv.bias is not None else torch.zeros(c_out)
        self.register_buffer("bias", bias.detach().float().clone())
        self.k, self.pad, self.stride = k, conv.padding[0], conv.stride[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t_out = (x.shape[-1] + 2 * self.pad - self.k) // self.stride + 1
        x = F.pad(x, (self.pad, self.pad)) if self.pad else x
        span = self.stride * (t_out - 1) + 1
        taps = torch.cat([x[:, :, j : j + span : self.stride] for j in range(self.k)], dim=1)
        weight = self.q.to(torch.float32) * self.scale  # (C_out, k*C_in), int8 in the graph
        return (torch.matmul(taps.transpose(1, 2), weight.t()) + self.bias).transpose(1, 2)


def _int8_convolutions(net: nn.Module) -> int:
    """Swap, in place, every plain Conv1d of at least ``INT8_MIN_VALUES`` weights that are
    int8 rows for an ``_Int8Conv1d``; the number swapped."""
    swapped = 0
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if not (
                isinstance(child, nn.Conv1d)
                and child.weight.numel() >= INT8_MIN_VALUES
                and child.groups == 1
                and child.dilation == (1,)
                and child.padding_mode == "zeros"
                and isinstance(child.padding, tuple)
            ):
                continue
            rows = int8_rows(child.weight)
            if rows is not None:
                setattr(module, name, _Int8Conv1d(child, *rows))
                swapped += 1
    return swapped


class _FilmStep(nn.Module):
    """(sample (B, Tp, Da), film (B, F)) -> (B, Tp, Da): the graph the runtimes compile, on a
    copy of the network (the compiled graph is a snapshot of the weights anyway). With
    ``int8``, the large convolutions whose weights are int8 rows run as ``_Int8Conv1d``."""

    def __init__(self, net: ConditionalUnet1D, layer_norm_groups: bool = True, int8=False):
        super().__init__()
        self.net = copy.deepcopy(net).float().cpu().eval()
        for module in list(self.net.modules()):
            for name, child in list(module.named_children()):
                if layer_norm_groups and isinstance(child, nn.GroupNorm):
                    setattr(module, name, _GroupNormAsLayerNorm(child))
                elif _plain_upsample(child):
                    setattr(module, name, _UpsampleAsConv(child))
        self.int8_convolutions = _int8_convolutions(self.net) if int8 else 0

    def forward(self, sample: torch.Tensor, film: torch.Tensor) -> torch.Tensor:
        return self.net.forward_film(sample, film)


class _CompiledBackend:
    """FiLM once per chunk in PyTorch, the per-step graph in a runtime (float32, CPU)."""

    name = ""
    int8_weights = False  # whether the graph reads the weights of int8 checkpoints as int8

    def __init__(self, denoiser: ConditionalUnet1D):
        self.net = denoiser
        self._watch = _WeightsWatch(denoiser)
        self._film: _FilmFolding | None = None
        self._runner = None
        self._shape: tuple[int, int] | None = None
        self._lock = threading.Lock()  # one compilation at a time

    def prepare(self, cond: torch.Tensor, timesteps) -> _CompiledChunk:
        if cond.device.type != "cpu" or cond.dtype != torch.float32:
            raise BackendUnavailable(f"backend {self.name!r} runs float32 on the CPU only")
        if self._watch.changed() or self._runner is None:
            self._film = _FilmFolding(self.net)
            self._runner = None
        table = self._film.table(cond, timesteps).numpy()  # (K, B, F)
        return _CompiledChunk(self, table)

    def run(self, x: torch.Tensor, film: np.ndarray) -> torch.Tensor:
        shape = tuple(x.shape[1:])
        runner = self._runner
        if runner is None or self._shape != shape:
            with self._lock:
                if self._runner is None or self._shape != shape:
                    self._runner, self._shape = self._compile(x, film), shape
                runner = self._runner
        return torch.from_numpy(runner(np.ascontiguousarray(x.numpy()), film))

    def _example(self, x: torch.Tensor, film: np.ndarray):
        step = _FilmStep(self.net, int8=self.int8_weights)
        return step, (torch.zeros_like(x), torch.from_numpy(np.zeros_like(film)))

    def _compile(self, x, film):
        raise NotImplementedError


class _CompiledChunk:
    def __init__(self, backend: _CompiledBackend, table: np.ndarray):
        self.backend, self.table = backend, table

    def __call__(self, x: torch.Tensor, i: int) -> torch.Tensor:
        return self.backend.run(x, self.table[i])


class OpenVINOBackend(_CompiledBackend):
    """The per-step graph converted from PyTorch by OpenVINO (``_openvino_runner``: compiled
    for one row, and with the batch dynamic for more), run with as many threads as torch
    uses, in float32 (no bf16 downcast on CPUs that have it).
    Chunks of at most ``WHOLE_CHUNK_MAX_STEPS`` steps run as one graph (``whole_chunk``)."""

    name = "openvino"

    def __init__(self, denoiser: ConditionalUnet1D, int8_weights: bool = True):
        super().__init__(denoiser)
        self.int8_weights = int8_weights  # large convolutions of int8 checkpoints read as int8
        self._policy_watch: tuple[Any, _WeightsWatch] | None = None
        self._chunks: dict[int, tuple[Any, Any, tuple]] = {}  # id(sampler) -> graph

    def _compile(self, x, film):
        step, example = self._example(x, film)
        shapes = [[-1, *x.shape[1:]], [-1, film.shape[-1]]]
        return _openvino_runner(step, example, shapes)

    def whole_chunk(self, policy, sampler, obs: torch.Tensor, noise: torch.Tensor):
        """The chunk (R, Tp, Da) in env units for ``obs`` (R, To, Do) env units and ``noise``
        (K+1, R, Tp, Da), in one call of a graph of the whole chunk (``_ChunkGraph``); None
        where that does not apply (more steps, image or dict observations, not CPU float32),
        for the caller to run the chunk step by step."""
        if (
            sampler.num_steps > WHOLE_CHUNK_MAX_STEPS
            or not isinstance(obs, torch.Tensor)
            or obs.dtype != torch.float32
            or obs.device.type != "cpu"
            or policy.obs_spec.image_parts
        ):
            return None
        watch = self._policy_watch
        if watch is None or watch[0] is not policy:
            watch = self._policy_watch = (policy, _WeightsWatch(policy))
        if watch[1].changed():
            self._chunks.clear()
        shape = (tuple(obs.shape[1:]), tuple(noise.shape[2:]))
        entry = self._chunks.get(id(sampler))
        if entry is None or entry[0] is not sampler or entry[2] != shape:
            with self._lock:
                graph = _ChunkGraph(policy, sampler, int8=self.int8_weights)
                example = (obs, noise)
                shapes = [[-1, *shape[0]], [noise.shape[0], -1, *shape[1]]]
                entry = (sampler, _openvino_runner(graph, example, shapes), shape)
                if len(self._chunks) >= 4:
                    self._chunks.pop(next(iter(self._chunks)))
                self._chunks[id(sampler)] = entry
        return torch.from_numpy(entry[1](np.ascontiguousarray(obs.numpy()), noise.numpy()))


WHOLE_CHUNK_MAX_STEPS = 4  # openvino runs chunks of at most this many steps as one graph


class _ChunkGraph(nn.Module):
    """A whole chunk as one graph, the steps unrolled: (obs (R, To, Do) env units, noise
    (K+1, R, Tp, Da)) -> the chunk (R, Tp, Da) in env units. The observation encoder, every
    step's FiLM (``_FilmFolding``), K per-step U-Nets (``_FilmStep``: one set of weights,
    shared by the K calls in the compiled graph) and the sampler's updates, whose per-step
    coefficients become constants. What is left between the calls of a few-step chunk (the
    encoder, the FiLM table, the updates, tensor conversions) costs as much as a network call
    at batch 1; in one graph it is gone."""

    def __init__(self, policy, sampler, int8: bool = False):
        super().__init__()
        self.policy, self.sampler = policy, sampler
        self.film = _FilmFolding(policy.denoiser)
        self.step = _FilmStep(policy.denoiser, int8=int8)

    def forward(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        table = self.film.table(self.policy.encode(obs), self.sampler.timesteps)  # (K, R, F)
        x, carry = noise[0], None
        for i in range(self.sampler.num_steps):
            out = self.sampler.step(self.step(x, table[i]), i, x, carry=carry, noise=noise[i + 1])
            x, carry = out.prev_sample, out.carry
        return self.policy.action_normalizer.unnormalize(x)


def _openvino():
    """The ``openvino`` module, its conversions silent: where something imported openvino before
    this module (so before ``_OvcWithoutTelemetry``), ovc's modules get the stub in place of the
    telemetry package now, before our first conversion."""
    import openvino as ov

    real = sys.modules.get("openvino_telemetry")
    ovc = [m for n, m in list(sys.modules.items()) if n.startswith("openvino.tools.ovc.")]
    reporting = [m for m in ovc if real is not None and getattr(m, "tm", None) is real]
    if reporting:  # (convert_impl, telemetry_utils, utils: each holds the package as ``tm``)
        from openvino.tools.ovc import telemetry_stub

        for m in reporting:
            m.tm = telemetry_stub
    return ov


def _openvino_model(module: nn.Module, example: tuple[torch.Tensor, ...], shapes):
    """``module`` traced on zeros shaped like ``example`` and converted to an OpenVINO model
    whose inputs have ``shapes`` (-1: dynamic)."""
    ov = _openvino()

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on constant sizes
        example = tuple(torch.zeros_like(t) for t in example)
        traced = torch.jit.trace(module, example, check_trace=False)  # faster to convert
        return ov.convert_model(
            traced, example_input=example, input=[ov.PartialShape(s) for s in shapes]
        )


def _openvino_config(core) -> dict[str, Any]:
    """The CPU plugin's settings: float32 arithmetic, one stream for latency, as many threads as
    torch uses. And no dynamic quantisation: where the CPU has VNNI (AVX-512 or AMX) OpenVINO
    by default rounds the activations entering a layer of int8 weights to int8 in groups of
    32, which moved a step of the shipped student by 2e-3 in the network's units (against 1e-6
    without), for 13% less time a call (0.71 against 0.80 ms on an AVX-512 AMD EPYC,
    2026-12-04): the graphs are to compute what the eager network does."""
    config = {
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
        "ENABLE_CPU_PINNING": False,
    }
    if "DYNAMIC_QUANTIZATION_GROUP_SIZE" in core.get_property("CPU", "SUPPORTED_PROPERTIES"):
        config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = 0
    return config


def _openvino_runner(module: nn.Module, example: tuple[torch.Tensor, ...], shapes):
    """``module`` traced, converted by OpenVINO with ``shapes`` (-1: the batch, dynamic) and
    compiled for latency on as many threads as torch uses: a function of NumPy arrays, one per
    input, returning the first output. A batch of one row, the latency case, gets a graph
    compiled for exactly that shape, at its first call (about 1 s): on the 4.55 M U-Net the
    dynamic graph spends ~1 ms per call on shapes at batch 1 (the 3-step chunk graph: 12.6
    against 10.1 ms, timed side by side on a loaded 2-core machine, 2026-12-03). Other
    batches share the dynamic graph."""
    ov = _openvino()

    model = _openvino_model(module, example, shapes)
    core = ov.Core()
    config = _openvino_config(core)
    compiled = {None: core.compile_model(model, "CPU", config)}  # batch -> compiled graph
    batch_axis = list(shapes[0]).index(-1)  # where the first input has its batch
    lock = threading.Lock()
    # A request serves one thread at a time: one per (OS thread, graph), in a plain dict, not
    # a threading.local: PyQt gives a QThread a new Python thread state for every slot and
    # drops it after; requests held in a threading.local died in that teardown and crashed the
    # app (segfault or "double free or corruption", every run of a policy on its worker).
    requests: dict[tuple[int, int | None], Any] = {}

    def request_for(batch: int | None):
        key = (threading.get_ident(), batch)
        request = requests.get(key)
        if request is None:
            with lock:
                if batch not in compiled:
                    static = model.clone()
                    static.reshape(
                        {i: [batch if d == -1 else d for d in s] for i, s in enumerate(shapes)}
                    )
                    compiled[batch] = core.compile_model(static, "CPU", config)
                # (a thread that ended leaves its requests to the next thread given its id)
                request = requests[key] = compiled[batch].create_infer_request()
        return request

    def run(*arrays: np.ndarray) -> np.ndarray:
        batch = arrays[0].shape[batch_axis]
        request = request_for(1 if batch == 1 else None)
        # the inputs set as shared tensors: InferRequest.infer(inputs) spends ~0.1 ms
        # converting them; then the synchronous call, in this thread: start_async() + wait()
        # hands the request to a worker thread and back, ~0.6 ms more per call (a 3-step
        # chunk of the 1.3 M cpu-tiny U-Net: 2.5-2.7 against 3.1-3.3 ms, medians side by side,
        # 2026-12-04)
        for i, a in enumerate(arrays):
            request.set_input_tensor(i, ov.Tensor(a, shared_memory=True))
        request.infer(share_outputs=True)  # (by default it copies every output into a dict)
        return request.get_output_tensor(0).data.copy()

    return run


class OnnxRuntimeBackend(_CompiledBackend):
    """The per-step graph exported to ONNX (batch dimension dynamic) and run by ONNX Runtime
    with as many intra-op threads as torch uses."""

    name = "onnx"

    def _compile(self, x, film):
        import io

        import onnxruntime as ort

        step, example = self._example(x, film)
        buffer = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                step,
                example,
                buffer,
                dynamo=False,
                opset_version=18,
                input_names=["sample", "film"],
                output_names=["out"],
                dynamic_axes={"sample": {0: "batch"}, "film": {0: "batch"}, "out": {0: "batch"}},
            )
        ort.disable_telemetry_events()  # (where onnxruntime was imported before this module)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(
            buffer.getvalue(), options, providers=["CPUExecutionProvider"]
        )

        def run(x: np.ndarray, film: np.ndarray) -> np.ndarray:
            return session.run(None, {"sample": x, "film": film})[0]

        return run
