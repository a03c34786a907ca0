"""Specification of dp_agent.diffusion.samplers: the forward process, the posterior, and three
samplers checked step by step against diffusers' reference schedulers and end to end on Gaussian
data."""

import math

import pytest
import torch

from dp_agent.diffusion import SAMPLERS
from dp_agent.diffusion.samplers import NoiseSchedule, make_sampler, sampler_names


@pytest.fixture
def diffusers():
    """diffusers' reference schedulers; only the tests that compare with them skip without it."""
    return pytest.importorskip("diffusers")


T = 100
SCHEDULES = ["squaredcos_cap_v2", "linear"]


def assert_close(actual, expected, tol=1e-5):
    """|actual - expected| <= tol·(1 + |expected|) elementwise."""
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol)


def reference(cls, beta_schedule, **kwargs):
    return cls(num_train_timesteps=T, beta_schedule=beta_schedule, **kwargs)


def reference_f64(cls, schedule, **kwargs):
    """A diffusers scheduler on our float64 ᾱ. diffusers keeps ᾱ in float32, where 1 - ᾱ_t at
    small t keeps only ~3 digits; with the same float64 ᾱ (and float64 inputs) the two
    implementations can be compared exactly instead of to within float32 cancellation."""
    ref = reference(cls, schedule.beta_schedule, **kwargs)
    ref.alphas_cumprod = schedule.alphas_cumprod_f64.clone()
    ref.one = ref.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    return ref


# ---------------------------------------------------------------------------------------------
# Schedule and forward process
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("beta_schedule", SCHEDULES)
def test_schedule_matches_diffusers_betas_and_alphas_cumprod(diffusers, beta_schedule):
    ours = NoiseSchedule(T, beta_schedule)
    ref = reference(diffusers.DDPMScheduler, beta_schedule)
    for name in ("betas", "alphas", "alphas_cumprod"):
        assert getattr(ours, name).dtype == torch.float32
        assert getattr(ours, name).shape == (T,)
        torch.testing.assert_close(getattr(ours, name), getattr(ref, name), rtol=2e-6, atol=1e-7)


def test_cosine_schedule_caps_beta_and_defaults_to_100_steps():
    schedule = NoiseSchedule()
    assert schedule.num_train_steps == 100 and schedule.beta_schedule == "squaredcos_cap_v2"
    assert schedule.betas.max().item() == pytest.approx(0.999)
    assert torch.all(schedule.alphas_cumprod[1:] < schedule.alphas_cumprod[:-1])


@pytest.mark.parametrize("t", [0, 10, 50, 90, 99])
def test_forward_process_has_mean_sqrt_alpha_bar_x0_and_variance_one_minus_alpha_bar(t):
    schedule = NoiseSchedule(T)
    g = torch.Generator().manual_seed(t)
    n = 200_000
    x0 = torch.tensor([0.7, -0.4]).expand(n, 2)
    noise = torch.randn(n, 2, generator=g)
    x_t = schedule.add_noise(x0, noise, torch.full((n,), t, dtype=torch.long))
    alpha_bar = schedule.alphas_cumprod[t].item()
    sd = math.sqrt(1 - alpha_bar)
    # 5 standard errors of the Monte Carlo estimates
    assert torch.allclose(x_t.mean(0), math.sqrt(alpha_bar) * x0[0], atol=5 * sd / math.sqrt(n))
    var_se = (1 - alpha_bar) * math.sqrt(2 / n)
    assert torch.allclose(x_t.var(0), torch.full((2,), 1 - alpha_bar), atol=5 * var_se)


def test_add_noise_uses_each_rows_timestep_over_trailing_dims(diffusers):
    schedule = NoiseSchedule(T)
    x0, noise = torch.randn(3, 16, 2), torch.randn(3, 16, 2)
    t = torch.tensor([0, 42, 99])
    x_t = schedule.add_noise(x0, noise, t)
    ref = reference(diffusers.DDPMScheduler, "squaredcos_cap_v2").add_noise(x0, noise, t)
    assert_close(x_t, ref)
    for b in range(3):
        a = schedule.alphas_cumprod[t[b]]
        assert_close(x_t[b], a.sqrt() * x0[b] + (1 - a).sqrt() * noise[b])


def test_schedule_methods_follow_the_inputs_dtype():
    schedule = NoiseSchedule(T)
    t = torch.tensor([3, 97])
    for dtype in (torch.float64, torch.float32, torch.float64):
        x0, noise = torch.randn(2, 5, dtype=dtype), torch.randn(2, 5, dtype=dtype)
        x_t = schedule.add_noise(x0, noise, t)
        x0_hat, _ = schedule.split_prediction(noise, x_t, t, "epsilon")
        assert x_t.dtype == x0_hat.dtype == dtype


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_split_prediction_inverts_add_noise(prediction_type):
    schedule = NoiseSchedule(T)
    x0, eps = torch.rand(5, 8, 2) * 2 - 1, torch.randn(5, 8, 2)
    t = torch.tensor([0, 1, 30, 70, 98])
    x_t = schedule.add_noise(x0, eps, t)
    output = schedule.target(x0, eps, t, prediction_type)  # what a perfect network outputs
    x0_hat, eps_hat = schedule.split_prediction(output, x_t, t, prediction_type)
    assert_close(x0_hat, x0, tol=1e-4)
    assert_close(eps_hat, eps, tol=1e-4)


@pytest.mark.parametrize("beta_schedule", SCHEDULES)
def test_full_grid_ddpm_step_is_the_posterior_of_the_design_formulas(beta_schedule):
    """x_{t-1} = μ̃(x0, x_t) + √β̃_t z with the posterior mean
    μ̃ = √ᾱ_{t-1} β_t/(1-ᾱ_t) x0 + √α_t (1-ᾱ_{t-1})/(1-ᾱ_t) x_t and variance
    β̃_t = (1-ᾱ_{t-1})/(1-ᾱ_t) β_t, computed here independently in float64 from the betas."""
    schedule = NoiseSchedule(T, beta_schedule)
    sampler = make_sampler("ddpm", schedule, prediction_type="sample", clip_sample=False)
    betas = schedule.betas.double()
    alphas = 1 - betas
    abar = torch.cumprod(alphas, 0)
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    for i, t in enumerate(sampler.timesteps.tolist()):
        x0, x_t, z = (torch.randn(4, 2, dtype=torch.float64) for _ in range(3))
        mean = (abar_prev[t].sqrt() * betas[t] / (1 - abar[t])) * x0 + (
            alphas[t].sqrt() * (1 - abar_prev[t]) / (1 - abar[t])
        ) * x_t
        var = (1 - abar_prev[t]) / (1 - abar[t]) * betas[t]
        out = sampler.step(x0, i, x_t, noise=z)
        assert_close(out.prev_sample, mean + var.sqrt() * z)
    assert var == 0.0  # t = 0, the last step: no noise


# ---------------------------------------------------------------------------------------------
# Samplers, one step at a time, against diffusers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta_schedule", SCHEDULES)
@pytest.mark.parametrize("num_inference_steps", [None, 10, 30])
@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
@pytest.mark.parametrize("clip_sample", [True, False])
def test_ddpm_step_matches_diffusers(
    diffusers, beta_schedule, num_inference_steps, variance_type, prediction_type, clip_sample
):
    sampler = make_sampler(
        "ddpm",
        NoiseSchedule(T, beta_schedule),
        num_inference_steps,
        prediction_type=prediction_type,
        clip_sample=clip_sample,
        variance_type=variance_type,
    )
    ref = reference_f64(
        diffusers.DDPMScheduler,
        sampler.schedule,
        variance_type=variance_type,
        prediction_type=prediction_type,
        clip_sample=clip_sample,
    )
    ref.set_timesteps(num_inference_steps or T)
    assert torch.equal(sampler.timesteps, ref.timesteps)
    assert sampler.num_steps == len(ref.timesteps)
    g = torch.Generator().manual_seed(0)
    for i, t in enumerate(sampler.timesteps):
        x, model_output = (torch.randn(3, 16, 2, generator=g, dtype=torch.float64) for _ in "ab")
        # the same generator state: both draw the same noise (and none on the step from t = 0)
        ours = sampler.step(model_output, i, x, generator=torch.Generator().manual_seed(i))
        theirs = ref.step(model_output, t, x, generator=torch.Generator().manual_seed(i))
        assert_close(ours.prev_sample, theirs.prev_sample, tol=1e-12)
        assert_close(ours.pred_x0, theirs.pred_original_sample, tol=1e-12)
        assert ours.carry is None


def _ddim_matches_diffusers(diffusers, beta_schedule, steps, eta, prediction_type, clip, spacing):
    sampler = make_sampler(
        "ddim",
        NoiseSchedule(T, beta_schedule),
        steps,
        prediction_type=prediction_type,
        clip_sample=clip,
        eta=eta,
        spacing=spacing,
    )
    ref = reference_f64(
        diffusers.DDIMScheduler,
        sampler.schedule,
        prediction_type=prediction_type,
        clip_sample=clip,
        set_alpha_to_one=True,
        timestep_spacing=spacing,
    )
    ref.set_timesteps(steps)
    assert torch.equal(sampler.timesteps, ref.timesteps)
    g = torch.Generator().manual_seed(1)
    for i, t in enumerate(sampler.timesteps):
        x, model_output, z = (
            torch.randn(3, 16, 2, generator=g, dtype=torch.float64) for _ in "abc"
        )
        ours = sampler.step(model_output, i, x, noise=z)
        theirs = ref.step(model_output, t, x, eta=eta, variance_noise=z)
        assert_close(ours.prev_sample, theirs.prev_sample, tol=1e-12)
        assert_close(ours.pred_x0, theirs.pred_original_sample, tol=1e-12)


@pytest.mark.parametrize("beta_schedule", SCHEDULES)
@pytest.mark.parametrize("num_inference_steps", [10, 16, 100])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("clip_sample", [True, False])
def test_ddim_step_matches_diffusers(
    diffusers, beta_schedule, num_inference_steps, eta, prediction_type, clip_sample
):
    _ddim_matches_diffusers(
        diffusers,
        beta_schedule,
        num_inference_steps,
        eta,
        prediction_type,
        clip_sample,
        "leading",
    )


# diffusers' DDIM steps from t to t - T//K whatever the grid; on a "trailing" grid with K not
# dividing T that is not the next grid point (K=16: 87 -> 81, the grid's next is 80), where
# ours goes to the next grid point. Where K divides T the two agree, as checked here.
@pytest.mark.parametrize("num_inference_steps", [1, 2, 4, 10, 25])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_trailing_ddim_step_matches_diffusers(diffusers, num_inference_steps, prediction_type, eta):
    _ddim_matches_diffusers(
        diffusers,
        "squaredcos_cap_v2",
        num_inference_steps,
        eta,
        prediction_type,
        True,
        "trailing",
    )


def fake_model(x, t, prediction_type):
    """A fixed smooth function of (x, t), standing in for a network."""
    u = t.float() / T
    if prediction_type == "epsilon":
        return torch.tanh(x) * (0.5 + u) + 0.1 * torch.sin(3 * x + u)
    return 0.8 * torch.tanh(x + u) - 0.2 * torch.cos(x)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # diffusers
@pytest.mark.parametrize("beta_schedule", SCHEDULES)
@pytest.mark.parametrize("num_inference_steps", [1, 2, 5, 8, 20, 99])
@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
@pytest.mark.parametrize("clip_sample", [True, False])
def test_dpmsolver_pp_trajectory_matches_diffusers(
    diffusers, beta_schedule, num_inference_steps, prediction_type, clip_sample
):
    sampler = make_sampler(
        "dpmsolver++",
        NoiseSchedule(T, beta_schedule),
        num_inference_steps,
        prediction_type=prediction_type,
        clip_sample=clip_sample,
    )
    # Our clip of the x0 prediction to [-1, 1] is diffusers' thresholding with max value 1.
    # diffusers runs this solver in float32 (its σ's are float32 whatever ᾱ is): the trajectories
    # agree to 1e-5 in relative norm (elementwise, late-step values of ~100 carry float32 noise).
    ref = reference_f64(
        diffusers.DPMSolverMultistepScheduler,
        sampler.schedule,
        prediction_type=prediction_type,
        algorithm_type="dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
        lower_order_final=True,
        thresholding=clip_sample,
        sample_max_value=1.0,
    )
    ref.set_timesteps(num_inference_steps)
    assert torch.equal(sampler.timesteps, ref.timesteps)
    x = sampler.initial_noise((4, 16, 2), generator=torch.Generator().manual_seed(2))
    x_ref = x.clone()
    carry = None
    for i, t in enumerate(sampler.timesteps):
        out = sampler.step(fake_model(x, t, prediction_type), i, x, carry=carry)
        x, carry = out.prev_sample, out.carry
        x_ref = ref.step(fake_model(x_ref, t, prediction_type), t, x_ref).prev_sample
        assert torch.linalg.norm(x - x_ref) <= 1e-5 * torch.linalg.norm(x_ref)
    assert_close(x, out.pred_x0)  # the final step lands on σ = 0, i.e. on the x0 prediction


# ---------------------------------------------------------------------------------------------
# End to end: exact ε of Gaussian data gives Gaussian samples
# ---------------------------------------------------------------------------------------------

DATA_MEAN, DATA_STD = 0.3, 1.0


def gaussian_denoiser(x, t, schedule, prediction_type):
    """E[ε | x_t] (or E[x0 | x_t]) for x0 ~ N(m, s²): x_t ~ N(a m, a² s² + b²), a = √ᾱ_t."""
    abar = schedule.alphas_cumprod_f64[t].item()
    a, b = math.sqrt(abar), math.sqrt(1 - abar)
    z = (x - a * DATA_MEAN) / (a * a * DATA_STD**2 + b * b)
    eps, x0 = b * z, DATA_MEAN + a * DATA_STD**2 * z
    return {"epsilon": eps, "sample": x0, "v_prediction": a * eps - b * x0}[prediction_type]


# Few-step samplers carry a known bias even with the exact denoiser: each deterministic step
# shrinks the spread (DDIM's step is a cosine-weighted blend of x̂0 and ε̂), DDPM's fixed_small
# variance omits Var(x0 | x_t), and "leading" DDIM-10 starts at t = 90, where x_t is not yet
# N(0, 1). So the requested configurations get tolerances sized to that bias, and many-step runs
# get tight ones: those fail for a sampler that reads ᾱ one timestep off.
@pytest.mark.parametrize(
    "name, steps, prediction_type, tol_mean, tol_std",
    [
        ("ddpm", 100, "epsilon", 0.01, 0.04),
        ("ddim", 10, "epsilon", 0.05, 0.12),
        ("dpmsolver++", 8, "epsilon", 0.01, 0.05),
        ("ddim", 10, "sample", 0.05, 0.12),
        ("dpmsolver++", 8, "sample", 0.01, 0.05),
        ("ddim", 100, "epsilon", 0.01, 0.015),
        ("dpmsolver++", 50, "epsilon", 0.01, 0.015),
        ("dpmsolver++", 50, "sample", 0.01, 0.015),
        ("ddim", 100, "v_prediction", 0.01, 0.015),
        ("dpmsolver++", 8, "v_prediction", 0.01, 0.05),
    ],
)
def test_sampling_with_exact_denoiser_recovers_gaussian_data(
    name, steps, prediction_type, tol_mean, tol_std
):
    schedule = NoiseSchedule(T)
    # no clipping: N(0.3, 1) has mass outside [-1, 1]
    sampler = make_sampler(
        name, schedule, steps, prediction_type=prediction_type, clip_sample=False
    )
    g = torch.Generator().manual_seed(3)
    x = sampler.initial_noise((100_000,), generator=g, dtype=torch.float64)
    carry = None
    for i, t in enumerate(sampler.timesteps):
        out = sampler.step(gaussian_denoiser(x, t, schedule, prediction_type), i, x, carry, g)
        x, carry = out.prev_sample, out.carry
    assert x.mean().item() == pytest.approx(DATA_MEAN, abs=tol_mean)
    assert x.std().item() == pytest.approx(DATA_STD, abs=tol_std)


# ---------------------------------------------------------------------------------------------
# Reproducibility, carry, and bad arguments
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 4, 8, 16, 32])
def test_trailing_grids_start_at_pure_noise_and_nest(k):
    grid = make_sampler("ddim", NoiseSchedule(T), k, spacing="trailing").timesteps.tolist()
    assert grid[0] == T - 1 and len(grid) == k == len(set(grid))
    finer = make_sampler("ddim", NoiseSchedule(T), 2 * k, spacing="trailing").timesteps.tolist()
    assert finer[::2] == grid  # what progressive distillation's rounds rely on


def test_explicit_noise_equals_noise_drawn_from_generator():
    sampler = make_sampler("ddpm", NoiseSchedule(T), 10)
    x, eps = torch.randn(2, 16, 2), torch.randn(2, 16, 2)
    drawn = sampler.step(eps, 0, x, generator=torch.Generator().manual_seed(5))
    z = torch.randn(2, 16, 2, generator=torch.Generator().manual_seed(5))
    given = sampler.step(eps, 0, x, noise=z)
    assert torch.equal(drawn.prev_sample, given.prev_sample)
    other = sampler.step(eps, 0, x, noise=-z)
    assert not torch.allclose(other.prev_sample, given.prev_sample)


def test_initial_noise_is_reproducible_with_a_generator():
    sampler = make_sampler("ddim", NoiseSchedule(T), 10)
    a = sampler.initial_noise((2, 16, 2), generator=torch.Generator().manual_seed(9))
    b = sampler.initial_noise((2, 16, 2), generator=torch.Generator().manual_seed(9))
    assert a.shape == (2, 16, 2) and a.dtype == torch.float32 and torch.equal(a, b)


def test_dpmsolver_pp_second_step_requires_the_carry():
    sampler = make_sampler("dpmsolver++", NoiseSchedule(T), 8)
    x = torch.randn(2, 4)
    out = sampler.step(torch.zeros(2, 4), 0, x)
    with pytest.raises(ValueError, match="carry"):
        sampler.step(torch.zeros(2, 4), 1, out.prev_sample)


def test_default_steps_use_the_finest_grid():
    schedule = NoiseSchedule(T)
    assert make_sampler("ddpm", schedule).num_steps == T
    assert make_sampler("ddim", schedule).num_steps == T
    assert make_sampler("dpmsolver++", schedule).num_steps == T - 1
    assert sorted(sampler_names()) == sorted(SAMPLERS)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="euler"), "sampler must be one of"),
        (dict(num_inference_steps=0), r"num_inference_steps .* must be in \[1, 100\]"),
        (dict(num_inference_steps=101), r"must be in \[1, 100\]"),
        (dict(name="dpmsolver++", num_inference_steps=100), r"must be in \[1, 99\]"),
        (dict(num_inference_steps=2.5), "num_inference_steps must be an int"),
        (dict(prediction_type="velocity"), "prediction_type must be one of"),
        (dict(spacing="linspace"), "spacing must be one of"),
        (dict(variance_type="learned"), "variance_type must be one of"),
        (dict(name="ddim", variance_type="fixed_large"), "variance_type applies to the 'ddpm'"),
        (dict(name="ddpm", eta=0.5), "eta applies to the 'ddim'"),
        (dict(name="ddim", eta=1.5), r"eta must be in \[0, 1\]"),
        (dict(clip_range=0.0), "clip_range must be > 0"),
    ],
)
def test_bad_sampler_arguments_raise_clear_errors(kwargs, match):
    kwargs = dict(name="ddpm", num_inference_steps=10) | kwargs
    with pytest.raises(ValueError, match=match):
        make_sampler(
            kwargs.pop("name"), NoiseSchedule(T), kwargs.pop("num_inference_steps"), **kwargs
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_train_steps=0), "num_train_steps must be >= 1"),
        (dict(num_train_steps=10.0), "num_train_steps must be an int"),
        (dict(beta_schedule="cosine"), "beta_schedule must be one of"),
        (dict(beta_schedule="linear", beta_start=0.1, beta_end=0.01), "beta_start <= beta_end"),
    ],
)
def test_bad_schedule_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NoiseSchedule(**kwargs)


def test_step_index_out_of_range_and_wrong_noise_shape_raise():
    sampler = make_sampler("ddpm", NoiseSchedule(T), 10)
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match=r"step index must be in \[0, 10\)"):
        sampler.step(x, 10, x)
    with pytest.raises(ValueError, match="noise shape"):
        sampler.step(x, 0, x, noise=torch.randn(3, 2))


def test_an_explicit_grid_is_visited_as_given_and_a_bad_one_is_refused():
    schedule = NoiseSchedule(100, "squaredcos_cap_v2")
    s = make_sampler("ddim", schedule, 3, prediction_type="v_prediction", timesteps=[99, 49, 24])
    assert s.timesteps.tolist() == [99, 49, 24]
    assert s.alpha_bar_after(0) == s.alpha_bar_before(1)  # step 0 lands on t = 49
    bad = [
        ([99, 49], "grid of 2"),
        ([49, 99, 24], "descending"),
        ([100, 49, 24], "within"),
        ([99, 49, 49], "descending"),
    ]
    for grid, match in bad:
        with pytest.raises(ValueError, match=match):
            make_sampler("ddim", schedule, 3, timesteps=grid)
    with pytest.raises(ValueError, match="'ddpm' and 'ddim' only"):
        make_sampler("dpmsolver++", schedule, 3, timesteps=[99, 49, 24])


def test_the_ddpm_objective_trains_on_points_of_the_forward_process():
    from dp_agent.diffusion.objectives import make_objective

    schedule = NoiseSchedule(100, "squaredcos_cap_v2")
    x0, noise = torch.randn(4, 8, 2), torch.randn(4, 8, 2)
    k = torch.tensor([0, 10, 50, 99])
    for prediction in ("epsilon", "sample", "v_prediction"):
        x_k, k_in, target = make_objective("diffusion", schedule, prediction).example(x0, noise, k)
        a = schedule.alphas_cumprod[k][:, None, None]
        torch.testing.assert_close(x_k, a.sqrt() * x0 + (1 - a).sqrt() * noise)
        assert torch.equal(k_in, k)
        want = {
            "epsilon": noise,
            "sample": x0,
            "v_prediction": a.sqrt() * noise - (1 - a).sqrt() * x0,
        }
        torch.testing.assert_close(target, want[prediction])
    x_in, k_in, target = make_objective("mse", schedule, "epsilon").example(x0, noise, k)
    assert not x_in.any() and not k_in.any() and torch.equal(target, x0)
    with pytest.raises(ValueError, match="objective must be"):
        make_objective("flow?", schedule, "epsilon")
