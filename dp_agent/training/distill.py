"""Few-step sampling by progressive distillation (Salimans & Ho 2022) of a trained policy.

A round halves the number of deterministic DDIM steps: a student, initialised from its teacher,
learns to go in one step where the teacher goes in two. Each batch takes demonstration windows
x0, a step t of the student's grid and noise, forms x_t = √ᾱ_t x0 + √(1-ᾱ_t) ε, runs the teacher
two DDIM steps t → t_mid → t_next (clipping its x0 estimates as it does at inference), and asks
for the x̃0 whose one DDIM step from x_t lands on the same point:

    x̃0 = (x_next - (σ_next/σ_t) x_t) / (α_next - σ_next α_t / σ_t),   α = √ᾱ, σ = √(1-ᾱ).

Students predict v = α ε - σ x0 (an ε-predictor cannot give x0 at t = T-1, where α ≈ 5e-4 and
its error would be multiplied by 2000); the loss is the MSE in v, i.e. (1 + SNR)·|x̂0 - x̃0|².
The grids are diffusers' "trailing" ones (the first step starts at T-1), which nest: every point
of the K-step grid lies on the 2K-step grid, so each teacher is asked only at steps it was
trained on. The first teacher is the trained policy sampled with DDIM on ``teacher_steps``;
after log2(teacher_steps / student_steps) rounds the student samples in ``student_steps`` calls.
A step count that is not the teacher's halved a whole number of times ends with a round that
merges only the noisiest pairs of steps and keeps the rest, whose target is then the teacher's
own single step: 16 -> 8 -> 4 -> 3 samples at t = 99, 49, 24 (``merged_grid``), the last two
steps those of the 4-step student, where the chunk's fine detail is decided.

``method="trajectory"`` distils in one round instead: the teacher samples its whole DDIM path
from pure noise (``teacher_steps`` calls, as it samples at inference) and the student, on its own
``grid`` of points of that path, learns each segment between two of its points in one step, from
the very x_t the teacher passed through, so no round's error is handed on to the next and the
student is trained where its own sampler goes. It may start from an earlier student
(``init_from``): 16 -> 3 from the 2-step student, or into another network of the same
interface (a narrower U-Net trained on the same demos, whose calls are cheaper).

Why this method (over consistency distillation): on the PushT teacher it gets to two steps in
about 6k student updates on a CPU, each round's target is deterministic (no EMA target network
to tune), and both modes of a bimodal task survive because each round maps the same noise to
the same end point as its teacher did. See ``tests/test_distill.py`` and the README.

    distill("demos/pretrained/pusht.safetensors", "runs/pusht_student", DistillConfig())
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch.nn import functional as F

from dp_agent.checkpoint import (
    load_policy,
    load_training_state,
    read_header,
    save_training_state,
    space_from_dict,
)
from dp_agent.config import replace_fields
from dp_agent.devices import device_name, peak_memory_mb, select_device, use_bf16
from dp_agent.diffusion.samplers import _split_prediction, _trailing_timesteps
from dp_agent.fast.kernels import use_training_kernels
from dp_agent.files import atomic_path
from dp_agent.policy import DiffusionPolicy
from dp_agent.progress import Progress, TrainCheckpoint, TrainDone, TrainStart, TrainStep
from dp_agent.training.train import (
    TrainingError,
    cosine_with_warmup,
    ema_decay,
    ema_update,
    refuse_existing_run,
)
from dp_agent.training.windows import WindowDataset, load_episodes


@dataclass
class DistillConfig:
    """How to distil: the step counts, and the optimiser of each round."""

    teacher_steps: int = 16  # DDIM steps of the first teacher (the trained policy)
    student_steps: int = 2  # steps of the final student: teacher_steps / 2^rounds
    steps_per_round: int = 2000
    batch_size: int = 128
    lr: float = 3e-4
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_max_decay: float = 0.999
    checkpoint_every: int = 500
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    num_threads: int = 0  # 0 = torch's default
    precision: str = "fp32"  # "fp32", "bf16" or "auto" (bf16 autocast for the student)
    method: str = "progressive"  # or "trajectory": one round on the teacher's whole DDIM path
    grid: tuple[int, ...] | None = None  # the trajectory student's steps (default: trailing)
    init_from: str | None = None  # the student's first weights (default: the teacher's)

    def rounds(self) -> list[int]:
        """The student step count of each round: halving, e.g. [8, 4, 2] from 16 to 2; a last
        round that halves only part of the way where the count is not a power of two below the
        teacher's ([8, 4, 3] from 16 to 3); one round for the trajectory method."""
        if self.method == "trajectory":
            return [self.student_steps]
        out, k = [], self.teacher_steps
        while k > self.student_steps:
            k = max(k // 2, self.student_steps)
            out.append(k)
        return out

    def validate(self) -> None:
        # a trajectory student with init_from (e.g. another network) may take its teacher's
        # steps: a few-step student moved into a narrower U-Net, its calls cheaper
        if self.method == "trajectory" and self.init_from is not None:
            most, rule = self.teacher_steps, "at most teacher_steps (trajectory, init_from)"
        else:
            most, rule = self.teacher_steps - 1, "fewer than teacher_steps"
        if not 1 <= self.student_steps <= most:
            raise ValueError(
                f"student_steps must be at least 1 and {rule}, got {self.student_steps} and "
                f"{self.teacher_steps}"
            )
        for name in ("steps_per_round", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}")
        if self.method not in ("progressive", "trajectory"):
            raise ValueError(f"method must be 'progressive' or 'trajectory', got {self.method!r}")
        if self.grid is not None and (
            self.method != "trajectory" or len(self.grid) != self.student_steps
        ):
            raise ValueError(
                f"grid {list(self.grid)} needs method 'trajectory' and student_steps "
                f"{len(self.grid)}, got {self.method!r} and {self.student_steps}"
            )


def student_config(teacher_config, grid: list[int]):
    """A teacher's PolicyConfig turned into the config of its student on ``grid``:
    v-prediction, DDIM on that grid as its default sampler (the trailing spacing where the grid
    is the trailing one, else the grid itself)."""
    k = len(grid)
    trailing = grid == _trailing_timesteps(teacher_config.num_train_steps, k)
    return replace_fields(
        teacher_config,
        {"prediction_type": "v_prediction", "sampler": "ddim", "num_inference_steps": k,
         "timestep_spacing": "trailing", "timesteps": None if trailing else tuple(grid)},
    )  # fmt: skip


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
    if (len(grid) != k or grid[0] != teacher_grid[0] or any(t not in teacher_grid for t in grid)
            or any(a <= b for a, b in zip(grid, grid[1:], strict=False))):  # fmt: skip
        raise ValueError(
            f"a {k}-step student grid must be {k} decreasing points of the teacher's "
            f"{teacher_grid}, starting at {teacher_grid[0]}; got {grid}"
        )
    return grid


class _Grids:
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


def _ddim_step(policy, cond, x, t, t_next, grids: _Grids) -> torch.Tensor:
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
def distillation_target(teacher, cond, x_t, steps: torch.Tensor, grids: _Grids) -> torch.Tensor:
    """The v a student should predict at x_t so that its one step matches the teacher's two
    (or, on a step the student keeps, the teacher's one); ``steps`` (B, 4) holds each row's t,
    t_mid, t_next and whether it merges two steps."""
    t, t_mid, t_next, merged = steps.unbind(1)
    x_next = _ddim_step(teacher, cond, x_t, t, t_mid, grids)
    two = merged.nonzero().squeeze(1)
    if len(two):
        x_next = x_next.index_copy(
            0, two, _ddim_step(teacher, cond[two], x_next[two], t_mid[two], t_next[two], grids)
        )
    return v_landing_at(x_t, x_next, t, t_next, grids)


def v_landing_at(x_t, x_next, t, t_next, grids: _Grids) -> torch.Tensor:
    """The v whose one DDIM step from x_t at t lands on x_next at t_next (per row)."""
    a, s = grids.coefficients(t)
    a_next, s_next = grids.coefficients(t_next)
    x0 = (x_next - (s_next / s) * x_t) / (a_next - s_next * a / s)
    return (a * x_t - x0) / s


@dataclass
class _Distillation:
    """What the rounds work on."""

    teacher_path: Path
    out_dir: Path
    header: dict  # the teacher checkpoint's
    data: WindowDataset
    device: torch.device
    grids: _Grids
    generator: torch.Generator
    config: DistillConfig
    n_params: int = 0  # the student's: the teacher's, or init_from's
    init: DiffusionPolicy | None = None  # init_from's policy, loaded (and checked) in _setup
    demos: str = ""  # the file the windows come from
    round_grids: list[list[int]] = dataclasses.field(default_factory=list)  # grids_of_rounds
    elapsed_before: float = 0.0  # seconds of distillation before a resume
    t0: float = 0.0  # perf_counter at this process's start

    def seconds(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t0

    def round_file(self, k: int) -> Path:
        return self.out_dir / f"steps{k}.safetensors"

    def teacher_for(self, r: int) -> DiffusionPolicy:
        """Round r's teacher: the trained policy, or the previous round's student."""
        path = self.teacher_path if r == 0 else self.round_file(self.config.rounds()[r - 1])
        return load_policy(path, self.device)[0].requires_grad_(False)

    def grids_of_rounds(self, teacher: DiffusionPolicy) -> list[list[int]]:
        """The timestep grid of the first teacher, then of each round's student."""
        c, tc = self.config, teacher.config
        if tc.timesteps is not None and len(tc.timesteps) == c.teacher_steps:
            grid = list(tc.timesteps)  # a student with its own grid, distilled further
        else:
            grid = _trailing_timesteps(tc.num_train_steps, c.teacher_steps)
        grids = [grid]
        if c.method == "trajectory":
            return grids + [trajectory_grid(grid, c.student_steps, c.grid)]
        for k in c.rounds():
            grids.append(merged_grid(grids[-1], k))
        return grids

    def save(self, path, ema, step, seconds, k, round_step, state=None) -> Path:
        h = self.header
        training = {
            **h.get("training", {}), "step": step, "seconds": seconds,
            "total_steps": self.config.steps_per_round * len(self.config.rounds()),
            "demos": self.demos, "num_episodes": self.data.num_episodes,
            "num_samples": len(self.data),  # the student's data, not its teacher's
            "device": device_name(self.device),
            "distill": {"teacher": str(self.teacher_path), "demos": self.demos, "round_steps": k,
                        "round_step": round_step, "config": dataclasses.asdict(self.config)},
        }  # fmt: skip
        return save_training_state(
            path, ema, space_from_dict(h["observation_space"]),
            space_from_dict(h["action_space"]), h.get("env_id"), training,
            h.get("env_kwargs") or {}, state,
        )  # fmt: skip


def _saved_demos(out_dir: Path) -> str | None:
    """The data a run in ``out_dir`` was distilled on, where its last checkpoint says."""
    last = out_dir / "last.safetensors"
    return read_header(last)["training"].get("distill", {}).get("demos") if last.exists() else None


def _setup(teacher_path, out_dir, demos, cfg: DistillConfig, *, resume, overwrite):
    out_dir, teacher_path = Path(out_dir), Path(teacher_path)
    refuse_existing_run(out_dir, resume, overwrite)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = select_device(cfg.device)
    teacher, header = load_policy(teacher_path, device)
    if teacher.config.objective != "diffusion":
        raise ValueError(f"{teacher_path}: a {teacher.config.objective!r} policy has no sampler")
    demos = demos or (resume and _saved_demos(out_dir)) or header.get("training", {}).get("demos")
    if not demos or not Path(demos).exists():
        raise FileNotFoundError(
            f"{teacher_path}: its training data {demos!r} is not here; pass --demos FILE.hdf5"
        )
    from dp_agent.data import DemoReader

    spec = teacher.obs_spec
    episodes = load_episodes(DemoReader(demos), None if spec.single else spec.keys)
    c = teacher.config
    data = WindowDataset(episodes, c.obs_horizon, c.pred_horizon, c.action_horizon, device)

    def layout(sp):  # a single vector's key is whatever the file calls it
        return [((None if sp.single else p.key), p.kind, tuple(p.shape)) for p in sp.parts]

    if layout(data.spec) != layout(spec):
        raise ValueError(
            f"{demos}: the observations ({data.spec.describe()}) are not the ones the teacher "
            f"{teacher_path} was trained on ({spec.describe()})"
        )
    gen = torch.Generator(device).manual_seed(cfg.seed)
    n_params = sum(p.numel() for p in teacher.parameters())
    init = None
    if cfg.init_from:  # refused before anything is written
        init = load_policy(cfg.init_from, device)[0]
        _check_interface(cfg.init_from, teacher_path, teacher, init, layout)
        n_params = sum(p.numel() for p in init.parameters())  # the student's
    run = _Distillation(teacher_path, out_dir, header, data, device, _Grids(teacher, device),
                        gen, cfg, n_params, init, demos=str(demos))  # fmt: skip
    run.round_grids = run.grids_of_rounds(teacher)  # a bad --grid stops here, nothing written
    out_dir.mkdir(parents=True, exist_ok=True)
    return run


# what a student must share with its teacher to learn the teacher's paths: the same windows, the
# same observations and the same noise schedule; and what it takes from ``init_from``: the
# network (the rest of its config, objective, clipping, sampler, is the teacher's)
INTERFACE_FIELDS = ("obs_dim", "action_dim", "obs_horizon", "pred_horizon", "action_horizon",
                    "num_train_steps", "beta_schedule")  # fmt: skip
NETWORK_FIELDS = (
    "denoiser", "down_dims", "kernel_size", "n_groups", "step_embed_dim", "d_model", "n_heads",
    "n_layers", "dropout", "obs_encoder", "obs_feature_dim", "vision_widths", "vision_crop",
    "image_feature_dim", "shared_vision_encoder",
)  # fmt: skip


def _student(run: _Distillation, teacher: DiffusionPolicy, grid: list[int], first: bool):
    """(student, its EMA, optimiser) for a round, initialised from the teacher's weights (or,
    in the first round, from ``init_from``'s: a policy of the same interface, whose network may
    be another, e.g. a narrower U-Net than the teacher's; checked in ``_setup``)."""
    init = run.init if first and run.init is not None else teacher
    network = {name: getattr(init.config, name) for name in NETWORK_FIELDS}
    config = student_config(replace_fields(teacher.config, network), grid)
    student = use_training_kernels(DiffusionPolicy(config)).to(run.device)
    student.load_state_dict(init.state_dict())
    ema = DiffusionPolicy(student.config).to(run.device).requires_grad_(False).eval()
    ema.load_state_dict(student.state_dict())
    c = run.config
    fused = run.device.type in ("cpu", "cuda")
    opt = torch.optim.AdamW(student.parameters(), c.lr, weight_decay=c.weight_decay, fused=fused)
    return student.train(), ema, opt


def _check_interface(init_path, teacher_path, teacher, init, layout) -> None:
    """Refuse an ``init_from`` policy that does not see and act as the teacher does: another
    field of ``INTERFACE_FIELDS``, other observation parts (``layout``), not a diffusion
    policy, or another action range (the student learns the teacher's normalised actions)."""
    tc, ic = teacher.config, init.config
    differs = [(n, getattr(ic, n), getattr(tc, n)) for n in INTERFACE_FIELDS
               if getattr(ic, n) != getattr(tc, n)]  # fmt: skip
    if layout(init.obs_spec) != layout(teacher.obs_spec):
        differs.append(("obs_spec", init.obs_spec.describe(), teacher.obs_spec.describe()))
    if ic.objective != "diffusion":
        differs.append(("objective", ic.objective, "diffusion"))
    if differs:
        name, theirs, ours = differs[0]
        raise ValueError(
            f"{init_path}: field '{name}' is {theirs!r}, not the teacher's {ours!r} "
            f"({teacher_path}); a student sees and acts as its teacher does (only its network "
            "may differ)"
        )
    ta, ia = teacher.action_normalizer, init.action_normalizer
    if not (torch.allclose(ta.min, ia.min) and torch.allclose(ta.max, ia.max)):
        raise ValueError(
            f"{init_path}: its action range {ia.min.tolist()}-{ia.max.tolist()} is not the "
            f"teacher's {ta.min.tolist()}-{ta.max.tolist()} ({teacher_path}); train it on the "
            "teacher's demonstrations"
        )


def _optimise(run, teacher, student, opt, steps_table, autocast) -> torch.Tensor:
    """One update of the student on a batch; -> the loss (on the device)."""
    c, data, g, dev = run.config, run.data, run.generator, run.device
    idx = torch.randint(len(data), (c.batch_size,), generator=g, device=dev)
    which = torch.randint(len(steps_table), (c.batch_size,), generator=g, device=dev)
    obs, actions = data.batch(idx)
    x0 = teacher.action_normalizer.normalize(actions)
    noise = torch.randn(x0.shape, generator=g, device=dev)
    steps = steps_table[which]
    a, s = run.grids.coefficients(steps[:, 0])
    x_t = a * x0 + s * noise
    with torch.no_grad():
        target = distillation_target(teacher, teacher.encode(obs), x_t, steps, run.grids)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
        loss = F.mse_loss(student.denoiser(x_t, steps[:, 0], student.encode(obs)).float(), target)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(student.parameters(), c.grad_clip)
    opt.step()
    return loss


@torch.no_grad()
def teacher_path(teacher, cond, noise, fine: list[int], stops: list[int], grids: _Grids):
    """The teacher's deterministic DDIM path from ``noise`` over ``fine`` (its grid) -> the x
    it holds at each step of ``stops`` and after its last step: len(stops) + 1 tensors."""
    x, out, n = noise, [noise], len(noise)
    for t, t_next in zip(fine, fine[1:] + [-1], strict=True):
        full = partial(torch.full, (n,), dtype=torch.long, device=noise.device)
        x = _ddim_step(teacher, cond, x, full(t), full(t_next), grids)
        if t_next in stops or t_next == -1:
            out.append(x)
    return out


def _optimise_trajectory(run, teacher, student, opt, grid_pair, autocast) -> torch.Tensor:
    """One update of a trajectory student: ceil(batch / k) teacher paths from noise, each
    giving k rows (the x at each of the student's steps, and the v whose one DDIM step lands
    where the teacher's path goes next)."""
    c, data, g, dev = run.config, run.data, run.generator, run.device
    fine, grid = grid_pair
    k = len(grid)
    n = -(-c.batch_size // k)
    idx = torch.randint(len(data), (n,), generator=g, device=dev)
    obs, actions = data.batch(idx)
    noise = torch.randn(actions.shape, generator=g, device=dev)
    xs = teacher_path(teacher, teacher.encode(obs), noise, fine, grid, run.grids)
    x_t, x_next = torch.cat(xs[:-1]), torch.cat(xs[1:])
    t = torch.tensor(grid, device=dev).repeat_interleave(n)
    t_next = torch.tensor(grid[1:] + [-1], device=dev).repeat_interleave(n)
    target = v_landing_at(x_t, x_next, t, t_next, run.grids)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
        cond = student.encode(obs).repeat(k, 1)  # (k n, Dc), rows in the order of x_t
        loss = F.mse_loss(student.denoiser(x_t, t, cond).float(), target)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(student.parameters(), c.grad_clip)
    opt.step()
    return loss


def _run_round(run: _Distillation, r: int, k: int, progress, cut_short: bool) -> None:
    """Round r: distil its teacher into a k-step student -> ``steps{k}.safetensors``."""
    c = run.config
    teacher = run.teacher_for(r)
    student, ema, opt = _student(run, teacher, run.round_grids[r + 1], r == 0)
    first = 0
    if cut_short:  # go on where the round stopped
        state = load_training_state(run.out_dir / "last.safetensors", student, ema, opt,
                                    run.generator)  # fmt: skip
        first = int(state["distill"]["round_step"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        opt, cosine_with_warmup(c.warmup_steps, c.steps_per_round), first - 1
    )
    if c.method == "trajectory":
        step = partial(_optimise_trajectory, grid_pair=run.round_grids)
    else:
        step = partial(_optimise, steps_table=run.grids.round_steps(run.round_grids[r], k))
    autocast = use_bf16(c.precision, run.device)
    base, total = r * c.steps_per_round, c.steps_per_round * len(c.rounds())
    went_bad, t_start = torch.zeros((), dtype=torch.bool, device=run.device), time.perf_counter()
    for i in range(first + 1, c.steps_per_round + 1):
        loss = step(run, teacher, student, opt, autocast=autocast)
        scheduler.step()
        ema_update(ema, student, ema_decay(i, 0.75, c.ema_max_decay))
        went_bad |= ~torch.isfinite(loss.detach())
        if i % c.log_every == 0 or i == c.steps_per_round:
            _check_finite(run, went_bad, student, base + i)
            speed = (i - first) * c.batch_size / (time.perf_counter() - t_start)
            eta = ((total - base - i) * c.batch_size) / speed
            lr = scheduler.get_last_lr()[0]
            progress.emit(TrainStep(base + i, total, loss.item(), lr, speed, eta))
        if i % c.checkpoint_every == 0 and i < c.steps_per_round:
            _check_finite(run, went_bad, student, base + i)
            last = run.out_dir / "last.safetensors"
            run.save(last, ema, base + i, run.seconds(), k, i, (student, opt, run.generator))
            progress.emit(TrainCheckpoint(base + i, str(last)))
    _check_finite(run, went_bad, student, base + c.steps_per_round)
    seconds = run.seconds()
    run.save(run.round_file(k), ema, base + c.steps_per_round, seconds, k, c.steps_per_round)
    # the round is done: a resume starts the next one from here
    run.save(run.out_dir / "last.safetensors", ema, base + c.steps_per_round, seconds, k,
             c.steps_per_round, (student, opt, run.generator))  # fmt: skip


def _check_finite(run, went_bad, student, step) -> None:
    bad = went_bad | ~torch.stack([torch.isfinite(p).all() for p in student.parameters()]).all()
    if bad.item():
        raise TrainingError(
            f"the distillation loss became NaN or inf by step {step}; try a lower learning rate "
            f"(--lr). The last good checkpoint is {run.out_dir / 'last.safetensors'}"
        )


def _resume_point(run: _Distillation) -> tuple[int, bool]:
    """(index of the round to run, whether it was cut short) from ``last.safetensors``."""
    last = run.out_dir / "last.safetensors"
    if not last.exists():
        return 0, False
    training = read_header(last)["training"]
    info = training.get("distill")
    if not info:
        raise TrainingError(f"{last} is not a distillation checkpoint; choose another --out")
    saved = DistillConfig(**info["config"])
    c = run.config
    if (saved.teacher_steps, saved.student_steps, saved.steps_per_round) != (
        c.teacher_steps, c.student_steps, c.steps_per_round):  # fmt: skip
        raise TrainingError(
            f"{last}: cannot resume, it distils {saved.teacher_steps} -> {saved.student_steps} "
            f"steps in rounds of {saved.steps_per_round}, this run "
            f"{c.teacher_steps} -> {c.student_steps} in rounds of {c.steps_per_round}"
        )
    if (saved.method, tuple(saved.grid or ())) != (c.method, tuple(c.grid or ())):
        raise TrainingError(
            f"{last}: cannot resume, it is a {saved.method} distillation (grid {saved.grid}), "
            f"this run {c.method} (grid {c.grid})"
        )
    if saved.init_from != c.init_from:
        raise TrainingError(
            f"{last}: cannot resume, it started from init_from {saved.init_from!r}, this run "
            f"from {c.init_from!r}; pass the same --init-from"
        )
    if info.get("demos") and Path(info["demos"]).resolve() != Path(run.demos).resolve():
        raise TrainingError(
            f"{last}: cannot resume, it was distilled on {info['demos']}, this run on "
            f"{run.demos}; pass --demos {info['demos']}"
        )
    run.elapsed_before = float(training.get("seconds", 0.0))
    r = c.rounds().index(int(info["round_steps"]))
    if int(info["round_step"]) >= c.steps_per_round:  # that round finished
        return r + 1, False
    run.generator.manual_seed(c.seed)  # replaced by the saved state in _run_round
    return r, True


def distill(
    teacher_path: str | Path,
    out_dir: str | Path,
    config: DistillConfig | None = None,
    *,
    demos: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
    json_progress: bool = False,
) -> Path:
    """Distil ``teacher_path`` into a ``config.student_steps``-step student ->
    ``out_dir/final.safetensors`` (a policy checkpoint like any other; its default sampler is
    its own). Each round also leaves ``steps{K}.safetensors``; ``last.safetensors`` resumes.
    ``demos`` defaults to the file the teacher was trained on."""
    c = config or DistillConfig()
    c.validate()
    run = _setup(teacher_path, out_dir, demos, c, resume=resume, overwrite=overwrite)
    torch.manual_seed(c.seed)
    start_round, cut_short = _resume_point(run) if resume else (0, False)
    rounds, total = c.rounds(), c.steps_per_round * len(c.rounds())
    progress = progress or Progress(total, "distill", json_progress, every=c.log_every)
    progress.emit(TrainStart(total, start_round * c.steps_per_round, run.device.type,
                             device_name(run.device), run.data.num_episodes, len(run.data),
                             str(run.out_dir), run.n_params))  # fmt: skip
    run.t0 = time.perf_counter()
    for r in range(start_round, len(rounds)):
        _run_round(run, r, rounds[r], progress, cut_short and r == start_round)
    final = run.out_dir / "final.safetensors"
    with atomic_path(final) as tmp:
        shutil.copyfile(run.round_file(rounds[-1]), tmp)
    seconds = read_header(final)["training"]["seconds"]
    progress.emit(TrainDone(total, str(final), round(seconds, 2), peak_memory_mb(run.device)))
    progress.close()
    return final
