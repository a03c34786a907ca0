"""``dp-agent eval``, ``dp-agent info`` and ``dp-agent export``: what a checkpoint is and how
it does, for every kind the project writes (policies, distilled students, planners)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dp_agent.cli.flags import number
from dp_agent.config import MAX_DIFFUSION_STEPS, MAX_SEED
from dp_agent.diffusion import SAMPLERS

MAX_EPISODES = 1_000_000
MAX_ENVS = 1024


def add_subcommands(sub) -> None:
    _add_eval(sub)
    _add_info(sub)
    _add_export(sub)


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on its task over seeded episodes")
    p.add_argument("checkpoint", help="a .safetensors checkpoint (a policy or a planner)")
    p.add_argument("--env", help="registered Gymnasium id (default: the checkpoint's)")
    p.add_argument(
        "--env-module",
        help="import this module first (one that registers the env); a checkpoint never "
        "imports one itself",
    )
    p.add_argument("--episodes", type=number(int, 1, MAX_EPISODES), default=50)
    p.add_argument("--seed", type=number(int, 0, MAX_SEED), default=100000, help="first seed")
    p.add_argument("--n-envs", type=number(int, 1, MAX_ENVS), default=10)
    p.add_argument(
        "--max-episode-steps",
        type=number(int, 1, 10**9),
        help="end episodes after this many steps",
    )
    p.add_argument("--sampler", choices=list(SAMPLERS))
    p.add_argument("--steps", type=number(int, 1, MAX_DIFFUSION_STEPS), help="denoising steps")
    p.add_argument("--device", default=None)
    p.add_argument("--deterministic", action="store_true", help="reproducible noise streams")
    p.add_argument(
        "--noise-seed",
        type=number(int, 0, MAX_SEED),
        default=0,
        help="the agent's seed, which its noise streams derive from: other draws of the "
        "policy on the same episode seeds",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", action="store_true", help="step the envs in worker processes")
    where.add_argument("--in-process", action="store_true", help="step the envs here")
    p.add_argument("--json-progress", action="store_true")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from dp_agent.evaluate import evaluate, import_env_module
    from dp_agent.progress import Progress

    if args.env_module:
        import_env_module(args.env_module)
    agent = _agent(args)
    env_id = args.env or agent.env_id
    if env_id is None:
        raise ValueError(f"{args.checkpoint}: no env_id in the checkpoint; pass --env")
    env_kwargs = dict(agent.env_kwargs) if env_id == agent.env_id else {}
    _check_env(args.checkpoint, agent, env_id, env_kwargs)
    if args.max_episode_steps:
        env_kwargs["max_episode_steps"] = args.max_episode_steps
    progress = Progress(args.episodes, "eval", args.json_progress)
    workers = _eval_workers(args)
    result = evaluate(
        agent,
        env_id,
        args.episodes,
        args.seed,
        args.n_envs,
        args.deterministic,
        env_kwargs,
        progress,
        workers=workers,
        env_module=args.env_module,
    )
    progress.close()
    sampler, steps = _sampler_of(agent)
    summary = {"env_id": env_id, "sampler": sampler, "steps": steps}
    summary |= {"noise_seed": args.noise_seed}
    summary |= result.summary()
    if args.json_progress:
        progress.event("done", **summary)
        return 0
    for k, v in summary.items():
        if k.endswith("_ci"):
            continue
        ci = summary.get(f"{k}_ci")
        text = f"{v:.3f}" if isinstance(v, float) else f"{v}"
        print(f"{k:>18}: {text}" + (f"  (95% interval {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""))
    return 0


def _agent(args):
    """The checkpoint's agent: a ``DiffuserAgent`` for a planner, else a
    ``DiffusionPolicyAgent``; with the sampler and step count asked for."""
    from dp_agent.checkpoint import read_header

    if read_header(args.checkpoint).planner is not None:
        from dp_agent.planning.agent import DiffuserAgent

        device = args.device or "auto"
        agent = DiffuserAgent.load(args.checkpoint, device=device, seed=args.noise_seed)
        if args.sampler or args.steps:
            config = agent.planner.policy.config
            agent.sampler = args.sampler or config.sampler
            agent.num_inference_steps = args.steps or config.default_steps(agent.sampler)
            agent.planner.policy.make_sampler(agent.sampler, agent.num_inference_steps)
        return agent
    from dp_agent.agent import DiffusionPolicyAgent

    agent = DiffusionPolicyAgent.load(args.checkpoint, device=args.device, seed=args.noise_seed)
    if args.sampler or args.steps:
        agent.set_sampler(args.sampler or agent.sampler, args.steps)
    return agent


def _sampler_of(agent) -> tuple[str, int]:
    """(sampler, denoising steps) the agent samples with."""
    if hasattr(agent, "planner"):
        config = agent.planner.policy.config
        sampler = agent.sampler or config.sampler
        return sampler, agent.num_inference_steps or config.default_steps(sampler)
    return agent.sampler, agent.num_inference_steps


def _check_env(path, agent, env_id: str, env_kwargs: dict) -> None:
    """Refuse an env whose spaces are not the checkpoint's (``CheckpointError``)."""
    import gymnasium as gym

    from dp_agent.checkpoint import CheckpointError, check_spaces
    from dp_agent.evaluate import make_env

    env = make_env(env_id, env_kwargs)
    try:
        if not hasattr(agent, "planner"):
            check_spaces(path, agent.obs_spec, agent.action_space, env, agent.env_id)
            return
        space, parts = env.observation_space, (agent.state_key, agent.goal_key)
        keys = [k for k in parts if k]
        if keys and not (isinstance(space, gym.spaces.Dict) and set(keys) <= set(space.spaces)):
            raise CheckpointError(
                f"{path}: the planner reads observation parts {keys}, but the env's "
                f"observation_space is {space}"
            )
        if agent.action_space is not None and env.action_space.shape != agent.action_space.shape:
            raise CheckpointError(
                f"{path}: field 'planner.env_spaces' has actions of shape "
                f"{agent.action_space.shape}, but the env's action_space is {env.action_space}"
            )
    finally:
        env.close()


def _eval_workers(args) -> bool:
    """Worker processes pay where there are cores to spare: on 2 cores stepping PushT in them
    was 0.66x the speed of the main process (``benchmarks/evaluation.py``), so by default they
    are used from 4 cores on."""
    import os

    if args.workers or args.in_process:
        return args.workers
    return args.n_envs > 1 and (os.cpu_count() or 1) >= 4


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="summarise a checkpoint: config, spaces, training, data")
    p.add_argument("checkpoint")
    p.add_argument("--json", action="store_true", help="print the whole header as JSON")
    p.set_defaults(func=cmd_info)


def cmd_info(args) -> int:
    from dp_agent.checkpoint import read_header, stored_dtypes

    header = read_header(args.checkpoint)
    if args.json:
        print(json.dumps({k: v for k, v in header.to_dict().items() if k != "optimizer"}, indent=2))
        return 0
    pc, tr = header.policy_config, header.training
    n_params = _parameters(args.checkpoint)
    size = Path(args.checkpoint).stat().st_size / 1e6
    act = header.action_space
    lines = [
        f"checkpoint   {args.checkpoint} ({size:.1f} MB)",
        f"env          {header.env_id} {header.env_kwargs or ''}",
        f"observation  {pc.observation_spec().describe()}",
        f"action       {act.shape[0]} values, low {act.low.tolist()} high {act.high.tolist()}",
        f"policy       {pc.objective} / {pc.denoiser}"
        + (f" down_dims={list(pc.down_dims)}" if pc.denoiser == "unet" else ""),
        f"horizons     To={pc.obs_horizon} Tp={pc.pred_horizon} Ta={pc.action_horizon}",
        f"diffusion    {pc.num_train_steps} steps, {pc.beta_schedule}, "
        f"{pc.prediction_type}; sampler {pc.sampler} x{pc.num_inference_steps}",
        f"parameters   {n_params:,}",
        "stored as    "
        + ", ".join(f"{k} {v:.1%}" for k, v in stored_dtypes(args.checkpoint).items()),
        f"training     step {tr.step} of {tr.total_steps}, {tr.seconds or 0:.0f} s on {tr.device}",
        f"data         {tr.demos}: {tr.num_episodes} episodes, {tr.num_samples} windows",
    ]
    print("\n".join(lines + _sections(header)))
    return 0


def _sections(header) -> list[str]:
    """The lines of the optional sections: distillation, planner, value network."""
    lines = []
    if header.training.distill is not None:
        d = header.training.distill
        c = d.config
        lines.append(
            f"distilled    from {d.teacher} ({c.get('method', 'progressive')}, "
            f"{c.get('teacher_steps')} -> {c.get('student_steps')} steps), "
            f"round of {d.round_steps} steps at update {d.round_step}"
        )
    if header.planner is not None:
        p = header.planner
        lines.append(
            f"planner      H={header.policy_config.pred_horizon}, state {p.state_key} "
            f"columns {p.state_dims}, actions {p.action_dims}, goal {p.goal_key} "
            f"({p.goal_dim} values)"
        )
    if header.value is not None:
        v = header.value
        lines.append(f"value net    {v.dim} inputs, width {v.width}")
    return lines


def _parameters(path) -> int:
    """The number of the policy's values (``model.`` tensors), from the file's index."""
    import math

    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        shapes = [f.get_slice(k).get_shape() for k in f.keys() if k.startswith("model.")]
    return sum(math.prod(shape) for shape in shapes)


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export", help="write a checkpoint's inference weights only (no optimiser state)"
    )
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--half", action="store_true", help="store weights as float16")
    p.add_argument(
        "--int8",
        action="store_true",
        help="store weight matrices as int8 with one scale per row (a quarter of float32)",
    )
    p.add_argument("--sampler", choices=list(SAMPLERS), help="default sampler")
    p.add_argument(
        "--steps",
        type=number(int, 1, MAX_DIFFUSION_STEPS),
        help="its default number of denoising steps",
    )
    p.set_defaults(func=cmd_export)


def check_out_file(out) -> None:
    """Refuse, before any work, an output file that is a folder or lies in no folder."""
    out = Path(out)
    if out.is_dir():
        raise ValueError(
            f"{out} is a folder; give the file to write, e.g. {out / 'policy.safetensors'}"
        )
    if not out.parent.is_dir():
        raise ValueError(f"{out}: no folder {out.parent} to write it in")


def cmd_export(args) -> int:
    from dp_agent.checkpoint import read_header

    check_out_file(args.out)
    if read_header(args.checkpoint).planner is not None:
        from dp_agent.planning.planner import Planner

        owner = Planner.load(args.checkpoint, "cpu")
        policy = owner.policy
    else:
        from dp_agent.agent import DiffusionPolicyAgent

        owner = DiffusionPolicyAgent.load(args.checkpoint, device="cpu")
        policy = owner.policy
    if args.sampler or args.steps:  # the policy's own default, used wherever it is loaded
        sampler = args.sampler or policy.config.sampler
        steps = policy.make_sampler(sampler, args.steps).num_steps  # validates both
        policy.config.sampler, policy.config.num_inference_steps = sampler, steps
    path = owner.save(args.out, half=args.half, int8=args.int8)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return 0
