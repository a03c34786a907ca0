"""The ``dp-agent`` command: train, eval, info, demos, gui."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import dp_agent
from dp_agent.cli.demos import add_subcommands as add_demos_subcommands
from dp_agent.diffusion import SAMPLERS


def _add_train(sub) -> None:
    from dp_agent.config import PRESETS

    p = sub.add_parser("train", help="train a diffusion policy on a demonstration file")
    p.add_argument("--demos", required=True, help="HDF5 demonstration file (robomimic layout)")
    p.add_argument("--preset", default="cpu-small", choices=sorted(PRESETS))
    p.add_argument("--out", default="runs/latest", help="output folder for checkpoints")
    p.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--objective", choices=["diffusion", "mse"], help="mse = regression baseline")
    p.add_argument("--denoiser", choices=["unet", "transformer"])
    p.add_argument("--obs-horizon", type=int)
    p.add_argument("--pred-horizon", type=int)
    p.add_argument("--action-horizon", type=int)
    p.add_argument("--obs-keys", nargs="+", help="observation keys to use (default: all)")
    p.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda, mps")
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = one per core)")
    p.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        help="bf16 autocast (auto: where the device has native bf16); weights stay fp32",
    )
    p.add_argument(
        "--init-from",
        metavar="CKPT",
        help="fine-tune: start from this policy's weights with a fresh optimiser and schedule "
        "(same data and network shape; ignored by --resume once OUT holds last.safetensors)",
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
    p.add_argument("--overwrite", action="store_true", help="replace checkpoints already in OUT")
    p.add_argument("--json-progress", action="store_true", help="JSON lines on stdout")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from dp_agent.config import make_configs
    from dp_agent.training.train import train

    def given(**fields):  # the options set on the command line override the preset
        return {k: v for k, v in fields.items() if v is not None}

    policy_over = given(
        objective=args.objective,
        denoiser=args.denoiser,
        obs_horizon=args.obs_horizon,
        pred_horizon=args.pred_horizon,
        action_horizon=args.action_horizon,
    )
    train_over = given(
        num_steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        checkpoint_every=args.checkpoint_every,
        device=args.device,
        seed=args.seed,
        num_threads=args.threads,
        precision=args.precision,
        init_from=args.init_from,
    )
    pc, tc = make_configs(args.preset, policy_over, train_over)
    final = train(
        args.demos,
        args.out,
        pc,
        tc,
        resume=args.resume,
        overwrite=args.overwrite,
        obs_keys=args.obs_keys,
        json_progress=args.json_progress,
    )
    if not args.json_progress:
        print(f"wrote {final}", file=sys.stderr)
    return 0


def _timesteps(text: str) -> tuple[int, ...]:
    """'99,49,24' -> (99, 49, 24), for --grid."""
    try:
        return tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected timesteps separated by commas, e.g. 99,49,24; got {text!r}"
        ) from None


def _add_distill(sub) -> None:
    p = sub.add_parser(
        "distill",
        help="distil a trained policy into a few-step sampler (progressive or trajectory)",
    )
    p.add_argument("teacher", help="the trained policy (.safetensors)")
    p.add_argument("--out", required=True, help="output folder for the student's checkpoints")
    p.add_argument("--demos", help="HDF5 demonstrations (default: the teacher's training file)")
    p.add_argument("--teacher-steps", type=int, default=16, help="DDIM steps of the teacher")
    p.add_argument(
        "--steps",
        type=int,
        default=2,
        help="denoising steps of the student (not a halving of the teacher's: the last round "
        "merges only the noisiest pairs, 16 -> 8 -> 4 -> 3; as many as the teacher's for a "
        "trajectory student with --init-from, e.g. into a narrower network)",
    )
    p.add_argument(
        "--method",
        choices=["progressive", "trajectory"],
        default="progressive",
        help="progressive: halve the steps round by round; trajectory: one round in which the "
        "student learns the teacher's whole DDIM path from noise between its own steps",
    )
    p.add_argument(
        "--grid",
        type=_timesteps,
        help="the trajectory student's steps, points of the teacher's grid, e.g. 99,49,24 "
        "(default: the trailing grid)",
    )
    p.add_argument(
        "--init-from",
        help="the student's first weights (default: the teacher's); its network may be another, "
        "e.g. a narrower U-Net trained on the same demos (--preset cpu-tiny), for faster calls",
    )
    p.add_argument("--steps-per-round", type=int, default=2000, help="updates per round")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda, mps")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = one per core)")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="fp32")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
    p.add_argument("--overwrite", action="store_true", help="replace checkpoints already in OUT")
    p.add_argument("--json-progress", action="store_true", help="JSON lines on stdout")
    p.set_defaults(func=cmd_distill)


def cmd_distill(args) -> int:
    from dp_agent.training.distill import DistillConfig, distill

    config = DistillConfig(
        teacher_steps=args.teacher_steps,
        student_steps=args.steps,
        steps_per_round=args.steps_per_round,
        batch_size=args.batch_size,
        lr=args.lr,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        device=args.device,
        num_threads=args.threads,
        precision=args.precision,
        method=args.method,
        grid=args.grid,
        init_from=args.init_from,
    )
    final = distill(
        args.teacher,
        args.out,
        config,
        demos=args.demos,
        resume=args.resume,
        overwrite=args.overwrite,
        json_progress=args.json_progress,
    )
    if not args.json_progress:
        print(f"wrote {final}", file=sys.stderr)
    return 0


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on its task over seeded episodes")
    p.add_argument("checkpoint", help="a .safetensors checkpoint")
    p.add_argument("--env", help="Gymnasium id (default: the checkpoint's)")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=100000, help="first episode seed")
    p.add_argument("--n-envs", type=int, default=10)
    p.add_argument("--sampler", choices=list(SAMPLERS))
    p.add_argument("--steps", type=int, help="denoising steps")
    p.add_argument("--device", default=None)
    p.add_argument("--deterministic", action="store_true", help="reproducible noise streams")
    p.add_argument(
        "--noise-seed",
        type=int,
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
    import gymnasium as gym

    from dp_agent.agent import DiffusionPolicyAgent
    from dp_agent.checkpoint import check_spaces
    from dp_agent.evaluate import evaluate
    from dp_agent.progress import Progress

    agent = DiffusionPolicyAgent.load(args.checkpoint, device=args.device, seed=args.noise_seed)
    env_id = args.env or agent.env_id
    if env_id is None:
        raise ValueError(f"{args.checkpoint}: no env_id in the checkpoint; pass --env")
    env_kwargs = agent.env_kwargs if env_id == agent.env_id else {}
    env = gym.make(env_id, **env_kwargs)
    check_spaces(args.checkpoint, agent.obs_spec, agent.action_space, env, agent.env_id)
    env.close()
    if args.sampler or args.steps:
        agent.set_sampler(args.sampler or agent.sampler, args.steps)
    progress = Progress(args.episodes, "eval", args.json_progress)
    result = evaluate(
        agent, env_id, args.episodes, args.seed, args.n_envs, args.deterministic, env_kwargs,
        progress, workers=_eval_workers(args),
    )  # fmt: skip
    progress.close()
    summary = {"env_id": env_id, "sampler": agent.sampler, "steps": agent.num_inference_steps}
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
    from dp_agent.checkpoint import read_checkpoint, stored_dtypes

    tensors, header = read_checkpoint(args.checkpoint)
    if args.json:
        print(json.dumps({k: v for k, v in header.items() if k != "optimizer"}, indent=2))
        return 0
    pc, tr = header["policy_config"], header.get("training", {})
    n_params = sum(v.numel() for k, v in tensors.items() if k.startswith("model."))
    size = Path(args.checkpoint).stat().st_size / 1e6
    lines = [
        f"checkpoint   {args.checkpoint} ({size:.1f} MB)",
        f"env          {header.get('env_id')} {header.get('env_kwargs') or ''}",
        f"observation  {_observation_summary(header)}",
        f"action       {len(header['action_space']['low'])} values, "
        f"low {header['action_space']['low']} high {header['action_space']['high']}",
        f"policy       {pc['objective']} / {pc['denoiser']}"
        + (f" down_dims={pc['down_dims']}" if pc["denoiser"] == "unet" else ""),
        f"horizons     To={pc['obs_horizon']} Tp={pc['pred_horizon']} Ta={pc['action_horizon']}",
        f"diffusion    {pc['num_train_steps']} steps, {pc['beta_schedule']}, "
        f"{pc['prediction_type']}; sampler {pc['sampler']} x{pc['num_inference_steps']}",
        f"parameters   {n_params:,}",
        "stored as    "
        + ", ".join(f"{k} {v:.1%}" for k, v in stored_dtypes(args.checkpoint).items()),
        f"training     step {tr.get('step')} of {tr.get('total_steps')}, "
        f"{tr.get('seconds', 0):.0f} s on {tr.get('device')}",
        f"data         {tr.get('demos')}: {tr.get('num_episodes')} episodes, "
        f"{tr.get('num_samples')} windows",
    ]
    print("\n".join(lines))
    return 0


def _observation_summary(header: dict) -> str:
    """The observation's parts as the policy sees them (one vector for older checkpoints)."""
    from dp_agent.config import PolicyConfig, replace_fields

    spec = replace_fields(PolicyConfig(), header["policy_config"]).observation_spec()
    return spec.describe()


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
    p.add_argument("--steps", type=int, help="its default number of denoising steps")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from dp_agent.agent import DiffusionPolicyAgent

    agent = DiffusionPolicyAgent.load(args.checkpoint, device="cpu")
    if args.sampler or args.steps:  # the policy's own default, used wherever it is loaded
        agent.set_sampler(args.sampler or agent.sampler, args.steps)
        agent.config.sampler, agent.config.num_inference_steps = (
            agent.sampler,
            agent.num_inference_steps,
        )
    path = agent.save(args.out, half=args.half, int8=args.int8)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return 0


def _add_gui(sub) -> None:
    # listed for --help; main() hands "gui ..." to the app's own parser before parsing
    sub.add_parser("gui", help="open the desktop app (dp-agent gui --help for its options)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dp-agent", description="Diffusion Policy: record, train, evaluate, inspect."
    )
    parser.add_argument("--version", action="version", version=dp_agent.__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_distill(sub)
    _add_eval(sub)
    _add_info(sub)
    _add_export(sub)
    add_demos_subcommands(sub)
    _add_gui(sub)
    from dp_agent.cli.quickstart import add_subcommand as add_quickstart

    add_quickstart(sub)
    from dp_agent.planning.planner import add_subcommand as add_planning

    add_planning(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["gui"]:  # the app parses its own options (argparse would eat the dashes)
        from dp_agent.gui import main as gui_main

        return int(gui_main(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    json_mode = getattr(args, "json_progress", False)
    from gymnasium.error import Error as GymError

    # CheckpointError, DemoError and bad configs are ValueErrors; TrainingError a RuntimeError
    known = (ValueError, FileNotFoundError, RuntimeError, GymError)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, in the handler below, not at exit
        return code
    except known as e:  # bad input or a stopped run: one readable line, no traceback
        if json_mode:
            print(json.dumps({"event": "error", "message": str(e)}), flush=True)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left early (`dp-agent demos info F | head`): stop quietly
        # point stdout at /dev/null so that the interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for a process ended by SIGPIPE (128 + 13)


if __name__ == "__main__":
    sys.exit(main())
