"""Denoiser backends: every one equals the eager network (per step and whole chunks), calls the
network at most K times per chunk, follows weight changes, and falls back cleanly when its
package is missing. Speed is the benchmark's business (benchmarks/latency.py), not the tests'."""

from __future__ import annotations

import copy
import importlib.util
import pickle
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from support import tiny_policy

from dp_agent.data.shipped import shipped_policy
from dp_agent.fast import accelerate, backends, compiled, folded
from dp_agent.fast import base as fast_base
from dp_agent.fast.backends import TOLERANCE, BackendUnavailable, resolve_backend
from dp_agent.nets.unet import ConditionalUnet1D

FAST = ["folded", "openvino", "onnx"]
SAMPLERS = [("ddpm", 100), ("ddim", 10), ("dpmsolver++", 8)]


def installed(name: str) -> bool:
    return all(importlib.util.find_spec(p) is not None for p in backends._PACKAGES.get(name, ()))


def skip_unless_installed(name: str) -> None:
    if not installed(name):
        pytest.skip(f"backend {name!r} needs {' and '.join(backends._PACKAGES[name])}")


@pytest.fixture(scope="module")
def pusht():
    """The shipped PushT policy: the 4.55M-parameter U-Net the backends are for."""
    from dp_agent.checkpoint import load_policy

    policy, _ = load_policy(shipped_policy("dp_agent/PushT-v0"), "cpu")
    return policy


def observations(policy, n: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    lo, hi = policy.obs_normalizer.min.numpy(), policy.obs_normalizer.max.numpy()
    obs = rng.uniform(lo, hi, (n, policy.config.obs_horizon, policy.config.obs_dim))
    return torch.as_tensor(obs, dtype=torch.float32)


def test_forward_film_is_forward_with_the_conditioning_computed_apart():
    torch.manual_seed(0)
    net = ConditionalUnet1D(2, 10, (16, 32, 64), step_embed_dim=16).eval()
    x, k, c = torch.randn(3, 16, 2), torch.tensor([0, 50, 99]), torch.randn(3, 10)
    with torch.no_grad():
        film = net.film_table(k, c)
        assert film.shape == (3, net.film_dim)
        torch.testing.assert_close(net.forward_film(x, film), net(x, k, c), rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("batch", [1, 3])
def test_each_step_equals_the_eager_network(pusht, name, batch):
    skip_unless_installed(name)
    net = pusht.denoiser
    sampler = pusht.make_sampler("ddim", 10)
    with torch.no_grad():
        cond = pusht.encode(observations(pusht, batch))
        eager = backends.make_backend("eager", net).prepare(cond, sampler.timesteps)
        fast = backends.make_backend(name, net).prepare(cond, sampler.timesteps)
        x = torch.randn(batch, 16, 2, generator=torch.Generator().manual_seed(1))
        for i in range(sampler.num_steps):
            want = eager(x, i)
            got = fast(x, i)
            assert got.shape == want.shape and got.dtype == want.dtype
            assert want.abs().max() > 0.1  # outputs of order 1
            torch.testing.assert_close(got, want, rtol=0, atol=TOLERANCE)
            x = want


@pytest.mark.slow
@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("sampler,steps", SAMPLERS)
def test_whole_chunks_equal_the_eager_ones_with_the_same_noise(pusht, name, sampler, steps):
    skip_unless_installed(name)
    obs = observations(pusht, 2, seed=3)
    chunks = {}
    for backend in ("eager", name):
        accelerate(pusht, backend)
        gens = [torch.Generator().manual_seed(s) for s in (10, 11)]
        chunks[backend] = pusht.runner.sample(obs, 2, sampler, steps, generator=gens)
    accelerate(pusht, "auto")
    normalize = pusht.action_normalizer.normalize  # compare in the network's [-1, 1] units
    torch.testing.assert_close(
        normalize(chunks[name]), normalize(chunks["eager"]), rtol=0, atol=TOLERANCE
    )


class Counter:
    def __init__(self):
        self.n = 0

    def __call__(self, *args):
        self.n += 1


@pytest.mark.slow
@pytest.mark.parametrize("name", ["eager", *FAST])
@pytest.mark.parametrize("sampler,steps", SAMPLERS)
def test_a_chunk_calls_the_network_once_per_step_and_the_conditioning_once(
    monkeypatch, name, sampler, steps
):
    skip_unless_installed(name)
    policy = tiny_policy()
    accelerate(policy, name)
    net = policy.denoiser
    obs = observations(policy, 2)
    policy.runner.sample(obs, sampler=sampler, num_inference_steps=steps)  # builds the backend
    per_step = Counter()  # the per-step network, whichever backend runs it
    if name == "eager":
        net.register_forward_hook(lambda *a: per_step())
    elif name == "folded":
        monkeypatch.setattr(
            folded._FoldedChunk, "__call__", counted(folded._FoldedChunk.__call__, per_step)
        )
    else:
        backend = policy.runner.backend(obs)
        monkeypatch.setattr(backend, "_runner", counted(backend._runner, per_step))
    conditioning = Counter()  # the step-embedding MLP and the FiLM layers
    net.step_embed.register_forward_hook(lambda *a: conditioning())
    for block in net.res_blocks():
        block.film.register_forward_hook(lambda *a: conditioning())
    policy.runner.sample(obs, sampler=sampler, num_inference_steps=steps)
    assert per_step.n == steps
    if name == "eager":  # the reference recomputes the conditioning at every step
        assert conditioning.n == steps * (1 + len(net.res_blocks()))
    else:  # folded out of the loop: kept per sampler, so not even once for this second chunk
        assert conditioning.n == 0


@pytest.mark.slow
@pytest.mark.parametrize("sampler,steps", [("ddim", 3), ("ddpm", 4), ("dpmsolver++", 2)])
def test_a_short_chunk_runs_as_one_graph_equal_to_the_eager_steps(sampler, steps):
    skip_unless_installed("openvino")
    assert steps <= compiled.WHOLE_CHUNK_MAX_STEPS
    policy = tiny_policy()
    obs = observations(policy, 3, seed=5)

    def chunks(name, **kwargs):
        accelerate(policy, name)
        gens = [torch.Generator().manual_seed(s) for s in (20, 21, 22)]
        return policy.runner.sample(obs, 2, sampler, steps, generator=gens, **kwargs)

    reference = chunks("eager")
    got = chunks("openvino")  # builds the graph of this sampler's chunk
    backend = policy.runner.backend(obs)
    graph = Counter()  # calls of the whole-chunk graph
    for entry in list(backend._chunks.values()):
        backend._chunks[id(entry[0])] = (entry[0], counted(entry[1], graph), entry[2])
    per_step = Counter()  # compilations of the per-step graph: a step through it builds one
    backend._compile = counted(backend._compile, per_step)
    again = chunks("openvino")
    assert graph.n == 1 and per_step.n == 0  # one call for all 6 rows and all the steps
    normalize = policy.action_normalizer.normalize
    assert got.shape == (6, 8, 2)
    torch.testing.assert_close(normalize(got), normalize(reference), rtol=0, atol=TOLERANCE)
    torch.testing.assert_close(again, got, rtol=0, atol=0)
    # what the graph does not cover runs step by step, with the same result
    seen = []
    stepwise = chunks("openvino", on_step=seen.append)
    assert graph.n == 1 and len(seen) == steps + 1
    torch.testing.assert_close(normalize(stepwise), normalize(got), rtol=0, atol=TOLERANCE)
    accelerate(policy, "openvino", whole_chunk=False)
    gens = [torch.Generator().manual_seed(s) for s in (20, 21, 22)]
    off = policy.runner.sample(obs, 2, sampler, steps, generator=gens)
    assert graph.n == 1
    torch.testing.assert_close(normalize(off), normalize(got), rtol=0, atol=TOLERANCE)
    accelerate(policy, "auto")


def test_int8_rows_recover_an_int8_checkpoint_and_refuse_other_weights():
    from dp_agent.checkpoint import dequantize_int8, quantize_int8

    torch.manual_seed(0)
    trained = {"w": torch.randn(64, 32, 5) * 0.05}
    stored = quantize_int8(trained)
    loaded = dequantize_int8(stored)["w"]
    q, scale = compiled.int8_rows(loaded)
    assert q.dtype == torch.int8 and q.shape == (64, 32, 5) and scale.shape == (64,)
    assert torch.equal(q, stored["w"])
    torch.testing.assert_close(q.float() * scale[:, None, None], loaded, rtol=1e-6, atol=0)
    assert compiled.int8_rows(trained["w"]) is None  # float32 weights as trained
    assert compiled.int8_rows(trained["w"].half().float()) is None  # float16 checkpoints


@pytest.mark.parametrize("c_in,c_out,t", [(8, 8, 4), (16, 8, 8), (32, 32, 1)])
def test_the_graphs_upsample_by_a_convolution_of_even_and_odd_outputs(c_in, c_out, t):
    torch.manual_seed(c_in + t)
    up = torch.nn.ConvTranspose1d(c_in, c_out, 4, stride=2, padding=1)
    x = torch.randn(3, c_in, t)
    with torch.no_grad():
        want, got = up(x), compiled._UpsampleAsConv(up)(x)
    assert got.shape == want.shape == (3, c_out, 2 * t)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    for other in (
        dict(kernel_size=3),
        dict(groups=2),
        dict(bias=False),
        dict(dilation=2),
        dict(output_padding=1),
    ):
        args = {"kernel_size": 4, "stride": 2, "padding": 1, **other}
        assert not fast_base._plain_upsample(torch.nn.ConvTranspose1d(4, 4, **args)), other
    net = ConditionalUnet1D(2, 10, (16, 32, 64), step_embed_dim=16)
    torch.manual_seed(0)
    step = compiled._FilmStep(net)
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))  # building it drew nothing from the global RNG
    kinds = {type(m) for m in step.modules()}
    assert compiled._UpsampleAsConv in kinds and torch.nn.ConvTranspose1d not in kinds


def test_the_compiled_graphs_do_not_quantise_the_activations():
    """OpenVINO's default on CPUs with VNNI rounds the activations entering an int8-weight
    layer to int8: the graphs are to compute what the eager network does."""
    skip_unless_installed("openvino")
    import openvino as ov

    core = ov.Core()
    if "DYNAMIC_QUANTIZATION_GROUP_SIZE" in core.get_property("CPU", "SUPPORTED_PROPERTIES"):
        assert compiled._openvino_config(core)["DYNAMIC_QUANTIZATION_GROUP_SIZE"] == 0


@pytest.fixture(scope="module")
def student(pusht):
    """An int8 checkpoint of the 4.55 M U-Net: the PushT teacher's weights stored as
    ``dp-agent export --int8`` stores them (int8 rows times a scale), and loaded back."""
    from dp_agent.checkpoint import dequantize_int8, quantize_int8

    policy = copy.deepcopy(pusht)
    policy.load_state_dict(dequantize_int8(quantize_int8(policy.state_dict())))
    policy.config.sampler, policy.config.num_inference_steps = "ddim", 3  # a student's count
    return policy


@pytest.mark.slow
def test_openvino_reads_the_large_convolutions_of_an_int8_checkpoint_as_int8(student, pusht):
    skip_unless_installed("openvino")
    import openvino as ov

    net = student.denoiser
    step = compiled._FilmStep(net, int8=True)
    large = [m for m in net.modules() if isinstance(m, torch.nn.Conv1d)]
    large = [m for m in large if m.weight.numel() >= compiled.INT8_MIN_VALUES]
    assert step.int8_convolutions == len(large) == 9
    assert compiled._FilmStep(pusht.denoiser, int8=True).int8_convolutions == 0  # float16 file
    x, film = torch.randn(1, 16, 2), torch.randn(1, net.film_dim)
    with torch.no_grad():
        traced = torch.jit.trace(step, (x, film), check_trace=False)
    graph = ov.Core().compile_model(ov.convert_model(traced, example_input=(x, film)), "CPU")
    info = [op.get_rt_info() for op in graph.get_runtime_model().get_ops()]
    kinds = [(i["layerType"].astype(str), i["runtimePrecision"].astype(str)) for i in info]
    assert kinds.count(("FullyConnected", "i8")) == 9  # weights read as int8, not unpacked
    sampler = student.make_sampler()
    fast = {int8: compiled.OpenVINOBackend(net, int8_weights=int8) for int8 in (True, False)}
    for batch in (1, 3):
        with torch.no_grad():
            cond = student.encode(observations(student, batch, seed=batch))
            z = torch.randn(batch, 16, 2, generator=torch.Generator().manual_seed(batch))
            eager = backends.make_backend("eager", net).prepare(cond, sampler.timesteps)
            for int8 in (True, False):
                got = fast[int8].prepare(cond, sampler.timesteps)(z, 0)
                want = eager(z, 0)
                assert want.abs().max() > 0.1
                torch.testing.assert_close(got, want, rtol=0, atol=TOLERANCE)
    obs = observations(student, 2, seed=7)
    chunks = {}
    for name in ("eager", "openvino"):  # the student's chunk: one int8 graph
        accelerate(student, name)
        gens = [torch.Generator().manual_seed(s) for s in (30, 31)]
        chunks[name] = student.runner.sample(obs, 3, generator=gens)
    assert len(student.runner.backend(obs)._chunks) == 1
    accelerate(student, "auto")
    normalize = student.action_normalizer.normalize
    torch.testing.assert_close(
        normalize(chunks["openvino"]), normalize(chunks["eager"]), rtol=0, atol=TOLERANCE
    )


@pytest.mark.slow
def test_longer_chunks_run_step_by_step():
    skip_unless_installed("openvino")
    policy = tiny_policy()
    accelerate(policy, "openvino")
    obs = observations(policy, 1)
    steps = compiled.WHOLE_CHUNK_MAX_STEPS + 1
    policy.runner.sample(obs, sampler="ddim", num_inference_steps=steps)
    assert not policy.runner.backend(obs)._chunks  # no whole-chunk graph built
    policy.runner.sample(obs, sampler="ddim", num_inference_steps=steps - 1)
    assert len(policy.runner.backend(obs)._chunks) == 1


def counted(fn, counter):
    def wrapper(*args, **kwargs):
        counter()
        return fn(*args, **kwargs)

    return wrapper


@pytest.mark.slow
@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("steps", [4, 8])  # openvino: a whole-chunk graph, per-step graphs
def test_backends_follow_weight_changes(name, steps):
    skip_unless_installed(name)
    policy = tiny_policy(num_inference_steps=steps)
    obs = observations(policy, 1)
    accelerate(policy, name)
    before = policy.runner.sample(obs, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for p in policy.denoiser.parameters():
            p.mul_(1.1)  # in place: what an optimiser or an EMA update does
    after = policy.runner.sample(obs, generator=torch.Generator().manual_seed(0))
    accelerate(policy, "eager")
    reference = policy.runner.sample(obs, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(before, after)
    normalize = policy.action_normalizer.normalize
    torch.testing.assert_close(normalize(after), normalize(reference), rtol=0, atol=TOLERANCE)
    # and a whole new set of tensors (load_state_dict(assign=True)) is seen as well
    state = {k: v * 0.9 for k, v in policy.denoiser.state_dict().items()}
    policy.denoiser.load_state_dict(state, assign=True)
    reference = policy.runner.sample(obs, generator=torch.Generator().manual_seed(0))
    accelerate(policy, name)
    got = policy.runner.sample(obs, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(normalize(got), normalize(reference), rtol=0, atol=TOLERANCE)
    # writes behind autograd's back need a rebuild
    with torch.no_grad():
        for p in policy.denoiser.parameters():
            p.data.mul_(1.1)
    accelerate(policy, name, rebuild=True)
    got = policy.runner.sample(obs, generator=torch.Generator().manual_seed(0))
    accelerate(policy, "eager")
    reference = policy.runner.sample(obs, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(normalize(got), normalize(reference), rtol=0, atol=TOLERANCE)


@pytest.mark.slow
@pytest.mark.parametrize("name,package", [("openvino", "openvino"), ("onnx", "onnxruntime")])
def test_a_missing_package_leaves_the_torch_backends(monkeypatch, pusht, name, package):
    monkeypatch.setitem(sys.modules, package, None)  # import fails as if not installed
    policy = copy.deepcopy(pusht)  # a copy builds its backends afresh
    accelerate(policy)  # auto
    net, cpu = policy.denoiser, torch.device("cpu")
    assert name not in backends.available_backends(net)
    expected = [n for n in backends.AUTO_ORDER if installed(n)] + ["eager"]
    assert name not in expected and expected[-2:] == ["folded", "eager"]
    assert resolve_backend("auto", net, cpu, torch.float32) == expected
    with pytest.raises(BackendUnavailable, match=f"pip install.*{package}"):
        accelerate(policy, name)
    obs = observations(policy, 1)
    chunk = policy.runner.sample(obs, generator=torch.Generator().manual_seed(0))  # auto
    assert policy.runner.backend(obs).chosen == expected[0]
    accelerate(policy, "eager")
    reference = policy.runner.sample(obs, generator=torch.Generator().manual_seed(0))
    normalize = policy.action_normalizer.normalize
    torch.testing.assert_close(normalize(chunk), normalize(reference), rtol=0, atol=TOLERANCE)


def test_auto_falls_through_a_backend_that_fails_to_build(monkeypatch):
    def broken(*args):
        raise RuntimeError("cannot compile")

    monkeypatch.setattr(compiled, "_openvino_runner", broken)  # per-step and whole-chunk graphs
    monkeypatch.setattr(backends, "AUTO_ORDER", ("openvino", "folded"))
    monkeypatch.setattr(backends, "_missing_packages", lambda name: [])
    monkeypatch.setattr(backends, "COMPILE_MIN_PARAMS", 0)
    policy = tiny_policy()
    accelerate(policy)  # auto
    obs = observations(policy, 1)
    with pytest.warns(RuntimeWarning) as record:
        chunk = policy.runner.sample(obs, generator=torch.Generator().manual_seed(0))
    said = [str(w.message) for w in record]
    assert any(
        re.search("'openvino' could not run the chunk as one graph .*cannot compile", m)
        for m in said
    )
    assert any(re.search("'openvino' failed .*cannot compile.*'folded'", m) for m in said)
    assert policy.runner.backend(obs).chosen == "folded"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once fallen through, no more warnings
        again = policy.runner.sample(obs, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(chunk, again, rtol=0, atol=0)


def test_auto_is_the_fastest_installed_for_the_unet_and_eager_otherwise(pusht):
    cpu = torch.device("cpu")
    order = resolve_backend("auto", pusht.denoiser, cpu, torch.float32)
    expected = [n for n in backends.AUTO_ORDER if installed(n)] + ["eager"]
    assert order == expected and "folded" in order
    assert resolve_backend("auto", pusht.denoiser, cpu, torch.float64) == ["folded", "eager"]
    unet = tiny_policy()  # too small to repay a compilation
    assert resolve_backend("auto", unet.denoiser, cpu, torch.float32) == ["folded", "eager"]
    transformer = tiny_policy(denoiser="transformer", d_model=16, n_heads=2, n_layers=1)
    assert resolve_backend("auto", transformer.denoiser, cpu, torch.float32) == ["eager"]
    with pytest.raises(BackendUnavailable, match="U-Net only"):
        accelerate(transformer, "folded")
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        accelerate(unet, "tensorrt")


def test_auto_leaves_large_batches_to_eager_when_folded_is_its_choice(monkeypatch):
    monkeypatch.setattr(backends, "AUTO_ORDER", ("folded",))
    policy = tiny_policy()
    accelerate(policy)  # auto
    calls = Counter()
    policy.denoiser.register_forward_hook(lambda *a: calls())
    policy.runner.sample(observations(policy, backends.FOLDED_MAX_BATCH))
    assert calls.n == 0  # folded: the network's forward is never called
    policy.runner.sample(observations(policy, backends.FOLDED_MAX_BATCH + 1))
    assert calls.n == policy.config.num_inference_steps  # eager: once per step


@pytest.mark.slow
@pytest.mark.parametrize("name", FAST)
def test_threads_sampling_one_policy_get_what_they_would_alone(name):
    import threading

    skip_unless_installed(name)
    policy = tiny_policy()
    accelerate(policy, name)
    obs = [observations(policy, 1, seed=s) for s in range(4)]

    def chunk(o, seed):
        return policy.runner.sample(o, generator=torch.Generator().manual_seed(seed))

    alone = [chunk(o, s) for s, o in enumerate(obs)]
    together = [None] * len(obs)

    def work(s):
        for _ in range(3):
            together[s] = chunk(obs[s], s)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(len(obs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, together, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_policy_with_built_backends_copies_and_pickles_without_them():
    policy = tiny_policy()
    accelerate(policy)  # auto
    obs = observations(policy, 1)
    policy.runner.sample(obs)
    assert policy.runner.cache.entries
    for clone in (copy.deepcopy(policy), pickle.loads(pickle.dumps(policy))):
        assert not clone.runner.cache.entries
        torch.testing.assert_close(
            clone.runner.sample(obs, generator=torch.Generator().manual_seed(0)),
            policy.runner.sample(obs, generator=torch.Generator().manual_seed(0)),
        )


# ---- the benchmark's comparison with the original implementation --------------------------------

STUB = '''
import torch
from torch import nn


class ConditionalUnet1D(nn.Module):
    """A stand-in with the original's constructor and call."""

    def __init__(self, input_dim, local_cond_dim=None, global_cond_dim=None,
                 diffusion_step_embed_dim=256, down_dims=(256, 512, 1024), kernel_size=3,
                 n_groups=8, cond_predict_scale=False):
        super().__init__()
        self.args = dict(input_dim=input_dim, global_cond_dim=global_cond_dim,
                         down_dims=list(down_dims), kernel_size=kernel_size,
                         cond_predict_scale=cond_predict_scale)
        self.proj = nn.Linear(input_dim + global_cond_dim, input_dim)
        self.calls = 0

    def forward(self, sample, timestep, local_cond=None, global_cond=None, **kwargs):
        self.calls += 1
        c = global_cond[:, None].expand(-1, sample.shape[1], -1)
        return self.proj(torch.cat([sample, c], dim=-1))
'''


@pytest.fixture
def reference_src(tmp_path, monkeypatch):
    pkg = tmp_path / "diffusion_policy" / "model" / "diffusion"
    pkg.mkdir(parents=True)
    for d in (pkg, pkg.parent, pkg.parent.parent):
        (d / "__init__.py").write_text("")
    (pkg / "conditional_unet1d.py").write_text(STUB)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in [m for m in sys.modules if m.split(".")[0] == "diffusion_policy"]:
        monkeypatch.delitem(sys.modules, name)
    yield tmp_path
    for name in [m for m in sys.modules if m.split(".")[0] == "diffusion_policy"]:
        del sys.modules[name]


def load_latency_benchmark():
    path = Path(__file__).parents[2] / "benchmarks" / "latency.py"
    spec = importlib.util.spec_from_file_location("latency_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_reference_src_times_the_original_unet_with_our_shape(reference_src, tiny_agent):
    pytest.importorskip("diffusers")
    latency = load_latency_benchmark()
    reference, chunk = latency.reference_chunk(reference_src, tiny_agent, torch.Generator())
    c = tiny_agent.config
    assert reference.args == {
        "input_dim": c.action_dim,
        "global_cond_dim": c.obs_horizon * c.obs_feature_dim,
        "down_dims": list(c.down_dims),
        "kernel_size": c.kernel_size,
        "cond_predict_scale": True,
    }
    assert chunk().shape == (1, c.pred_horizon, c.action_dim)
    assert reference.calls == 100  # DDPM-100 through diffusers' scheduler
    narrower = copy.deepcopy(tiny_agent)
    narrower.config.down_dims = (8, 16)  # only the label reads it
    table = latency.reference_table(reference_src, tiny_agent, repeats=1, narrower=narrower)
    assert "original ConditionalUnet1D + diffusers DDPMScheduler, DDPM-100" in table
    assert f"ours, default {c.sampler}-{c.num_inference_steps}" in table
    assert "| ours, a 8-16 student's ddim-3 (agent.predict) |" in table  # beside the original


def test_reference_src_without_the_file_says_where_it_looked(tmp_path):
    latency = load_latency_benchmark()
    with pytest.raises(FileNotFoundError, match="conditional_unet1d.py not found"):
        latency.load_reference_unet(tmp_path)


@pytest.mark.slow
def test_the_benchmark_times_short_chunks_both_ways_on_openvino(tiny_agent):
    skip_unless_installed("openvino")
    latency = load_latency_benchmark()
    table = latency.chunk_table(tiny_agent, "tiny", ["folded", "openvino"], repeats=1)
    rows = [line.split(" | ")[2:4] for line in table.splitlines()[2:]]
    stepwise = {sampler for sampler, backend in rows if backend == "openvino, step by step"}
    assert stepwise == {"ddim-3", "ddim-2"}  # the samplers of at most WHOLE_CHUNK_MAX_STEPS
    assert ["ddpm-100", "openvino"] in rows and ["ddim-3", "folded"] in rows
    assert tiny_agent.policy.runner.name == "auto"


def test_the_benchmark_times_the_float32_graph_beside_the_int8_one(student, pusht):
    skip_unless_installed("openvino")
    latency = load_latency_benchmark()
    cpu = torch.device("cpu")

    def labels(policy):
        found = latency._call_candidates(policy.denoiser, ["eager", "openvino"], cpu, torch.float32)
        return [label for label, _, _ in found]

    assert labels(student) == ["eager", "openvino", "openvino, float32 graph"]
    assert labels(pusht) == ["eager", "openvino"]  # float16 weights: one graph, float32
    int8, f32 = (latency.step_weight_bytes(student.denoiser, b) for b in (True, False))
    assert f32 > 2 * int8  # 15.3 against 6.9 MB for the 4.55 M U-Net


def test_the_benchmark_takes_networks_by_name_in_a_fixed_order():
    import argparse

    latency = load_latency_benchmark()
    assert latency.networks_arg("cpu-small,cpu-tiny") == ["cpu-tiny", "cpu-small"]
    assert latency.networks_arg("both") == ["cpu-small", "gpu-standard"]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown network 'cpu-huge'"):
        latency.networks_arg("cpu-tiny,cpu-huge")
