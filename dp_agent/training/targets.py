"""What a distillation student learns (``dp_agent.training.distill``): the grids of its steps,
nested in its teacher's, and the targets, the v whose one DDIM step from x_t lands where the
teacher's two steps (or its whole path between two of the student's points) go."""

from __future__ import annotations

from functools import partial

import torch

from dp_agent.config import replace_fields
from dp_agent.diffusion.samplers import _split_prediction, _trailing_timesteps
from dp_agent.policy import DiffusionPolicy


def student_config(teacher_config, grid: list[int]):
    """A teacher's PolicyConfig turned into the config of its student on ``grid``:
    v-prediction, DDIM on that grid as its default sampler (the trailing spacing where the grid
    is the trailing one, else the grid itself)."""
    k = len(grid)
    trailing = grid == _trailing_timesteps(teacher_config.num_train_steps, k)
    fields = {
        "prediction_type": "v_prediction",
        "sampler": "ddim",
        "num_inference_steps": k,
        "timestep_spacing": "trailing",
        "timesteps": None if trailing else tuple(grid),
    }
    return replace_fields(teacher_config, fields)


def merged_grid(grid: list[int], k: int) -> list[int]:
    """The k-step student grid distilled from a teacher's ``grid`` (len(grid)/2 <= k <
    len(grid)): the first len(grid) - k pairs of steps, the noisiest, each become one step; the
    rest are kept. Halving merges every pair: [99, 74, 49, 24] -> [99, 49]; three of four keeps
    the last two: [99, 49, 24]."""
    merges = len(grid) - k
    if not 0 < merges <= len(grid) // 2:
        raise ValueError(f"cannot distil {len(grid)} steps into {k}")
    return grid[: 2 * merges : 2] + grid[2 * merges :]


def trajectory_grid(teacher_grid: list[int], k: int, grid=None) -> list[int]:
    """The k steps of a trajectory student: ``grid``, or the trailing k-step grid moved to the
    nearest points of ``teacher_grid``; every step must be one of the teacher's points (the
    student learns the teacher's path between them), decreasing, the first the teacher's first
    (where sampling starts from pure noise)."""
    if grid is None and k == len(teacher_grid):
        grid = list(teacher_grid)  # a student of another network, on its teacher's own steps
    elif grid is None:
        T = teacher_grid[0] + 1
        grid = [min(teacher_grid, key=lambda u: abs(u - t)) for t in _trailing_timesteps(T, k)]
    grid = [int(t) for t in grid]
    decreasing = all(a > b for a, b in zip(grid, grid[1:], strict=False))
    on_path = all(t in teacher_grid for t in grid)
    if len(grid) != k or grid[0] != teacher_grid[0] or not on_path or not decreasing:
        raise ValueError(
            f"a {k}-step student grid must be {k} decreasing points of the teacher's "
            f"{teacher_grid}, starting at {teacher_grid[0]}; got {grid}"
        )
    return grid


class Grids:
    """ᾱ on the device, with ᾱ(-1) = 1 at index 0, and each round's (t, t_mid, t_next)."""

    def __init__(self, policy: DiffusionPolicy, device: torch.device):
        ab = policy.schedule.alphas_cumprod_f64
        self.alpha_bar = torch.cat([torch.ones(1, dtype=ab.dtype), ab]).float().to(device)
        self.T = policy.config.num_train_steps
        self.device = device

    def round_steps(self, teacher_grid: list[int], k: int) -> torch.Tensor:
        """(k, 4) LongTensor: for each step of the k-step student, its t, the teacher's
        midpoint, its t_next (-1 after the last step) and 1 where the student merges two of
        the teacher's steps, 0 where it keeps one (then the midpoint is t_next)."""
        fine = list(teacher_grid) + [-1]
        coarse = merged_grid(list(teacher_grid), k) + [-1]
        rows = []
        for t, t_next in zip(coarse[:-1], coarse[1:], strict=True):
            t_mid = fine[fine.index(t) + 1]  # the teacher's next point: t_next on a kept step
            rows.append((t, t_mid, t_next, int(t_mid != t_next)))
        return torch.tensor(rows, dtype=torch.long, device=self.device)

    def coefficients(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(α, σ) at steps t (B,), shaped (B, 1, 1)."""
        ab = self.alpha_bar[t + 1].view(-1, 1, 1)
        return ab.sqrt(), (1.0 - ab).sqrt()


def ddim_step(policy, cond, x, t, t_next, grids: Grids) -> torch.Tensor:
    """One deterministic DDIM step of ``policy`` per row, from t to t_next (B,), as its own
    DDIM sampler does it (x0 clipped when the policy clips, ε from the raw output)."""
    a, s = grids.coefficients(t)
    a_next, s_next = grids.coefficients(t_next)
    c = policy.config
    x0, eps = _split_prediction(policy.denoiser(x, t, cond), x, a, s, c.prediction_type)
    if c.clip_sample:
        x0 = x0.clamp(-1.0, 1.0)
    return a_next * x0 + s_next * eps


@torch.no_grad()
def distillation_target(teacher, cond, x_t, steps: torch.Tensor, grids: Grids) -> torch.Tensor:
    """The v a student should predict at x_t so that its one step matches the teacher's two
    (or, on a step the student keeps, the teacher's one); ``steps`` (B, 4) holds each row's t,
    t_mid, t_next and whether it merges two steps."""
    t, t_mid, t_next, merged = steps.unbind(1)
    x_next = ddim_step(teacher, cond, x_t, t, t_mid, grids)
    two = merged.nonzero().squeeze(1)
    if len(two):
        x_next = x_next.index_copy(
            0, two, ddim_step(teacher, cond[two], x_next[two], t_mid[two], t_next[two], grids)
        )
    return v_landing_at(x_t, x_next, t, t_next, grids)


def v_landing_at(x_t, x_next, t, t_next, grids: Grids) -> torch.Tensor:
    """The v whose one DDIM step from x_t at t lands on x_next at t_next (per row)."""
    a, s = grids.coefficients(t)
    a_next, s_next = grids.coefficients(t_next)
    x0 = (x_next - (s_next / s) * x_t) / (a_next - s_next * a / s)
    return (a * x_t - x0) / s


@torch.no_grad()
def teacher_path(teacher, cond, noise, fine: list[int], stops: list[int], grids: Grids):
    """The teacher's deterministic DDIM path from ``noise`` over ``fine`` (its grid) -> the x
    it holds at each step of ``stops`` and after its last step: len(stops) + 1 tensors."""
    x, out, n = noise, [noise], len(noise)
    for t, t_next in zip(fine, fine[1:] + [-1], strict=True):
        full = partial(torch.full, (n,), dtype=torch.long, device=noise.device)
        x = ddim_step(teacher, cond, x, full(t), full(t_next), grids)
        if t_next in stops or t_next == -1:
            out.append(x)
    return out
