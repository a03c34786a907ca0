"""The one training loop, which policies, planners and distillation students all run: setup (in
``dp_agent.training.train`` and ``dp_agent.training.distill``) makes a ``Run``, then ``fit`` is
one plain ``for`` loop (batch, loss, AdamW step with clipping, cosine schedule, EMA) with its
logging and atomic checkpoints at the bottom. DDP when started by torchrun; rank 0 writes."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from dp_agent.checkpoint import Header, save_training_state
from dp_agent.config import OptimConfig
from dp_agent.devices import select_device, use_bf16
from dp_agent.fast.kernels import use_training_kernels
from dp_agent.policy import DiffusionPolicy
from dp_agent.progress import Progress, TrainCheckpoint, TrainStep


class TrainingError(RuntimeError):
    """Training cannot go on (NaN loss, data that does not fit the checkpoint being resumed)."""


@dataclass
class Run:
    """Everything the loop works on. ``draw()`` gives a batch (inputs and targets, drawn from
    ``generator`` with no gradients) and ``loss(net, *batch)`` its loss, where ``net`` is
    ``model``, wrapped in DDP when several processes train together."""

    config: OptimConfig
    out_dir: Path
    model: DiffusionPolicy  # the network trained
    ema: DiffusionPolicy  # its exponential moving average: what inference loads
    optimizer: torch.optim.Optimizer
    generator: torch.Generator  # batches and noise (the same on every rank); checkpointed
    device: torch.device
    header: Header  # what the run's checkpoints say of it (step and seconds set at each save)
    draw: Callable[[], tuple]
    loss: Callable[..., torch.Tensor]
    num_steps: int  # the loop runs steps start_step + 1 ... num_steps
    final_path: Path  # the EMA weights alone, written at the end
    start_step: int = 0
    elapsed_before: float = 0.0  # seconds of training before a resume (or an earlier round)
    step_offset: int = 0  # steps of earlier rounds (distillation), added to reported steps
    total_steps: int = 0  # of all rounds, for progress (default: num_steps)
    rank: int = 0  # this process, and how many train together (torchrun)
    world_size: int = 1

    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.safetensors"

    def save(self, path: Path, step: int, seconds: float, resumable: bool = True) -> Path:
        """A checkpoint of the EMA weights at the loop's ``step``; ``resumable`` adds the raw
        weights, the optimiser and the generator, all that ``--resume`` needs."""
        training = dataclasses.replace(
            self.header.training, step=self.step_offset + step, seconds=seconds
        )
        if training.distill is not None:  # a distillation round: its own step too
            training.distill = dataclasses.replace(training.distill, round_step=step)
        header = dataclasses.replace(self.header, training=training)
        state = (self.model, self.optimizer, self.generator) if resumable else None
        return save_training_state(path, self.ema, header, state)


def fit(run: Run, progress: Progress) -> tuple[int, float]:
    """Train ``run`` from ``start_step`` to ``num_steps`` -> (the last step, the seconds of
    training, those before a resume included). Writes ``last.safetensors`` every
    ``checkpoint_every`` steps, and at the end ``final_path`` (EMA weights) and
    ``last.safetensors``; a NaN or inf loss stops the run (``TrainingError``)."""
    c, model, device = run.config, run.model, run.device
    use_training_kernels(model)  # the CPU kernels (dp_agent.fast.kernels): the same outputs
    net = _distributed(model, device) if run.world_size > 1 else model
    # the learning rate is a pure function of the step, so a resumed run picks it up where it was
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        run.optimizer, cosine_with_warmup(c.warmup_steps, run.num_steps), run.start_step - 1
    )
    autocast = use_bf16(c.precision, device)
    total = run.total_steps or run.num_steps
    went_bad = torch.zeros((), dtype=torch.bool, device=device)  # any non-finite loss so far
    t0, step = time.perf_counter(), run.start_step
    model.train()
    for step in range(run.start_step + 1, run.num_steps + 1):
        batch = run.draw()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = run.loss(net, *batch)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
        run.optimizer.step()
        scheduler.step()
        ema_update(run.ema, model, ema_decay(step, c.ema_power, c.ema_max_decay))
        went_bad |= ~torch.isfinite(loss.detach())

        reported = run.step_offset + step
        if step % c.log_every == 0 or step == run.num_steps:
            check_finite(run, went_bad, reported)
            speed = (step - run.start_step) * c.batch_size / (time.perf_counter() - t0)  # 1/s
            eta = (total - reported) * c.batch_size / speed
            lr = scheduler.get_last_lr()[0]
            progress.emit(TrainStep(reported, total, loss.item(), lr, speed, eta))
        if step % c.checkpoint_every == 0 and step < run.num_steps:
            check_finite(run, went_bad, reported)  # never replace a good checkpoint with NaN
            if run.rank == 0:
                run.save(run.last_path, step, run.elapsed_before + time.perf_counter() - t0)
            progress.emit(TrainCheckpoint(reported, str(run.last_path)))

    check_finite(run, went_bad, run.step_offset + step)
    seconds = run.elapsed_before + time.perf_counter() - t0
    if run.rank == 0:
        run.save(run.final_path, step, seconds, resumable=False)  # EMA weights only
        run.save(run.last_path, step, seconds)  # what --resume goes on from, written after
    return step, seconds


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


def adamw(model: torch.nn.Module, c: OptimConfig, device: torch.device):
    """AdamW, with the fused kernel where torch has one for the device (CPU and CUDA)."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(
        model.parameters(), c.lr, c.betas, weight_decay=c.weight_decay, fused=fused
    )


def check_finite(run: Run, went_bad: torch.Tensor, step: int) -> None:
    """Stop on a non-finite loss (or weights: a step can break them after a finite loss), on
    every rank when any rank saw one. One host sync, only at logging and checkpoint steps."""
    weights_ok = torch.stack([torch.isfinite(p).all() for p in run.model.parameters()]).all()
    bad = went_bad | ~weights_ok
    if run.world_size > 1:
        bad = bad.float()
        torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
    if bad.item():
        raise TrainingError(
            f"the loss became NaN or inf by step {step}; try a lower learning rate (--lr) or "
            f"check the data. The last good checkpoint is {run.last_path}"
        )


def refuse_existing_run(out_dir: Path, resume: bool, overwrite: bool) -> None:
    """A run folder that holds checkpoints is only written to with ``resume`` or
    ``overwrite`` (training and distillation alike)."""
    names = ("last.safetensors", "final.safetensors")
    existing = [name for name in names if (out_dir / name).exists()]
    if existing and not (resume or overwrite):
        raise TrainingError(
            f"{out_dir} already holds {' and '.join(existing)}; pass --resume to go on from it, "
            "--overwrite to replace it, or choose another --out"
        )


def init_distributed(requested: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device). Started by torchrun (``WORLD_SIZE`` set): join the process
    group, gloo on CPU, NCCL on CUDA, one GPU per local rank. Otherwise (0, 1, the device)."""
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
