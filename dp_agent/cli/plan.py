"""``dp-agent plan-train`` (train a Diffuser-style planner on a demo file, with the one
training loop) and ``dp-agent plan-export`` (a planner file from a checkpoint: fp16, a value
network)."""

from __future__ import annotations

import sys

from dp_agent.cli.checkpoints import check_out_file
from dp_agent.cli.flags import add_flags, given, number
from dp_agent.cli.train import add_run_flags, check_out_folder
from dp_agent.config import MAX_STEPS, TrainConfig
from dp_agent.planning.config import PLANNER_PRESETS, PlannerConfig


def add_subcommands(sub) -> None:
    p = sub.add_parser("plan-train", help="train a Diffuser-style trajectory planner on demos")
    p.add_argument("--demos", required=True, help="demonstration file (.hdf5)")
    p.add_argument("--out", required=True, help="run folder (checkpoints)")
    p.add_argument("--preset", default="maze2d-umaze", choices=sorted(PLANNER_PRESETS))
    p.add_argument(
        "--value-steps",
        type=number(int, 0, MAX_STEPS),
        default=0,
        help="then train a value net this long",
    )
    add_run_flags(p)
    add_flags(p, PlannerConfig, title="planner", preset=True)
    add_flags(p, TrainConfig, title="training", preset=True)
    p.set_defaults(func=cmd_plan_train)

    e = sub.add_parser("plan-export", help="write a planner file from a planner checkpoint")
    e.add_argument("checkpoint")
    e.add_argument("out")
    e.add_argument("--half", action="store_true", help="store weights as float16")
    e.add_argument("--value-demos", help="train a value network on these demos and include it")
    e.add_argument("--value-steps", type=number(int, 1, MAX_STEPS), default=2000)
    e.set_defaults(func=cmd_plan_export)


def cmd_plan_train(args) -> int:
    from dp_agent.planning.config import make_planner_configs
    from dp_agent.planning.planner import Planner
    from dp_agent.planning.train import export_planner, train_planner, train_value

    check_out_folder(args.out)
    planner, train = given(args, PlannerConfig), given(args, TrainConfig)
    pc, tc = make_planner_configs(args.preset, planner, train)
    final = train_planner(
        args.demos,
        args.out,
        pc,
        tc,
        resume=args.resume,
        overwrite=args.overwrite,
        json_progress=args.json_progress,
    )
    if args.value_steps:
        net = train_value(Planner.load(final), args.demos, num_steps=args.value_steps)
        export_planner(final, final, value=net)
    print(f"wrote {final}", file=sys.stderr)
    return 0


def cmd_plan_export(args) -> int:
    from dp_agent.planning.planner import Planner
    from dp_agent.planning.train import export_planner, train_value

    check_out_file(args.out)
    net = None
    if args.value_demos:
        planner = Planner.load(args.checkpoint)
        net = train_value(planner, args.value_demos, num_steps=args.value_steps)
    path = export_planner(args.checkpoint, args.out, half=args.half, value=net)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return 0
