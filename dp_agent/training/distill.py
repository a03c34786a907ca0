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
the same end point as its teacher did. See ``tests/training/test_distill.py`` and the README.

Each round is a run of the one training loop (``dp_agent.training.loop.fit``), the student
the model it trains; the grids and targets are in ``dp_agent.training.targets``.

    distill("demos/pretrained/pusht.safetensors", "runs/pusht_student", DistillConfig())
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch.nn import functional as F

from dp_agent.checkpoint import DistillInfo, Header, load_policy, load_training_state, read_header
from dp_agent.config import DistillConfig, replace_fields
from dp_agent.devices import device_name, peak_memory_mb, select_device
from dp_agent.diffusion.samplers import _trailing_timesteps
from dp_agent.files import atomic_path
from dp_agent.policy import DiffusionPolicy
from dp_agent.progress import Progress, TrainDone, TrainStart
from dp_agent.training.loop import Run, TrainingError, adamw, fit, refuse_existing_run
from dp_agent.training.targets import (
    Grids,
    distillation_target,
    merged_grid,
    student_config,
    teacher_path,
    trajectory_grid,
    v_landing_at,
)
from dp_agent.training.windows import WindowDataset, load_episodes


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
    d = _setup(teacher_path, out_dir, demos, c, resume=resume, overwrite=overwrite)
    torch.manual_seed(c.seed)
    start_round, cut_short = _resume_point(d) if resume else (0, False)
    rounds, total = c.rounds(), c.steps_per_round * len(c.rounds())
    progress = progress or Progress(total, "distill", json_progress, every=c.log_every)
    progress.emit(
        TrainStart(
            total_steps=total,
            start_step=start_round * c.steps_per_round,
            device=d.device.type,
            device_name=device_name(d.device),
            num_episodes=d.data.num_episodes,
            num_samples=len(d.data),
            out=str(d.out_dir),
            parameters=d.n_params,
        )
    )
    for r in range(start_round, len(rounds)):
        run = _round(d, r, rounds[r], cut_short and r == start_round)
        _, d.elapsed = fit(run, progress)
    final = d.out_dir / "final.safetensors"
    with atomic_path(final) as tmp:
        shutil.copyfile(d.round_file(rounds[-1]), tmp)
    seconds = read_header(final).training.seconds
    progress.emit(TrainDone(total, str(final), round(seconds, 2), peak_memory_mb(d.device)))
    progress.close()
    return final


@dataclass
class _Distillation:
    """What the rounds work on."""

    teacher_path: Path
    out_dir: Path
    header: Header  # the teacher checkpoint's
    data: WindowDataset
    device: torch.device
    grids: Grids
    generator: torch.Generator
    config: DistillConfig
    n_params: int = 0  # the student's: the teacher's, or init_from's
    init: DiffusionPolicy | None = None  # init_from's policy, loaded (and checked) in _setup
    demos: str = ""  # the file the windows come from
    round_grids: list[list[int]] = dataclasses.field(default_factory=list)  # grids_of_rounds
    elapsed: float = 0.0  # seconds of distillation so far

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

    def round_header(self, k: int) -> Header:
        """The header of round k's checkpoints: the teacher's, with the student's data and
        the distillation section (its step and seconds set at each save)."""
        c = self.config
        info = DistillInfo(str(self.teacher_path), k, 0, dataclasses.asdict(c), self.demos)
        training = dataclasses.replace(
            self.header.training,
            total_steps=c.steps_per_round * len(c.rounds()),
            demos=self.demos,
            num_episodes=self.data.num_episodes,
            num_samples=len(self.data),  # the student's data, not its teacher's
            device=device_name(self.device),
            distill=info,
        )
        return dataclasses.replace(
            self.header, training=training, planner=None, value=None, optimizer=None
        )


def _saved_demos(out_dir: Path) -> str | None:
    """The data a run in ``out_dir`` was distilled on, where its last checkpoint says."""
    last = out_dir / "last.safetensors"
    distilled = read_header(last).training.distill if last.exists() else None
    return distilled.demos if distilled else None


def _setup(teacher_path, out_dir, demos, cfg: DistillConfig, *, resume, overwrite):
    out_dir, teacher_path = Path(out_dir), Path(teacher_path)
    refuse_existing_run(out_dir, resume, overwrite)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise TrainingError("distillation runs in one process; start it without torchrun")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = select_device(cfg.device)
    teacher, header = load_policy(teacher_path, device)
    if teacher.config.objective != "diffusion":
        raise ValueError(f"{teacher_path}: a {teacher.config.objective!r} policy has no sampler")
    demos = demos or (resume and _saved_demos(out_dir)) or header.training.demos
    if not demos or not Path(demos).exists():
        raise FileNotFoundError(
            f"{teacher_path}: its training data {demos!r} is not here; pass --demos FILE.hdf5"
        )
    data = _windows(demos, teacher, teacher_path, device)
    gen = torch.Generator(device).manual_seed(cfg.seed)
    n_params = sum(p.numel() for p in teacher.parameters())
    init = None
    if cfg.init_from:  # refused before anything is written
        init = load_policy(cfg.init_from, device)[0]
        _check_interface(cfg.init_from, teacher_path, teacher, init)
        n_params = sum(p.numel() for p in init.parameters())  # the student's
    grids = Grids(teacher, device)
    d = _Distillation(teacher_path, out_dir, header, data, device, grids, gen, cfg, n_params)
    d.init, d.demos = init, str(demos)
    d.round_grids = d.grids_of_rounds(teacher)  # a bad --grid stops here, nothing written
    out_dir.mkdir(parents=True, exist_ok=True)
    return d


def _windows(demos, teacher: DiffusionPolicy, teacher_path: Path, device) -> WindowDataset:
    """The student's training windows, from ``demos``, which must have the teacher's parts."""
    from dp_agent.data import DemoReader

    spec = teacher.obs_spec
    with DemoReader(demos) as reader:  # closed once read, on errors too
        episodes = load_episodes(reader, None if spec.single else spec.keys)
    c = teacher.config
    data = WindowDataset(episodes, c.obs_horizon, c.pred_horizon, c.action_horizon, device)
    if _layout(data.spec) != _layout(spec):
        raise ValueError(
            f"{demos}: the observations ({data.spec.describe()}) are not the ones the teacher "
            f"{teacher_path} was trained on ({spec.describe()})"
        )
    return data


def _layout(spec) -> list:
    """An observation spec's parts by key, kind and shape (a single vector's key is whatever
    the file calls it)."""
    return [((None if spec.single else p.key), p.kind, tuple(p.shape)) for p in spec.parts]


# what a student must share with its teacher to learn the teacher's paths: the same windows, the
# same observations and the same noise schedule; and what it takes from ``init_from``: the
# network (the rest of its config, objective, clipping, sampler, is the teacher's)
INTERFACE_FIELDS = (
    "obs_dim",
    "action_dim",
    "obs_horizon",
    "pred_horizon",
    "action_horizon",
    "num_train_steps",
    "beta_schedule",
)
NETWORK_FIELDS = (
    "denoiser",
    "down_dims",
    "kernel_size",
    "n_groups",
    "step_embed_dim",
    "d_model",
    "n_heads",
    "n_layers",
    "dropout",
    "obs_encoder",
    "obs_feature_dim",
    "vision_widths",
    "vision_crop",
    "image_feature_dim",
    "shared_vision_encoder",
)


def _student(d: _Distillation, teacher: DiffusionPolicy, grid: list[int], first: bool):
    """(student, its EMA, optimiser) for a round, initialised from the teacher's weights (or,
    in the first round, from ``init_from``'s: a policy of the same interface, whose network may
    be another, e.g. a narrower U-Net than the teacher's; checked in ``_setup``)."""
    init = d.init if first and d.init is not None else teacher
    network = {name: getattr(init.config, name) for name in NETWORK_FIELDS}
    config = student_config(replace_fields(teacher.config, network), grid)
    student = DiffusionPolicy(config).to(d.device)
    student.load_state_dict(init.state_dict())
    ema = DiffusionPolicy(student.config).to(d.device).requires_grad_(False).eval()
    ema.load_state_dict(student.state_dict())
    return student.train(), ema, adamw(student, d.config, d.device)


def _check_interface(init_path, teacher_path, teacher, init) -> None:
    """Refuse an ``init_from`` policy that does not see and act as the teacher does: another
    field of ``INTERFACE_FIELDS``, other observation parts (``_layout``), not a diffusion
    policy, or another action range (the student learns the teacher's normalised actions)."""
    tc, ic = teacher.config, init.config
    differs = [
        (n, getattr(ic, n), getattr(tc, n))
        for n in INTERFACE_FIELDS
        if getattr(ic, n) != getattr(tc, n)
    ]
    if _layout(init.obs_spec) != _layout(teacher.obs_spec):
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


def _round(d: _Distillation, r: int, k: int, cut_short: bool) -> Run:
    """Round r of the loop: its teacher's k-step student, trained on the targets of its method,
    -> ``steps{k}.safetensors``; ``cut_short``: go on where the round stopped."""
    c = d.config
    teacher = d.teacher_for(r)
    student, ema, opt = _student(d, teacher, d.round_grids[r + 1], r == 0)
    if c.method == "trajectory":
        draw = partial(draw_trajectory, d, teacher, d.round_grids)
    else:
        draw = partial(draw_progressive, d, teacher, d.grids.round_steps(d.round_grids[r], k))
    run = Run(
        config=c,
        out_dir=d.out_dir,
        model=student,
        ema=ema,
        optimizer=opt,
        generator=d.generator,
        device=d.device,
        header=d.round_header(k),
        draw=draw,
        loss=student_loss,
        num_steps=c.steps_per_round,
        final_path=d.round_file(k),
        elapsed_before=d.elapsed,
        step_offset=r * c.steps_per_round,  # the steps of the earlier rounds
        total_steps=c.steps_per_round * len(c.rounds()),
    )
    if cut_short:
        state = load_training_state(run.last_path, student, ema, opt, d.generator)
        run.start_step = int(state.distill.round_step)
    return run


def draw_progressive(d: _Distillation, teacher, steps_table: torch.Tensor):
    """A progressive round's batch: demonstration windows x0, a step t of the student's grid
    per row (``steps_table``: t, t_mid, t_next, merged), x_t, and the teacher's target there."""
    c, data, g, dev = d.config, d.data, d.generator, d.device
    idx = torch.randint(len(data), (c.batch_size,), generator=g, device=dev)
    which = torch.randint(len(steps_table), (c.batch_size,), generator=g, device=dev)
    obs, actions = data.batch(idx)
    x0 = teacher.action_normalizer.normalize(actions)
    noise = torch.randn(x0.shape, generator=g, device=dev)
    steps = steps_table[which]
    a, s = d.grids.coefficients(steps[:, 0])
    x_t = a * x0 + s * noise
    with torch.no_grad():
        target = distillation_target(teacher, teacher.encode(obs), x_t, steps, d.grids)
    return obs, x_t, steps[:, 0], target, 1


def draw_trajectory(d: _Distillation, teacher, grid_pair):
    """A trajectory round's batch: ceil(batch / k) teacher paths from noise, each giving k rows
    (the x at each of the student's steps, and the v whose one DDIM step lands where the
    teacher's path goes next)."""
    c, data, g, dev = d.config, d.data, d.generator, d.device
    fine, grid = grid_pair
    k = len(grid)
    n = -(-c.batch_size // k)
    idx = torch.randint(len(data), (n,), generator=g, device=dev)
    obs, actions = data.batch(idx)
    noise = torch.randn(actions.shape, generator=g, device=dev)
    xs = teacher_path(teacher, teacher.encode(obs), noise, fine, grid, d.grids)
    x_t, x_next = torch.cat(xs[:-1]), torch.cat(xs[1:])
    t = torch.tensor(grid, device=dev).repeat_interleave(n)
    t_next = torch.tensor(grid[1:] + [-1], device=dev).repeat_interleave(n)
    return obs, x_t, t, v_landing_at(x_t, x_next, t, t_next, d.grids), k


def student_loss(student, obs, x_t, t, target, repeats: int) -> torch.Tensor:
    """The MSE of the student's v at x_t against the target; each observation conditions
    ``repeats`` rows (a trajectory student's k steps, rows in the order of x_t)."""
    cond = student.encode(obs)  # (B, Dc)
    if repeats > 1:
        cond = cond.repeat(repeats, 1)  # (k B, Dc)
    return F.mse_loss(student.denoiser(x_t, t, cond).float(), target)


def _resume_point(d: _Distillation) -> tuple[int, bool]:
    """(index of the round to run, whether it was cut short) from ``last.safetensors``."""
    last = d.out_dir / "last.safetensors"
    if not last.exists():
        return 0, False
    training = read_header(last).training
    info = training.distill
    if not info:
        raise TrainingError(f"{last} is not a distillation checkpoint; choose another --out")
    saved = replace_fields(DistillConfig(), info.config)
    c = d.config
    shape = ("teacher_steps", "student_steps", "steps_per_round")
    if any(getattr(saved, name) != getattr(c, name) for name in shape):
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
    if info.demos and Path(info.demos).resolve() != Path(d.demos).resolve():
        raise TrainingError(
            f"{last}: cannot resume, it was distilled on {info.demos}, this run on "
            f"{d.demos}; pass --demos {info.demos}"
        )
    d.elapsed = float(training.seconds or 0.0)
    r = c.rounds().index(int(info.round_steps))
    if int(info.round_step) >= c.steps_per_round:  # that round finished
        return r + 1, False
    d.generator.manual_seed(c.seed)  # replaced by the saved state in _round
    return r, True
