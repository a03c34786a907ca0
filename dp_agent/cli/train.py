"""``dp-agent train`` and ``dp-agent distill``: runs of the one training loop, their flags
generated from the config dataclasses."""

from __future__ import annotations

import sys
from pathlib import Path

from dp_agent.cli.flags import add_flags, given
from dp_agent.config import PRESETS, DistillConfig, PolicyConfig, TrainConfig

# set from the data, or by distillation and planners: no flags
DATA_FIELDS = ("obs_dim", "action_dim", "obs_spec", "timesteps", "conditioned_entries")


def add_subcommands(sub) -> None:
    p = sub.add_parser("train", help="train a diffusion policy on a demonstration file")
    p.add_argument("--demos", required=True, help="HDF5 demonstration file (robomimic layout)")
    p.add_argument("--preset", default="cpu-small", choices=sorted(PRESETS))
    p.add_argument("--out", default="runs/latest", help="output folder for checkpoints")
    p.add_argument("--obs-keys", nargs="+", help="observation keys to use (default: all)")
    add_run_flags(p)
    add_flags(p, PolicyConfig, skip=DATA_FIELDS, title="policy", preset=True)
    add_flags(p, TrainConfig, title="training", preset=True)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "distill",
        help="distil a trained policy into a few-step sampler (progressive or trajectory)",
    )
    p.add_argument("teacher", help="the trained policy (.safetensors)")
    p.add_argument("--out", required=True, help="output folder for the student's checkpoints")
    p.add_argument("--demos", help="HDF5 demonstrations (default: the teacher's training file)")
    add_run_flags(p)
    add_flags(p, DistillConfig, title="distillation")
    p.set_defaults(func=cmd_distill)


def check_out_folder(out) -> None:
    """Refuse, before any work, a run folder that is a file (or lies inside one)."""
    for path in (Path(out), *Path(out).parents):
        if path.exists() and not path.is_dir():
            raise ValueError(f"--out {out}: {path} is a file, not a folder for the run")


def add_run_flags(p) -> None:
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
    p.add_argument("--overwrite", action="store_true", help="replace checkpoints already in OUT")
    p.add_argument("--json-progress", action="store_true", help="JSON lines on stdout")


def cmd_train(args) -> int:
    from dp_agent.config import make_configs
    from dp_agent.training.train import train

    check_out_folder(args.out)
    pc, tc = make_configs(args.preset, given(args, PolicyConfig), given(args, TrainConfig))
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


def cmd_distill(args) -> int:
    from dp_agent.config import replace_fields
    from dp_agent.training.distill import distill

    check_out_folder(args.out)
    final = distill(
        args.teacher,
        args.out,
        replace_fields(DistillConfig(), given(args, DistillConfig)),
        demos=args.demos,
        resume=args.resume,
        overwrite=args.overwrite,
        json_progress=args.json_progress,
    )
    if not args.json_progress:
        print(f"wrote {final}", file=sys.stderr)
    return 0
