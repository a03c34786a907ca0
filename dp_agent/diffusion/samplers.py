"""Noise schedules and samplers for Diffusion Policy: the DDPM forward process and three reverse
samplers (DDPM ancestral, DDIM, DPM-Solver++ 2M) written as step functions the caller drives.

Conventions follow diffusers (DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler) so that a
model trained here samples the same way there; `tests/test_schedulers.py` checks the agreement.
Notation: ᾱ_t = Π_{i≤t} α_i, α_t = 1 - β_t, training timesteps t = 0 .. T-1.

Typical loop (one sampler, any of the three):

    sampler = make_sampler("ddim", schedule, num_inference_steps=10)
    x = sampler.initial_noise((B, Tp, Da), generator=g)
    carry = None
    for i, t in enumerate(sampler.timesteps):
        out = sampler.step(model(x, t), i, x, carry=carry, generator=g)
        x, carry = out.prev_sample, out.carry
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dp_agent.diffusion import SAMPLERS

BETA_SCHEDULES = ("linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
TIMESTEP_SPACINGS = ("leading", "trailing")
VARIANCE_TYPES = ("fixed_small", "fixed_large")


# ----------------------------------------------------------------------------------------------
# Noise schedule: β_t, ᾱ_t and the closed forms of the forward process
# ----------------------------------------------------------------------------------------------


def _cosine_betas(num_train_steps: int, max_beta: float = 0.999) -> list[float]:
    """β_t of the "squaredcos_cap_v2" schedule (Nichol & Dhariwal 2021), as diffusers'
    `betas_for_alpha_bar(alpha_transform_type="cosine")`: β_t = 1 - ᾱ(t+1)/ᾱ(t), capped."""

    def alpha_bar(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    n = num_train_steps
    return [min(1.0 - alpha_bar((i + 1) / n) / alpha_bar(i / n), max_beta) for i in range(n)]


def _split_prediction(
    model_output: torch.Tensor,
    x_t: torch.Tensor,
    sqrt_alpha_bar: float | torch.Tensor,
    sqrt_one_minus_alpha_bar: float | torch.Tensor,
    prediction_type: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, ε) implied by a model output at a noisy sample x_t = √ᾱ x0 + √(1-ᾱ) ε.

    The coefficients are Python floats (sampler hot loop) or broadcastable tensors (training)."""
    if prediction_type == "epsilon":
        eps = model_output
        x0 = (x_t - sqrt_one_minus_alpha_bar * eps) / sqrt_alpha_bar
    elif prediction_type == "sample":
        x0 = model_output
        eps = (x_t - sqrt_alpha_bar * x0) / sqrt_one_minus_alpha_bar
    elif prediction_type == "v_prediction":  # v = √ᾱ ε - √(1-ᾱ) x0 (Salimans & Ho 2022)
        x0 = sqrt_alpha_bar * x_t - sqrt_one_minus_alpha_bar * model_output
        eps = sqrt_one_minus_alpha_bar * x_t + sqrt_alpha_bar * model_output
    else:
        raise ValueError(
            f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}"
        )
    return x0, eps


class NoiseSchedule:
    """The discrete DDPM forward process q(x_t | x_0) = N(√ᾱ_t x_0, (1-ᾱ_t) I), t = 0 .. T-1.

    Attributes (float32 tensors of shape (T,), computed in float64 then cast): `betas`, `alphas`,
    `alphas_cumprod` (ᾱ_t). `alphas_cumprod_f64` keeps ᾱ_t in float64 (CPU) for the samplers'
    coefficients, where 1 - ᾱ_t near t = 0 would lose ~4 digits in float32. The tables live on
    the CPU; the methods gather on their input's device (copying each table there once).
    """

    def __init__(
        self,
        num_train_steps: int = 100,
        beta_schedule: str = "squaredcos_cap_v2",
        beta_start: float = 1e-4,
        beta_end: float = 2e-2,
    ):
        if isinstance(num_train_steps, bool) or not isinstance(num_train_steps, int):
            raise ValueError(f"num_train_steps must be an int >= 1, got {num_train_steps!r}")
        if num_train_steps < 1:
            raise ValueError(f"num_train_steps must be >= 1, got {num_train_steps}")
        if beta_schedule == "linear":
            if not 0.0 < beta_start <= beta_end < 1.0:
                raise ValueError(
                    "linear beta schedule needs 0 < beta_start <= beta_end < 1, "
                    f"got beta_start={beta_start}, beta_end={beta_end}"
                )
            betas = torch.linspace(beta_start, beta_end, num_train_steps, dtype=torch.float64)
        elif beta_schedule == "squaredcos_cap_v2":
            betas = torch.tensor(_cosine_betas(num_train_steps), dtype=torch.float64)
        else:
            raise ValueError(
                f"beta_schedule must be one of {BETA_SCHEDULES}, got {beta_schedule!r}"
            )

        self.num_train_steps = num_train_steps
        self.beta_schedule = beta_schedule
        self.beta_start = float(beta_start)
        self.beta_end = float(beta_end)

        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        self.betas = betas.float()
        self.alphas = alphas.float()
        self.alphas_cumprod = alphas_cumprod.float()
        self.alphas_cumprod_f64 = alphas_cumprod
        self._device_tables: dict[tuple, torch.Tensor] = {}

    def _at(self, name: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Table `name` at timesteps t (B,), shaped (B, 1, ..., 1) to broadcast against `like`
        (B, ...), gathered on like's device in like's dtype. Each table is copied to a device
        once and cached, so a training step does no host-device copy of the schedule."""
        key = (name, like.device, like.dtype)
        table = self._device_tables.get(key)
        if table is None:
            table = getattr(self, name).to(device=like.device, dtype=like.dtype)
            self._device_tables[key] = table
        t = torch.as_tensor(t, device=like.device).long().reshape(-1)
        return table[t].reshape(-1, *([1] * (like.ndim - 1)))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Sample q(x_t | x_0): √ᾱ_t x0 + √(1-ᾱ_t) noise. x0, noise (B, ...); t LongTensor (B,)."""
        alpha_bar = self._at("alphas_cumprod", t, x0)
        return alpha_bar.sqrt() * x0 + (1.0 - alpha_bar).sqrt() * noise

    def target(
        self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, prediction_type: str
    ) -> torch.Tensor:
        """What a network of ``prediction_type`` should output at x_t = add_noise(x0, noise, t):
        ε, x0, or v = √ᾱ ε - √(1-ᾱ) x0."""
        if prediction_type == "epsilon":
            return noise
        if prediction_type == "sample":
            return x0
        alpha_bar = self._at("alphas_cumprod", t, x0)
        return alpha_bar.sqrt() * noise - (1.0 - alpha_bar).sqrt() * x0

    def split_prediction(
        self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, prediction_type: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0, ε) implied by a model output ("epsilon" or "sample") at x_t (B, ...), t (B,)."""
        alpha_bar = self._at("alphas_cumprod", t, x_t)
        return _split_prediction(
            model_output, x_t, alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt(), prediction_type
        )


# ----------------------------------------------------------------------------------------------
# Samplers: step functions over precomputed per-step coefficients
# ----------------------------------------------------------------------------------------------


@dataclass
class StepOutput:
    """Result of one sampler step: the next (less noisy) sample, the clean-sample prediction made
    at this step, and what the caller passes as `carry=` to the next step (None if nothing)."""

    prev_sample: torch.Tensor
    pred_x0: torch.Tensor
    carry: torch.Tensor | None


def _leading_timesteps(num_train_steps: int, num_inference_steps: int) -> list[int]:
    """diffusers' "leading" spacing (steps_offset=0): [0, r, 2r, ...] reversed, r = T // K."""
    ratio = num_train_steps // num_inference_steps
    return [i * ratio for i in reversed(range(num_inference_steps))]


def _trailing_timesteps(num_train_steps: int, num_inference_steps: int) -> list[int]:
    """diffusers' "trailing" spacing: round(T, T - T/K, ...) - 1, so the first step starts at
    t = T-1 (pure noise). The grids of K and 2K steps nest (every K-grid point is on the
    2K grid), as progressive distillation needs; "leading" starts K=1 at t = 0."""
    grid = np.round(np.arange(num_train_steps, 0, -num_train_steps / num_inference_steps)) - 1
    return [int(t) for t in grid]


def _linspace_timesteps(num_train_steps: int, num_inference_steps: int) -> list[int]:
    """diffusers' "linspace" spacing for DPM-Solver: K+1 rounded points on [0, T-1], the last
    (0) dropped because the solver's final step goes to σ = 0 instead."""
    grid = np.linspace(0, num_train_steps - 1, num_inference_steps + 1).round()
    return [int(t) for t in grid[::-1][:-1]]  # numpy, so ties round exactly as in diffusers


class Sampler:
    """Base class: the timesteps to visit and the shared helpers. Subclasses precompute their
    per-step coefficients in `__init__` (Python floats) and implement `step`."""

    name = ""

    def __init__(
        self,
        schedule: NoiseSchedule,
        timesteps: list[int],
        prediction_type: str,
        clip_sample: bool,
        clip_range: float,
    ):
        self.schedule = schedule
        self.timesteps = torch.tensor(timesteps, dtype=torch.long)  # (K,) descending
        self.num_steps = len(timesteps)
        self.prediction_type = prediction_type
        self.clip_sample = clip_sample
        self.clip_range = float(clip_range)
        # Per-step coefficients are Python floats computed in float64; ᾱ at "t = -1" is 1.
        self._alpha_bar = schedule.alphas_cumprod_f64.tolist()
        self._sqrt_alpha_bar = [math.sqrt(self._alpha_bar[t]) for t in timesteps]
        self._sqrt_one_minus_alpha_bar = [math.sqrt(1.0 - self._alpha_bar[t]) for t in timesteps]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_steps={self.num_steps}, "
            f"prediction_type={self.prediction_type!r}, "
            f"clip_sample={self.clip_sample}, clip_range={self.clip_range})"
        )

    def _alpha_bar_at(self, t: int) -> float:
        return 1.0 if t < 0 else self._alpha_bar[t]

    def alpha_bar_before(self, i: int) -> float:
        """ᾱ of the sample step ``i`` starts from (at timesteps[i])."""
        return self._alpha_bar[int(self.timesteps[self._check_index(i)])]

    def alpha_bar_after(self, i: int) -> float:
        """ᾱ of the sample step ``i`` returns: at timesteps[i+1], 1.0 (clean) after the last."""
        i = self._check_index(i)
        return self._alpha_bar_at(int(self.timesteps[i + 1]) if i + 1 < self.num_steps else -1)

    def step_variance(self, i: int) -> float:
        """Σ of step ``i``, the gradient scale of guidance (μ + αΣ∇J): the DDPM posterior
        variance β̃ = (1-ᾱ')/(1-ᾱ) (1 - ᾱ/ᾱ') between the visited timesteps t > t'. The DDPM
        sampler returns its own σ² (β̃ or β, 0 on the step from t = 0); the deterministic
        samplers add no noise, so β̃ stands for the variance their step spans."""
        a_t, a_prev = self.alpha_bar_before(i), self.alpha_bar_after(i)
        return (1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev)

    def initial_noise(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """x_T ~ N(0, I) of `shape`, on `device` (default: the generator's device, else CPU)."""
        if device is None and generator is not None:
            device = generator.device
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)

    def step(
        self,
        model_output: torch.Tensor,
        i: int,
        sample: torch.Tensor,
        carry: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> StepOutput:
        """Go from `sample` at timesteps[i] to the next timestep. model_output and sample share
        one shape (B, ...). `noise` (same shape) replaces the draw from `generator`."""
        i = self._check_index(i)
        x0, eps = self._pred_x0_eps(model_output, sample, i)
        return self._update(i, x0, eps, sample, carry, generator, noise)

    def _update(self, i, x0, eps, sample, carry, generator, noise) -> StepOutput:
        """The sampler's own update from the step's x̂0 and ε̂."""
        raise NotImplementedError

    def _check_index(self, i: int) -> int:
        i = int(i)
        if not 0 <= i < self.num_steps:
            raise ValueError(f"{self.name} step index must be in [0, {self.num_steps}), got {i}")
        return i

    def _pred_x0_eps(self, model_output, sample, i):
        x0, eps = _split_prediction(
            model_output,
            sample,
            self._sqrt_alpha_bar[i],
            self._sqrt_one_minus_alpha_bar[i],
            self.prediction_type,
        )
        if self.clip_sample:
            x0 = x0.clamp(-self.clip_range, self.clip_range)
        return x0, eps

    def _add_noise(self, x, std, sample, generator, noise):
        """x + std·z, z from `noise` or `generator`; no draw at all when std == 0."""
        if std == 0.0:
            return x
        if noise is None:
            noise = torch.randn(
                sample.shape, generator=generator, device=sample.device, dtype=sample.dtype
            )
        elif noise.shape != sample.shape:
            raise ValueError(
                f"{self.name} step: noise shape {tuple(noise.shape)} must equal the sample shape "
                f"{tuple(sample.shape)}"
            )
        return x + std * noise


class DDPMSampler(Sampler):
    """Ancestral sampling (Ho et al. 2020) with diffusers DDPMScheduler's strided steps:
    x_prev ~ N(c0 x̂0 + ct x_t, σ²), between consecutive visited timesteps t > t' (t' = -1 at
    the end), using β_t' = 1 - ᾱ_t/ᾱ_t' as the step's effective β. σ² = β̃ ("fixed_small",
    the posterior variance) or β ("fixed_large"); no noise is added on the step from t = 0."""

    name = "ddpm"

    def __init__(
        self, schedule, timesteps, prediction_type, clip_sample, clip_range, variance_type
    ):
        super().__init__(schedule, timesteps, prediction_type, clip_sample, clip_range)
        self.variance_type = variance_type
        self._coef_x0, self._coef_xt, self._std = [], [], []
        for i, t in enumerate(timesteps):
            t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
            a_t, a_prev = self._alpha_bar_at(t), self._alpha_bar_at(t_prev)
            beta = 1.0 - a_t / a_prev
            self._coef_x0.append(math.sqrt(a_prev) * beta / (1.0 - a_t))
            self._coef_xt.append(math.sqrt(1.0 - beta) * (1.0 - a_prev) / (1.0 - a_t))
            var = (1.0 - a_prev) / (1.0 - a_t) * beta if variance_type == "fixed_small" else beta
            self._std.append(math.sqrt(var) if t > 0 else 0.0)

    def step_variance(self, i: int) -> float:
        """This sampler's own σ² of step ``i`` (β̃ or β; 0 on the step from t = 0)."""
        return self._std[self._check_index(i)] ** 2

    def _update(self, i, x0, eps, sample, carry, generator, noise) -> StepOutput:
        mean = self._coef_x0[i] * x0 + self._coef_xt[i] * sample
        return StepOutput(self._add_noise(mean, self._std[i], sample, generator, noise), x0, None)


class DDIMSampler(Sampler):
    """DDIM (Song et al. 2021) as diffusers DDIMScheduler (set_alpha_to_one=True: the last step
    lands on ᾱ = 1): x_prev = √ᾱ' x̂0 + √(1-ᾱ'-σ²) ε̂ + σ z, σ = η √((1-ᾱ')/(1-ᾱ) (1-ᾱ/ᾱ')).
    ε̂ comes from the unclipped model output, as diffusers' default."""

    name = "ddim"

    def __init__(self, schedule, timesteps, prediction_type, clip_sample, clip_range, eta):
        super().__init__(schedule, timesteps, prediction_type, clip_sample, clip_range)
        self.eta = float(eta)
        self._coef_x0, self._coef_eps, self._std = [], [], []
        for i, t in enumerate(timesteps):
            t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
            a_t, a_prev = self._alpha_bar_at(t), self._alpha_bar_at(t_prev)
            std = self.eta * math.sqrt((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev))
            self._coef_x0.append(math.sqrt(a_prev))
            self._coef_eps.append(math.sqrt(max(1.0 - a_prev - std**2, 0.0)))
            self._std.append(std)

    def _update(self, i, x0, eps, sample, carry, generator, noise) -> StepOutput:
        x = self._coef_x0[i] * x0 + self._coef_eps[i] * eps
        return StepOutput(self._add_noise(x, self._std[i], sample, generator, noise), x0, None)


class DPMSolverPPSampler(Sampler):
    """DPM-Solver++(2M) (Lu et al. 2022), as diffusers DPMSolverMultistepScheduler with
    algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint", lower_order_final,
    final_sigmas_type="zero": deterministic, in data (x0) prediction, with λ = log(α/σ),
    α = √ᾱ, σ = √(1-ᾱ), h = λ_next - λ_now:

        x_next = (σ_next/σ_now) x + α_next (1 - e^{-h}) D,  D = x̂0 + (x̂0 - x̂0_prev) / (2 r),

    r = h_prev / h; first order (D = x̂0) on the first and on the final step, which goes to
    σ = 0 and so returns x̂0. `carry` holds x̂0_prev. With clip_sample the x0 prediction is
    clipped before use (diffusers has no clip here; for clip_range=1 this equals its
    thresholding=True, sample_max_value=1.0)."""

    name = "dpmsolver++"

    def __init__(self, schedule, timesteps, prediction_type, clip_sample, clip_range):
        super().__init__(schedule, timesteps, prediction_type, clip_sample, clip_range)
        K = self.num_steps
        alpha, sigma = self._sqrt_alpha_bar, self._sqrt_one_minus_alpha_bar
        lambdas = [math.log(alpha[i] / sigma[i]) for i in range(K)]
        h = [lambdas[i + 1] - lambdas[i] for i in range(K - 1)] + [math.inf]  # last: to σ = 0
        self._coef_x, self._coef_d, self._coef_diff = [], [], []
        for i in range(K):
            if i + 1 < K:
                self._coef_x.append(sigma[i + 1] / sigma[i])
                self._coef_d.append(alpha[i + 1] * -math.expm1(-h[i]))  # α_next (1 - e^{-h})
            else:  # σ_next = 0, α_next = 1: the step returns x̂0
                self._coef_x.append(0.0)
                self._coef_d.append(1.0)
            second_order = 0 < i < K - 1
            self._coef_diff.append(0.5 * h[i] / h[i - 1] if second_order else 0.0)  # 1/(2r)

    def _update(self, i, x0, eps, sample, carry, generator, noise) -> StepOutput:
        d = x0
        if self._coef_diff[i] != 0.0:
            if carry is None:
                raise ValueError(
                    f"dpmsolver++ step {i} needs carry=<the .carry of step {i - 1}'s output>"
                )
            d = x0 + self._coef_diff[i] * (x0 - carry)
        x = self._coef_x[i] * sample + self._coef_d[i] * d
        return StepOutput(x, x0, x0)


# ----------------------------------------------------------------------------------------------
# Construction by name
# ----------------------------------------------------------------------------------------------


def sampler_names() -> list[str]:
    """Names accepted by `make_sampler` (the table is `dp_agent.diffusion.SAMPLERS`)."""
    return list(SAMPLERS)


def _checked_steps(name: str, num_inference_steps: int | None, T: int) -> int:
    """The step count of sampler ``name`` on T training steps (None: the finest), checked."""
    max_steps = T - 1 if name == "dpmsolver++" else T
    if num_inference_steps is None:
        return max_steps
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int):
        raise ValueError(f"num_inference_steps must be an int or None, got {num_inference_steps!r}")
    if not 1 <= num_inference_steps <= max_steps:
        raise ValueError(
            f"num_inference_steps for {name!r} must be in [1, {max_steps}] with a schedule of "
            f"num_train_steps={T}, got {num_inference_steps}"
        )
    return num_inference_steps


def _checked_grid(name: str, timesteps: Sequence[int], num_steps: int, T: int) -> list[int]:
    """An explicit grid of ``num_steps`` timesteps for ``name``, checked."""
    grid = [int(t) for t in timesteps]
    if name == "dpmsolver++":
        raise ValueError("an explicit timestep grid applies to 'ddpm' and 'ddim' only")
    if len(grid) != num_steps:
        raise ValueError(f"{num_steps} steps asked for with a grid of {len(grid)}: {grid}")
    descending = all(a > b for a, b in zip(grid[:-1], grid[1:], strict=True))
    if not (descending and 0 <= grid[-1] and grid[0] < T):
        raise ValueError(f"timesteps must be strictly descending within [0, {T - 1}], got {grid}")
    return grid


def make_sampler(
    name: str,
    schedule: NoiseSchedule,
    num_inference_steps: int | None = None,
    *,
    prediction_type: str = "epsilon",
    clip_sample: bool = True,
    clip_range: float = 1.0,
    variance_type: str = "fixed_small",
    eta: float = 0.0,
    spacing: str = "leading",
    timesteps: Sequence[int] | None = None,
) -> Sampler:
    """A sampler visiting `num_inference_steps` timesteps of `schedule` (T = num_train_steps).

    None means the finest grid: T steps for "ddpm"/"ddim", T-1 for "dpmsolver++" (its linspace
    grid of T+1 points would repeat a timestep). `variance_type` applies to "ddpm" only and
    `eta` (0 = deterministic, 1 = DDPM-like noise) to "ddim" only. `spacing` places the steps
    of "ddpm" and "ddim" ("leading", diffusers' default, or "trailing", which starts at T-1 and
    is what few-step distilled students use); DPM-Solver++ always uses "linspace".
    ``timesteps`` gives "ddpm" or "ddim" an explicit grid instead (strictly descending, in
    [0, T-1], as many as `num_inference_steps`): a student distilled to a step count that does
    not halve its teacher's samples on the grid it was trained on
    (``dp_agent.training.distill``)."""
    if name not in sampler_names():
        raise ValueError(f"sampler must be one of {sampler_names()}, got {name!r}")
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(
            f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}"
        )
    if variance_type not in VARIANCE_TYPES:
        raise ValueError(f"variance_type must be one of {VARIANCE_TYPES}, got {variance_type!r}")
    if name != "ddpm" and variance_type != "fixed_small":
        raise ValueError(f"variance_type applies to the 'ddpm' sampler only, not {name!r}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    if name != "ddim" and eta != 0.0:
        raise ValueError(f"eta applies to the 'ddim' sampler only, not {name!r}")
    if spacing not in TIMESTEP_SPACINGS:
        raise ValueError(f"spacing must be one of {TIMESTEP_SPACINGS}, got {spacing!r}")
    if not clip_range > 0.0:
        raise ValueError(f"clip_range must be > 0, got {clip_range}")

    T = schedule.num_train_steps
    num_inference_steps = _checked_steps(name, num_inference_steps, T)
    if timesteps is not None:
        timesteps = _checked_grid(name, timesteps, num_inference_steps, T)
    common = dict(prediction_type=prediction_type, clip_sample=clip_sample, clip_range=clip_range)
    if name == "dpmsolver++":
        return DPMSolverPPSampler(schedule, _linspace_timesteps(T, num_inference_steps), **common)
    if timesteps is None:
        spaced = _trailing_timesteps if spacing == "trailing" else _leading_timesteps
        timesteps = spaced(T, num_inference_steps)
    if name == "ddpm":
        return DDPMSampler(schedule, timesteps, variance_type=variance_type, **common)
    return DDIMSampler(schedule, timesteps, eta=eta, **common)
