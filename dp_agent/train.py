"""Training: one plain loop over random mini-batches of windows, with AdamW, a cosine schedule
with warm-up, gradient clipping, EMA weights, atomic checkpoints and resume."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch

from dp_agent.checkpoint import CheckpointError, optimizer_from_flat, optimizer_to_flat, prefixed
from dp_agent.config import PolicyConfig, TrainConfig, replace_fields
from dp_agent.data import WindowDataset, load_episodes
from dp_agent.devices import bf16_autocast_ok, device_name, select_device
from dp_agent.policy import DiffusionPolicy
from dp_agent.progress import Progress


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
    """The env's spaces when it is registered here, else boxes spanning the data."""
    import gymnasium as gym

    if env_id is not None and env_id in gym.registry:
        try:
            env = gym.make(env_id, **env_kwargs)
        except Exception:  # an env that cannot be built here: fall back to the data's ranges
            env = None
        if env is not None:
            obs_space, act_space = env.observation_space, env.action_space
            env.close()
            flat = int(np.prod(obs_space.shape or (0,)))
            if isinstance(obs_space, gym.spaces.Box) and flat == dataset.obs_dim:
                return obs_space, act_space
    inf = np.full(dataset.obs_dim, np.inf, dtype=np.float32)
    obs_space = gym.spaces.Box(-inf, inf, dtype=np.float32)
    act_space = gym.spaces.Box(dataset.actions.min(0), dataset.actions.max(0), dtype=np.float32)
    return obs_space, act_space


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
    """Train a policy; returns the path of ``final.safetensors``.

    ``demos`` is a demonstration file, a DemoReader, or a list of episodes (objects with ``obs``
    (T, Do) and ``actions`` (T, Da)).
    """
    from dp_agent.agent import save_policy

    tc = train_config
    tc.validate()
    out_dir = Path(out_dir)
    existing = [p.name for p in (out_dir / "last.safetensors", out_dir / "final.safetensors")
                if p.exists()]  # fmt: skip
    if existing and not (resume or overwrite):
        raise TrainingError(
            f"{out_dir} already holds {' and '.join(existing)}; pass --resume to go on from it, "
            "--overwrite to replace it, or choose another --out"
        )
    torch.manual_seed(tc.seed)
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    device = select_device(tc.device)

    if isinstance(demos, (str, Path)):
        from dp_agent.demos import DemoReader

        demos = DemoReader(demos)
    env_id = getattr(demos, "env_id", None)
    env_kwargs = dict(getattr(demos, "env_args", {}).get("env_kwargs") or {})
    source = str(getattr(demos, "path", "in-memory episodes"))
    episodes = load_episodes(demos, obs_keys)
    if not episodes:
        raise TrainingError(f"{source}: no episodes to train on")
    pc = replace_fields(
        policy_config,
        {"obs_dim": episodes[0].obs.shape[1], "action_dim": episodes[0].actions.shape[1]},
    )
    data = WindowDataset(episodes, pc.obs_horizon, pc.pred_horizon, pc.action_horizon, device)
    obs_space, act_space = _spaces_for(env_id, env_kwargs, data)

    model = DiffusionPolicy(pc)
    model.fit_normalizers(data.obs, data.actions)
    model.to(device)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay
    )
    start_step, elapsed_before = 0, 0.0
    last_path = out_dir / "last.safetensors"
    if resume and last_path.exists():
        start_step, elapsed_before = _restore(last_path, model, ema, optimizer, pc)
    # the learning rate is a pure function of the step, so a resumed run picks it up where it was
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_with_warmup(tc.warmup_steps, tc.num_steps), last_epoch=start_step - 1
    )

    progress = progress or Progress(tc.num_steps, "train", json_progress, every=tc.log_every)
    progress.event(
        "start",
        total_steps=tc.num_steps,
        start_step=start_step,
        device=device.type,
        device_name=device_name(device),
        num_episodes=data.num_episodes,
        num_samples=len(data),
        out=str(out_dir),
        parameters=sum(p.numel() for p in model.parameters()),
    )
    generator = torch.Generator(device).manual_seed(tc.seed + start_step)
    autocast = bf16_autocast_ok(device)

    def save(path: Path, step: int, seconds: float) -> Path:
        training = {
            "step": step,
            "total_steps": tc.num_steps,
            "seconds": seconds,
            "demos": source,
            "num_episodes": data.num_episodes,
            "num_samples": len(data),
            "device": device_name(device),
            "train_config": dataclasses.asdict(tc),
        }
        opt_tensors, opt_meta = optimizer_to_flat(optimizer)
        extra = {f"train.{k}": v for k, v in model.state_dict().items()}
        extra |= {f"optim.{k}": v for k, v in opt_tensors.items()}
        return save_policy(
            path,
            ema,
            obs_space,
            act_space,
            env_id,
            training,
            extra_tensors=extra,
            env_kwargs=env_kwargs,
            extra_header={"optimizer": opt_meta},
        )

    t0 = time.perf_counter()
    step = start_step
    went_bad = torch.zeros((), dtype=torch.bool, device=device)  # any non-finite loss so far

    def check_finite(step: int) -> None:
        if went_bad.item():  # one host sync, only at logging and checkpoint steps
            raise TrainingError(
                f"the loss became NaN or inf by step {step}; try a lower learning rate (--lr) or "
                f"check the data. The last good checkpoint is {last_path}"
            )

    model.train()
    for step in range(start_step + 1, tc.num_steps + 1):
        idx = torch.randint(len(data), (tc.batch_size,), generator=generator, device=device)
        obs, actions = data.batch(idx)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = model.compute_loss(obs, actions, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        scheduler.step()
        ema_update(ema, model, ema_decay(step, tc.ema_power, tc.ema_max_decay))
        went_bad |= ~torch.isfinite(loss.detach())

        if step % tc.log_every == 0 or step == tc.num_steps:
            check_finite(step)
            value = loss.item()
            seconds = time.perf_counter() - t0
            done = step - start_step
            progress.update(
                step,
                loss=value,
                lr=scheduler.get_last_lr()[0],
                samples_per_s=done * tc.batch_size / seconds,
                eta_s=(tc.num_steps - step) * seconds / done,
            )
        if step % tc.checkpoint_every == 0 and step < tc.num_steps:
            check_finite(step)  # never replace a good checkpoint with NaN weights
            save(last_path, step, elapsed_before + time.perf_counter() - t0)
            progress.event("checkpoint", step=step, path=str(last_path))

    check_finite(step)
    seconds = elapsed_before + time.perf_counter() - t0
    save(last_path, step, seconds)
    final = save(out_dir / "final.safetensors", step, seconds)
    progress.event("done", step=step, path=str(final), seconds=round(seconds, 2))
    progress.close()
    return final


def _restore(path: Path, model, ema, optimizer, pc: PolicyConfig) -> tuple[int, float]:
    from dp_agent.checkpoint import read_checkpoint

    tensors, header = read_checkpoint(path)
    saved = header["policy_config"]
    for key in ("obs_dim", "action_dim", "pred_horizon", "obs_horizon", "denoiser", "down_dims"):
        mine, theirs = getattr(pc, key), saved.get(key)
        theirs = tuple(theirs) if isinstance(theirs, list) else theirs
        if mine != theirs:
            raise TrainingError(
                f"{path}: cannot resume, policy_config.{key} is {theirs!r} in the checkpoint but "
                f"{mine!r} for this run"
            )
    try:
        model.load_state_dict(prefixed(tensors, "train"))
        ema.load_state_dict(prefixed(tensors, "model"))
        optimizer_from_flat(optimizer, prefixed(tensors, "optim"), header["optimizer"])
        return int(header["training"]["step"]), float(header["training"].get("seconds", 0.0))
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path}: cannot resume from this checkpoint (missing or bad field: {e})"
        ) from None
