"""Training a policy (or a planner's trajectory model) on demonstrations: the setup of the one
loop (``dp_agent.training.loop.fit``): data windows, model, EMA copy, optimiser, generator and
the checkpoint header, restored from ``last.safetensors`` on resume; batches of random windows
and the denoising loss."""

from __future__ import annotations

import copy
import dataclasses
from functools import partial
from pathlib import Path

import numpy as np
import torch

from dp_agent.checkpoint import (
    Header,
    PlannerInfo,
    TrainingInfo,
    load_policy,
    load_training_state,
    read_header,
)
from dp_agent.config import PolicyConfig, TrainConfig, replace_fields
from dp_agent.devices import device_name, peak_memory_mb
from dp_agent.policy import DiffusionPolicy
from dp_agent.progress import Progress, SilentProgress, TrainDone, TrainStart
from dp_agent.training.loop import (
    Run,
    TrainingError,
    adamw,
    end_distributed,
    fit,
    init_distributed,
    refuse_existing_run,
)
from dp_agent.training.windows import WindowDataset, load_episodes


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
    planner: PlannerInfo | None = None,
) -> Path:
    """Train on ``demos`` (a file, a DemoReader, or episodes with ``obs`` (T, Do) and
    ``actions`` (T, Da)) -> ``final.safetensors`` (EMA weights for inference; the resumable
    state is in ``last.safetensors``). ``planner``: the section every checkpoint of a planner's
    run carries (``dp_agent.planning.train.train_planner``)."""
    tc = train_config
    tc.validate()
    run = setup(
        demos,
        out_dir,
        policy_config,
        tc,
        resume=resume,
        overwrite=overwrite,
        obs_keys=obs_keys,
        planner=planner,
    )
    if run.rank != 0:  # rank 0 reports and writes checkpoints
        progress = SilentProgress(tc.num_steps)
    progress = progress or Progress(tc.num_steps, "train", json_progress, every=tc.log_every)
    training, n_params = run.header.training, sum(p.numel() for p in run.model.parameters())
    progress.emit(
        TrainStart(
            total_steps=tc.num_steps,
            start_step=run.start_step,
            device=run.device.type,
            device_name=device_name(run.device),
            num_episodes=training.num_episodes,
            num_samples=training.num_samples,
            out=str(run.out_dir),
            parameters=n_params,
        )
    )
    step, seconds = fit(run, progress)
    done = TrainDone(step, str(run.final_path), round(seconds, 2), peak_memory_mb(run.device))
    progress.emit(done)
    progress.close()
    end_distributed()
    return run.final_path


def setup(
    demos, out_dir, policy_config, tc: TrainConfig, *, resume, overwrite, obs_keys, planner=None
) -> Run:
    """Data, model, EMA copy, optimiser, generator and checkpoint header of a run, restored
    from ``out_dir/last.safetensors`` with ``resume``."""
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
    data, header = _data(demos, obs_keys, policy_config, tc, device)
    header.planner = planner
    model = DiffusionPolicy(header.policy_config)
    model.fit_normalizers(data.obs, data.actions)
    last = out_dir / "last.safetensors"
    resuming = resume and last.exists()
    if tc.init_from and not resuming:
        _start_from(Path(tc.init_from), model)
    model.to(device)
    generator = torch.Generator(device).manual_seed(tc.seed)
    b = tc.batch_size // world_size  # this rank's part of the global batch
    mine = slice(rank * b, (rank + 1) * b)
    run = Run(
        config=tc,
        out_dir=out_dir,
        model=model,
        ema=copy.deepcopy(model).requires_grad_(False).eval(),
        optimizer=adamw(model, tc, device),
        generator=generator,
        device=device,
        header=header,
        draw=partial(draw_windows, data, model, generator, tc.batch_size, mine),
        loss=denoising_loss,
        num_steps=tc.num_steps,
        final_path=out_dir / "final.safetensors",
        rank=rank,
        world_size=world_size,
    )
    if resuming:
        _check_resumable(last, read_header(last).policy_config, model.config)
        state = load_training_state(last, model, run.ema, run.optimizer, generator)
        run.start_step, run.elapsed_before = int(state.step), float(state.seconds or 0)
    return run


def draw_windows(data: WindowDataset, model: DiffusionPolicy, generator, batch_size, mine):
    """A batch of random windows with their noise and diffusion steps: every rank draws the
    whole global batch from the shared generator and keeps its slice ``mine``, so N processes
    train exactly as one would."""
    device = data.device
    idx = torch.randint(len(data), (batch_size,), generator=generator, device=device)
    noise, k = model.draw_training_noise(batch_size, generator, device)
    obs, actions = data.batch(idx[mine])
    return obs, actions, noise[mine], k[mine]


def denoising_loss(net, obs, actions, noise, k) -> torch.Tensor:
    """The policy's training loss (its forward: ε, x0 or v, by its config)."""
    return net(obs, actions, noise, k)


def _data(demos, obs_keys, pc: PolicyConfig, tc: TrainConfig, device):
    """(the training windows, the run's header: the config with the data's dims, the spaces,
    where the data came from)."""
    if isinstance(demos, (str, Path)):
        from dp_agent.data import DemoReader

        with DemoReader(demos) as reader:  # closed once read, on errors too
            return _data(reader, obs_keys, pc, tc, device)
    source = str(getattr(demos, "path", "in-memory episodes"))
    episodes = load_episodes(demos, obs_keys)
    if not episodes:
        raise TrainingError(f"{source}: no episodes to train on")
    data = WindowDataset(episodes, pc.obs_horizon, pc.pred_horizon, pc.action_horizon, device)
    from_data = {"obs_dim": data.obs_dim, "action_dim": data.action_dim}
    if not data.spec.single or data.spec.image_parts:  # a single vector needs no spec
        from_data["obs_spec"] = data.spec.to_dict()
    env_id = getattr(demos, "env_id", None)
    env_kwargs = dict(getattr(demos, "env_args", {}).get("env_kwargs") or {})
    training = TrainingInfo(
        total_steps=tc.num_steps,
        demos=source,
        num_episodes=data.num_episodes,
        num_samples=len(data),
        device=device_name(device),
        train_config=dataclasses.asdict(tc),
    )
    spaces = _spaces_for(env_id, env_kwargs, data)
    return data, Header(replace_fields(pc, from_data), *spaces, env_id, env_kwargs, training)


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


def _start_from(path: Path, model: DiffusionPolicy) -> None:
    """Fine-tuning: ``model`` takes the weights (normalisers included) of the policy at ``path``,
    which must have the run's data and network shape."""
    if not path.is_file():
        raise TrainingError(f"{path}: no such checkpoint to start from (init_from)")
    policy, header = load_policy(path)
    _check_resumable(path, header.policy_config, model.config, verb="start from")
    theirs, mine = policy.state_dict(), model.state_dict()
    for key, value in mine.items():  # a part of another shape: an image size, a vector's length
        if key not in theirs or theirs[key].shape != value.shape:
            got = tuple(theirs[key].shape) if key in theirs else "nothing"
            raise TrainingError(
                f"{path}: cannot start from, weight {key} is {got} there but "
                f"{tuple(value.shape)} for this run"
            )
    model.load_state_dict(theirs)


def _check_resumable(path: Path, saved: PolicyConfig, pc: PolicyConfig, verb="resume") -> None:
    """A checkpoint (at ``path``, its config ``saved``) can be resumed (or started from) by a
    run whose data and network have its shape."""
    for key in ("obs_dim", "action_dim", "pred_horizon", "obs_horizon", "denoiser", "down_dims"):
        mine, theirs = getattr(pc, key), getattr(saved, key)
        if mine != theirs:
            raise TrainingError(
                f"{path}: cannot {verb}, policy_config.{key} is {theirs!r} in the checkpoint but "
                f"{mine!r} for this run"
            )
