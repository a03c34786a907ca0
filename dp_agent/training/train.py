"""Training: one plain loop over random mini-batches of windows, with AdamW, a cosine schedule
with warm-up, gradient clipping, EMA weights, atomic checkpoints and resume."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dp_agent.checkpoint import (
    load_policy,
    load_training_state,
    read_checkpoint,
    save_training_state,
)
from dp_agent.config import PolicyConfig, TrainConfig, replace_fields
from dp_agent.devices import device_name, peak_memory_mb, select_device, use_bf16
from dp_agent.fast.kernels import use_training_kernels
from dp_agent.policy import DiffusionPolicy
from dp_agent.progress import (
    Progress,
    SilentProgress,
    TrainCheckpoint,
    TrainDone,
    TrainStart,
    TrainStep,
)
from dp_agent.training.windows import WindowDataset, load_episodes


class TrainingError(RuntimeError):
    """Training cannot go on (NaN loss, data that does not fit the checkpoint being resumed)."""


def ema_decay(step: int, power: float = 0.75, max_decay: float = 0.9999) -> float:
    """EMA decay after ``step`` optimiser steps: 1 - (1 + step)^-power, capped; 0 at step 0."""
    if step <= 0:
        return 0.0
    return min(1.0 - (1.0 + step) ** -power, max_decay)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    ema_params = [p for p in ema.parameters()]
    params = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    for eb, b in zip(ema.buffers(), model.buffers(), strict=True):
        eb.copy_(b)


def cosine_with_warmup(warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _spaces_for(env_id: str | None, env_kwargs: dict, dataset: WindowDataset):
    """The env's spaces when it is registered here and fits the data, else spaces spanning the
    data (a Box per part: unbounded for vectors, [0, 255] uint8 for images)."""
    import gymnasium as gym

    from dp_agent.observations import IMAGE, ObservationError

    if env_id is not None and env_id in gym.registry:
        try:
            env = gym.make(env_id, **env_kwargs)
        except Exception:  # an env that cannot be built here: fall back to the data's ranges
            env = None
        if env is not None:
            obs_space, act_space = env.observation_space, env.action_space
            env.close()
            try:
                dataset.spec.check_space(obs_space, env_id)
                return obs_space, act_space
            except ObservationError:
                pass

    def box(part):
        if part.kind == IMAGE:
            return gym.spaces.Box(0, 255, part.shape, np.uint8)
        return gym.spaces.Box(-np.inf, np.inf, part.shape, np.float32)

    parts = {p.key: box(p) for p in dataset.spec.parts}
    obs_space = parts[dataset.spec.keys[0]] if dataset.spec.single else gym.spaces.Dict(parts)
    act_space = gym.spaces.Box(dataset.actions.min(0), dataset.actions.max(0), dtype=np.float32)
    return obs_space, act_space


@dataclass
class Run:
    """Everything a training loop works on, made by ``setup``."""

    out_dir: Path
    source: str  # where the demonstrations came from
    env_id: str | None
    env_kwargs: dict
    obs_space: Any
    act_space: Any
    data: WindowDataset
    device: torch.device
    model: DiffusionPolicy
    ema: DiffusionPolicy
    optimizer: torch.optim.Optimizer
    generator: torch.Generator  # batches and noise (the same on every rank); checkpointed
    start_step: int = 0
    elapsed_before: float = 0.0  # seconds of training before a resume
    rank: int = 0  # this process, and how many train together (torchrun)
    world_size: int = 1

    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.safetensors"

    def shard(self, batch_size: int) -> slice:
        """This rank's part of the global batch: every rank draws the whole batch from the shared
        generator and trains on its slice, so N processes train exactly as one would."""
        b = batch_size // self.world_size
        return slice(self.rank * b, (self.rank + 1) * b)

    def save(self, tc: TrainConfig, path: Path, step: int, seconds: float, resumable=True):
        """A checkpoint of the EMA policy; ``resumable`` adds what ``--resume`` needs."""
        training = {
            "step": step,
            "total_steps": tc.num_steps,
            "seconds": seconds,
            "demos": self.source,
            "num_episodes": self.data.num_episodes,
            "num_samples": len(self.data),
            "device": device_name(self.device),
            "train_config": dataclasses.asdict(tc),
        }
        state = (self.model, self.optimizer, self.generator) if resumable else None
        return save_training_state(
            path, self.ema, self.obs_space, self.act_space, self.env_id, training,
            self.env_kwargs, state,
        )  # fmt: skip


def refuse_existing_run(out_dir: Path, resume: bool, overwrite: bool) -> None:
    """A run folder that holds checkpoints is only written to with ``resume`` or
    ``overwrite`` (training and distillation alike)."""
    existing = [p.name for p in (out_dir / "last.safetensors", out_dir / "final.safetensors")
                if p.exists()]  # fmt: skip
    if existing and not (resume or overwrite):
        raise TrainingError(
            f"{out_dir} already holds {' and '.join(existing)}; pass --resume to go on from it, "
            "--overwrite to replace it, or choose another --out"
        )


def setup(demos, out_dir, policy_config, tc, *, resume, overwrite, obs_keys) -> Run:
    """Data, model, EMA copy, optimiser and generator of a run, restored from
    ``out_dir/last.safetensors`` with ``resume``."""
    out_dir = Path(out_dir)
    refuse_existing_run(out_dir, resume, overwrite)
    torch.manual_seed(tc.seed)
    # threads: torch's default (one per core) unless asked; on the idle 2-core machine 2 threads
    # trained 1.42x faster than 1 (benchmarks/training.py), with another job on the other core 1
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    rank, world_size, device = init_distributed(tc.device)
    if tc.batch_size % world_size:
        raise TrainingError(
            f"batch_size {tc.batch_size} is the global batch and must divide by the number of "
            f"processes ({world_size})"
        )
    if isinstance(demos, (str, Path)):
        from dp_agent.data import DemoReader

        demos = DemoReader(demos)
    source = str(getattr(demos, "path", "in-memory episodes"))
    episodes = load_episodes(demos, obs_keys)
    if not episodes:
        raise TrainingError(f"{source}: no episodes to train on")
    pc = policy_config
    data = WindowDataset(episodes, pc.obs_horizon, pc.pred_horizon, pc.action_horizon, device)
    from_data = {"obs_dim": data.obs_dim, "action_dim": data.action_dim}
    if not data.spec.single or data.spec.image_parts:  # a single vector needs no spec
        from_data["obs_spec"] = data.spec.to_dict()
    pc = replace_fields(pc, from_data)
    env_id = getattr(demos, "env_id", None)
    env_kwargs = dict(getattr(demos, "env_args", {}).get("env_kwargs") or {})
    model = use_training_kernels(DiffusionPolicy(pc))
    model.fit_normalizers(data.obs, data.actions)
    resuming = resume and (out_dir / "last.safetensors").exists()
    if tc.init_from and not resuming:
        _start_from(Path(tc.init_from), model)
    model.to(device)
    run = Run(
        out_dir, source, env_id, env_kwargs, *_spaces_for(env_id, env_kwargs, data), data,
        device, model, copy.deepcopy(model).requires_grad_(False).eval(),
        _adamw(model, tc, device),
        torch.Generator(device).manual_seed(tc.seed), rank=rank, world_size=world_size,
    )  # fmt: skip
    if resuming:
        _check_resumable(run.last_path, read_checkpoint(run.last_path)[1]["policy_config"], pc)
        state = load_training_state(run.last_path, model, run.ema, run.optimizer, run.generator)
        run.start_step, run.elapsed_before = int(state["step"]), float(state.get("seconds", 0))
    return run


def train(
    demos,
    out_dir: str | Path,
    policy_config: PolicyConfig,
    train_config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    obs_keys: list[str] | None = None,
    progress: Progress | None = None,
    json_progress: bool = False,
) -> Path:
    """Train on ``demos`` (a file, a DemoReader, or episodes with ``obs`` (T, Do) and
    ``actions`` (T, Da)) -> ``final.safetensors`` (EMA weights for inference; the resumable
    state is in ``last.safetensors``)."""
    tc = train_config
    tc.validate()
    run = setup(demos, out_dir, policy_config, tc, resume=resume, overwrite=overwrite,
                obs_keys=obs_keys)  # fmt: skip
    model, device, start_step = run.model, run.device, run.start_step
    net = _distributed(model, device) if run.world_size > 1 else model
    mine = run.shard(tc.batch_size)
    # the learning rate is a pure function of the step, so a resumed run picks it up where it was
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        run.optimizer, cosine_with_warmup(tc.warmup_steps, tc.num_steps), start_step - 1
    )
    progress = _start_progress(run, tc, progress, json_progress)
    autocast = use_bf16(tc.precision, device)
    went_bad = torch.zeros((), dtype=torch.bool, device=device)  # any non-finite loss so far
    t0, step = time.perf_counter(), start_step
    model.train()
    for step in range(start_step + 1, tc.num_steps + 1):
        loss = _optimise(run, net, tc, mine, autocast)
        scheduler.step()
        ema_update(run.ema, model, ema_decay(step, tc.ema_power, tc.ema_max_decay))
        went_bad |= ~torch.isfinite(loss.detach())

        if step % tc.log_every == 0 or step == tc.num_steps:
            _check_finite(run, went_bad, step)
            speed = (step - start_step) * tc.batch_size / (time.perf_counter() - t0)  # samples/s
            eta = (tc.num_steps - step) * tc.batch_size / speed
            lr = scheduler.get_last_lr()[0]
            progress.emit(TrainStep(step, tc.num_steps, loss.item(), lr, speed, eta))
        if step % tc.checkpoint_every == 0 and step < tc.num_steps:
            _check_finite(run, went_bad, step)  # never replace a good checkpoint with NaN
            if run.rank == 0:
                run.save(tc, run.last_path, step, run.elapsed_before + time.perf_counter() - t0)
            progress.emit(TrainCheckpoint(step, str(run.last_path)))

    _check_finite(run, went_bad, step)
    seconds = run.elapsed_before + time.perf_counter() - t0
    final = run.out_dir / "final.safetensors"
    if run.rank == 0:
        run.save(tc, run.last_path, step, seconds)  # what --resume goes on from
        run.save(tc, final, step, seconds, resumable=False)  # EMA weights only
    progress.emit(TrainDone(step, str(final), round(seconds, 2), peak_memory_mb(device)))
    progress.close()
    end_distributed()
    return final


def _optimise(run: Run, net, tc: TrainConfig, mine: slice, autocast: bool) -> torch.Tensor:
    """One optimiser step on a batch of random windows; -> the loss (not synced to the host)."""
    data, device = run.data, run.device
    idx = torch.randint(len(data), (tc.batch_size,), generator=run.generator, device=device)
    noise, k = run.model.draw_training_noise(tc.batch_size, run.generator, device)
    obs, actions = data.batch(idx[mine])
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        loss = net(obs, actions, noise[mine], k[mine])
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), tc.grad_clip)
    run.optimizer.step()
    return loss


def _start_progress(run: Run, tc: TrainConfig, progress, json_progress: bool) -> Progress:
    """The run's progress reporter (silent on every rank but 0), after its start event."""
    if run.rank != 0:  # rank 0 reports and writes checkpoints
        progress = SilentProgress(tc.num_steps)
    progress = progress or Progress(tc.num_steps, "train", json_progress, every=tc.log_every)
    n_params = sum(p.numel() for p in run.model.parameters())
    progress.emit(TrainStart(tc.num_steps, run.start_step, run.device.type,
                             device_name(run.device), run.data.num_episodes, len(run.data),
                             str(run.out_dir), n_params))  # fmt: skip
    return progress


def _adamw(model: torch.nn.Module, tc: TrainConfig, device: torch.device):
    """AdamW, with the fused kernel where torch has one for the device (CPU and CUDA)."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(
        model.parameters(), tc.lr, tc.betas, weight_decay=tc.weight_decay, fused=fused
    )


def _check_finite(run: Run, went_bad: torch.Tensor, step: int) -> None:
    """Stop on a non-finite loss (or weights: a step can break them after a finite loss), on
    every rank when any rank saw one. One host sync, only at logging and checkpoint steps."""
    bad = went_bad | ~torch.stack([torch.isfinite(p).all() for p in run.model.parameters()]).all()
    if run.world_size > 1:
        bad = bad.float()
        torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
    if bad.item():
        raise TrainingError(
            f"the loss became NaN or inf by step {step}; try a lower learning rate (--lr) or "
            f"check the data. The last good checkpoint is {run.last_path}"
        )


def init_distributed(requested: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device). Started by torchrun (``WORLD_SIZE`` set): join the process
    group, gloo on CPU, NCCL on CUDA, one GPU per local rank. Otherwise (0, 1, the device)."""
    import os

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = select_device(requested)
    if world_size == 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)
    return torch.distributed.get_rank(), world_size, device


def end_distributed() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _distributed(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model wrapped in DistributedDataParallel (its forward is the training loss)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def _start_from(path: Path, model: DiffusionPolicy) -> None:
    """Fine-tuning: ``model`` takes the weights (normalisers included) of the policy at ``path``,
    which must have the run's data and network shape."""
    if not path.is_file():
        raise TrainingError(f"{path}: no such checkpoint to start from (init_from)")
    policy, header = load_policy(path)
    _check_resumable(path, header["policy_config"], model.config, verb="start from")
    theirs, mine = policy.state_dict(), model.state_dict()
    for key, value in mine.items():  # a part of another shape: an image size, a vector's length
        if key not in theirs or theirs[key].shape != value.shape:
            got = tuple(theirs[key].shape) if key in theirs else "nothing"
            raise TrainingError(
                f"{path}: cannot start from, weight {key} is {got} there but "
                f"{tuple(value.shape)} for this run"
            )
    model.load_state_dict(theirs)


def _check_resumable(path: Path, saved: dict, pc: PolicyConfig, verb: str = "resume") -> None:
    """A checkpoint (at ``path``, its ``policy_config`` ``saved``) can be resumed (or started
    from) by a run whose data and network have its shape."""
    for key in ("obs_dim", "action_dim", "pred_horizon", "obs_horizon", "denoiser", "down_dims"):
        mine, theirs = getattr(pc, key), saved.get(key)
        theirs = tuple(theirs) if isinstance(theirs, list) else theirs
        if mine != theirs:
            raise TrainingError(
                f"{path}: cannot {verb}, policy_config.{key} is {theirs!r} in the checkpoint but "
                f"{mine!r} for this run"
            )
