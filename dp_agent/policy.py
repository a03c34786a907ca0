"""The diffusion policy p(A_t | O_t): normalisers, observation encoder, denoiser and noise
schedule in one module, with the training loss and the sampling loop.

Tensors given to and returned by the public methods are in environment units; everything inside
is normalised to [-1, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from dp_agent.config import PolicyConfig
from dp_agent.diffusion.objectives import make_objective
from dp_agent.diffusion.samplers import NoiseSchedule, make_sampler
from dp_agent.diffusion.step import DenoiseStep
from dp_agent.nets.layers import MLPObsEncoder
from dp_agent.nets.transformer import TransformerDenoiser
from dp_agent.nets.unet import ConditionalUnet1D
from dp_agent.normalizer import MinMaxNormalizer

if TYPE_CHECKING:
    from dp_agent.guides import Guidance


class DiffusionPolicy(nn.Module):
    def __init__(self, config: PolicyConfig):
        super().__init__()
        config.validate()
        self.config = config
        c = config
        self.obs_spec = c.observation_spec()
        self.obs_normalizer = MinMaxNormalizer(c.obs_dim)  # all vector parts, concatenated
        self.action_normalizer = MinMaxNormalizer(c.action_dim)
        cond_dim = c.obs_horizon * self._build_obs_encoders()
        if c.denoiser == "unet":
            self.denoiser = ConditionalUnet1D(
                c.action_dim, cond_dim, c.down_dims, c.kernel_size, c.n_groups, c.step_embed_dim
            )
        else:
            self.denoiser = TransformerDenoiser(
                c.action_dim,
                cond_dim,
                c.pred_horizon,
                c.obs_horizon,
                c.d_model,
                c.n_heads,
                c.n_layers,
                c.dropout,
            )
        self.schedule = NoiseSchedule(c.num_train_steps, c.beta_schedule)
        self.objective = make_objective(c.objective, self.schedule, c.prediction_type)
        self._samplers: dict[tuple[str, int], Any] = {}  # (name, steps) -> sampler
        # how the sampling loop calls the denoiser; dp_agent.fast.accelerate puts an equal,
        # faster one in its place
        self.runner = EagerSteps(self.denoiser)

    def _build_obs_encoders(self) -> int:
        """An MLP (or nothing) for the vector parts, a ResNet per image part (or one shared);
        -> the features per frame."""
        c, spec = self.config, self.obs_spec
        per_frame = 0
        if c.obs_dim:
            self.obs_encoder = (
                MLPObsEncoder(c.obs_dim, c.obs_feature_dim)
                if c.obs_encoder == "mlp"
                else nn.Flatten(1)
            )
            per_frame += c.obs_feature_dim if c.obs_encoder == "mlp" else c.obs_dim
        images = spec.image_parts
        if images:
            from dp_agent.nets.vision import ResNetImageEncoder, feature_map_size

            def encoder(part):
                crop = c.vision_crop or None
                side = min(crop or part.chw[1], part.chw[1], part.chw[2])
                if feature_map_size(side, len(c.vision_widths)) < 2:
                    raise ValueError(
                        f"image part {part.key!r}: {side} pixels (after the crop) leave a 1x1 "
                        "feature map, where the spatial-softmax keypoints carry no position; "
                        "use images (or a crop) of at least 33 pixels"
                    )
                return ResNetImageEncoder(
                    part.chw[0], c.vision_widths, crop, 32, c.image_feature_dim
                )

            if c.shared_vision_encoder:  # one network sees every camera
                self.image_encoders = nn.ModuleDict({"shared": encoder(images[0])})
            else:
                self.image_encoders = nn.ModuleDict(
                    {_module_name(p.key): encoder(p) for p in images}
                )
            per_frame += len(images) * c.image_feature_dim
        return per_frame

    def fit_normalizers(self, observations, actions) -> None:
        """Fit both normalisers on all frames of the data: the vector parts (N, Do) and the
        actions (N, Da). Images need no fitting: they are scaled to [0, 1]."""
        if self.config.obs_dim:
            self.obs_normalizer.fit(observations)
        self.action_normalizer.fit(actions)

    def encode(self, obs) -> torch.Tensor:
        """Observations in environment units -> (B, Dc) conditioning vector: (B, To, Do) for a
        single vector, else a dict {key: (B, To, *shape)} (images uint8). Features of all parts
        are concatenated per frame, then over the To frames."""
        spec, to = self.obs_spec, self.config.obs_horizon
        parts = obs if isinstance(obs, dict) else {spec.parts[0].key: obs}
        b = next(iter(parts.values())).shape[0]
        features = []
        if self.config.obs_dim:
            vectors = [parts[p.key].reshape(b, to, -1).float() for p in spec.vector_parts]
            normalized = self.obs_normalizer.normalize(torch.cat(vectors, dim=-1))  # (B, To, Do)
            features.append(self.obs_encoder(normalized).view(b, to, -1))
        for p in spec.image_parts:
            images = parts[p.key].flatten(0, 1)  # (B*To, *shape) uint8
            if p.channels_last:
                images = images.permute(0, 3, 1, 2)  # (B*To, C, H, W)
            name = "shared" if self.config.shared_vision_encoder else _module_name(p.key)
            features.append(self.image_encoders[name](images).view(b, to, -1))
        return torch.cat(features, dim=-1).flatten(1)  # (B, To * features per frame)

    def draw_training_noise(
        self, batch_size: int, generator: torch.Generator | None, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The noise (B, Tp, Da) and diffusion steps k (B,) of one training batch."""
        shape = (batch_size, self.config.pred_horizon, self.config.action_dim)
        noise = torch.randn(shape, generator=generator, device=device)
        k = torch.randint(
            0, self.config.num_train_steps, (batch_size,), generator=generator, device=device
        )
        return noise, k

    def forward(
        self, obs: torch.Tensor, actions: torch.Tensor, noise: torch.Tensor, k: torch.Tensor
    ) -> torch.Tensor:
        """Training loss of a batch: obs (B, To, Do), actions (B, Tp, Da) in environment units,
        with the batch's noise (B, Tp, Da) and steps k (B,) from ``draw_training_noise``.

        The objective (``dp_agent.diffusion.objectives``) makes the network's input and target:
        for diffusion, the MSE between the injected noise (or x0, or v) and its prediction at
        step k; for the MSE baseline, regression of the chunk from zeros at k = 0.
        """
        cond = self.encode(obs)
        x0 = self.action_normalizer.normalize(actions)  # (B, Tp, Da) in [-1, 1]
        noisy, k, target = self.objective.example(x0, noise.to(x0.dtype), k)
        known = self.conditioned_mask(x0.device)  # (Tp, Da) or None
        if known is None:
            return F.mse_loss(self.denoiser(noisy, k, cond), target)
        # Diffuser's training: the conditioned entries enter clean, and are not predicted
        free = (~known).to(x0.dtype)
        error = (self.denoiser(torch.where(known, x0, noisy), k, cond) - target).pow(2)
        return (error * free).sum() / (free.sum() * x0.shape[0])

    def conditioned_mask(self, device: torch.device | str = "cpu") -> torch.Tensor | None:
        """(Tp, Da) bool: the entries this model was trained to take as known (clean inside a
        noisy chunk, as Diffuser trains), from the config's ``conditioned_entries`` ((step,
        dims) pairs, set by ``dp_agent.planning.config.PlannerConfig``); None for a policy."""
        entries = self.config.conditioned_entries
        if not entries:
            return None
        mask = torch.zeros(self.config.pred_horizon, self.config.action_dim, dtype=torch.bool)
        for step, dims in entries:
            mask[int(step), list(dims)] = True
        return mask.to(device)

    def make_sampler(self, name: str | None = None, num_inference_steps: int | None = None):
        """The sampler ``name`` (default: the config's) with its step count (default: the
        config's rule, ``PolicyConfig.default_steps``); built once per (name, steps). The
        default sampler at the default step count takes the config's explicit grid if it has
        one (``PolicyConfig.timesteps``)."""
        name = name or self.config.sampler
        steps = num_inference_steps or self.config.default_steps(name)
        key = (name, steps)
        if key not in self._samplers:
            c = self.config
            own_grid = c.timesteps is not None and (name, steps) == (c.sampler, len(c.timesteps))
            self._samplers[key] = make_sampler(
                name,
                self.schedule,
                steps,
                prediction_type=c.prediction_type,
                clip_sample=c.clip_sample,
                spacing=c.timestep_spacing if name != "dpmsolver++" else "leading",
                timesteps=c.timesteps if own_grid else None,
            )
        return self._samplers[key]

    @torch.no_grad()
    def sample(
        self,
        obs: torch.Tensor,
        num_samples: int = 1,
        sampler: str | None = None,
        num_inference_steps: int | None = None,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        on_step: Callable[[DenoiseStep], None] | None = None,
        *,
        conditions: dict[int, Any] | None = None,
        condition_mask: dict[int, Any] | None = None,
        guidance: Guidance | None = None,
        start: torch.Tensor | None = None,
        start_step: int = 0,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Action chunks (B * num_samples, Tp, Da) in environment units for obs (B, To, Do).

        Rows are observation-major: row ``b * num_samples + n`` belongs to obs ``b``. All the
        noise of a chunk (its start and, for DDPM, every step's) is drawn before the loop, from
        ``generator`` or from one generator per observation (a sequence of B), so that each
        row's draw does not depend on the other rows; or given as ``noise`` (K+1, B*N, Tp, Da).
        ``on_step`` gets every iterate (K+1). The denoiser runs through ``self.runner``: its
        conditioning once per chunk, then one call per denoising step.

        Inpainting: ``conditions={t: values}`` fixes chunk step t to values (Da,), (B, Da) or
        (B*N, Da) in env units; ``condition_mask={t: mask}`` (same shapes, bool) fixes only the
        True entries. Guidance: ``guidance`` (``dp_agent.guides.Guidance``) moves each iterate
        along αΣ∇J. Warm start: ``start`` (B*N, Tp, Da), env units, noised to the level of
        step ``start_step``, which the loop starts from. The defaults change nothing.
        """
        cond = self.encode(obs).repeat_interleave(num_samples, dim=0)  # (B*N, Dc)
        shape = (cond.shape[0], self.config.pred_horizon, self.config.action_dim)
        if self.config.objective == "mse":  # the regression baseline: one prediction
            return self._regress(cond, shape, on_step)
        s = self.make_sampler(sampler, num_inference_steps)
        if noise is None:
            noise = self.draw_noise(s.num_steps + 1, shape, num_samples, generator, cond.device)
        paint = self._inpainting(conditions, condition_mask, shape, num_samples, noise[0])
        unnorm = self.action_normalizer.unnormalize
        network = self.runner.prepare(cond, s.timesteps)  # (x, i) -> its output at step i
        x, carry = self._first_iterate(s, noise[0], start, start_step, paint)
        if on_step is not None:
            x0 = x if carry is None else carry  # a warm start's clean chunk
            on_step(DenoiseStep(start_step, s.num_steps, unnorm(x), unnorm(x0)))
        for i in range(start_step, s.num_steps):
            out = s.step(network(x, i), i, x, carry=carry, noise=noise[i + 1])
            x, carry, x0 = out.prev_sample, out.carry, out.pred_x0
            if paint is not None:  # the known values, at the noise level of the new iterate
                x, x0 = paint(x, s.alpha_bar_after(i)), paint(x0, 1.0)
                # DPM-Solver++ carries x̂0_prev into its next step's D = x̂0 + (x̂0 - x̂0_prev)/(2r):
                # with k written there too, D = k on the known entries (no second-order push
                # off them), and the history matches the iterate the next step starts from
                carry = None if carry is None else paint(carry, 1.0)
            if guidance is not None and guidance.active(i, s.num_steps):
                x = guidance.apply(x, s, i, unnorm, paint)  # x += αΣ∇J, then paint again
            if on_step is not None:
                on_step(DenoiseStep(i + 1, s.num_steps, unnorm(x), unnorm(x0)))
        return unnorm(x)

    def _regress(self, cond, shape, on_step) -> torch.Tensor:
        """The MSE baseline's chunk: one prediction from zeros at k = 0."""
        k = torch.zeros(shape[0], dtype=torch.long, device=cond.device)
        x = self.action_normalizer.unnormalize(
            self.denoiser(torch.zeros(shape, device=cond.device), k, cond)
        )
        if on_step is not None:
            on_step(DenoiseStep(1, 1, x, x))
        return x

    def _first_iterate(self, s, z, start, start_step, paint):
        """(x, carry) the loop starts from: pure noise z (R, Tp, Da), or the warm start
        ``start`` (env units) noised to timesteps[start_step], its clean value as DPM-Solver's
        x̂0_prev; with the known values written in."""
        if start is None:
            if start_step:
                raise ValueError("start_step needs a start chunk (start=...) to re-noise")
            x, carry = z, None
        else:
            if tuple(start.shape) != tuple(z.shape):
                raise ValueError(f"start has shape {tuple(start.shape)}, expected {tuple(z.shape)}")
            carry = self.action_normalizer.normalize(start.to(z))
            if paint is not None:
                carry = paint(carry, 1.0)
            a = s.alpha_bar_before(start_step)
            x = math.sqrt(a) * carry + math.sqrt(1.0 - a) * z
        if paint is not None:
            x = paint(x, s.alpha_bar_before(start_step))
        return x, carry

    def _inpainting(self, conditions, masks, shape, num_samples, z) -> Inpainting | None:
        """The known values of ``sample``'s conditions as an ``Inpainting``, or None."""
        if not conditions:
            return None
        rows, tp, da = shape
        known = torch.zeros(shape, device=z.device)
        mask = torch.zeros(shape, dtype=torch.bool, device=z.device)
        for t, values in conditions.items():
            if not -tp <= int(t) < tp:
                raise ValueError(f"conditions: step {t} is outside the chunk's steps 0..{tp - 1}")
            v = _per_row(values, torch.float32, rows, num_samples, da, f"conditions[{t}]", z)
            m = (masks or {}).get(t)
            m = (
                torch.ones_like(v, dtype=torch.bool)
                if m is None
                else _per_row(m, torch.bool, rows, num_samples, da, f"condition_mask[{t}]", z)
            )
            known[:, t], mask[:, t] = v, m
        unknown = [t for t in (masks or {}) if t not in conditions]
        if unknown:
            raise ValueError(f"condition_mask has steps {unknown} that conditions does not")
        clean = self.conditioned_mask() is not None
        return Inpainting(self.action_normalizer.normalize(known), mask, z, clean)

    @staticmethod
    def draw_noise(n_draws, shape, num_samples, generator, device) -> torch.Tensor:
        """(n_draws, B*N, Tp, Da) standard normal noise, per observation from its own generator
        when ``generator`` is a sequence."""
        if generator is None or isinstance(generator, torch.Generator):
            return torch.randn((n_draws, *shape), generator=generator, device=device)
        per_obs = (n_draws, num_samples, *shape[1:])
        return torch.cat(
            [torch.randn(per_obs, generator=g, device=g.device).to(device) for g in generator],
            dim=1,
        )


class EagerSteps:
    """How the sampling loop calls the denoiser during one chunk, the reference: the network's
    own ``forward(x, timestep, cond)`` at every step. ``prepare(cond (B, Dc), timesteps (K,))``
    once per chunk returns the steps, ``(x (B, Tp, Da), i) -> output at timesteps[i]``."""

    name = "eager"

    def __init__(self, denoiser: nn.Module):
        self.net = denoiser

    def prepare(self, cond: torch.Tensor, timesteps: torch.Tensor):
        ks = torch.as_tensor(timesteps).to(cond.device)[:, None].expand(-1, cond.shape[0])  # (K, B)
        net = self.net
        return lambda x, i: net(x, ks[i], cond)


class Inpainting:
    """Known entries of every chunk (Diffuser's conditioning), written into each iterate.

    ``known`` (R, Tp, Da) normalised, ``mask`` (R, Tp, Da) bool, ``z`` (R, Tp, Da) the chunk's
    initial noise. Written as the model was trained: a trajectory model trained with known
    entries (``conditioned_mask``) saw them clean inside noisy chunks, so they are written clean
    at every level (``clean``, Diffuser's apply_conditioning); a model trained on noisy chunks
    only gets them at the iterate's level ᾱ, √ᾱ·known + √(1-ᾱ)·z, a point of q(x_t | x_0 =
    known). Either way the entries are exactly ``known`` after the last step (ᾱ = 1)."""

    def __init__(self, known, mask, z, clean: bool = False):
        self.known, self.mask, self.z, self.clean = known, mask, z, clean

    def __call__(self, x: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        if self.clean or alpha_bar >= 1.0:
            return torch.where(self.mask, self.known.to(x.dtype), x)
        values = math.sqrt(alpha_bar) * self.known + math.sqrt(1.0 - alpha_bar) * self.z
        return torch.where(self.mask, values.to(x.dtype), x)


def _per_row(values, dtype, rows, num_samples, dim, what, like) -> torch.Tensor:
    """values (D,), (B, D) or (B*N, D) -> (B*N, D) on like's device."""
    v = torch.as_tensor(values, dtype=dtype, device=like.device)
    if v.ndim == 1:
        v = v.expand(rows, -1)
    elif v.ndim == 2 and v.shape[0] * num_samples == rows and num_samples > 1:
        v = v.repeat_interleave(num_samples, dim=0)
    if v.shape != (rows, dim):
        raise ValueError(
            f"{what}: shape {tuple(torch.as_tensor(values).shape)}, expected ({dim},), "
            f"({rows // num_samples}, {dim}) or ({rows}, {dim})"
        )
    return v


def _module_name(key: str) -> str:
    """A part's key as a submodule name (no dots)."""
    return key.replace(".", "_")
