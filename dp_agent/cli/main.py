"""The ``dp-agent`` command: its parser, made of one module per group of subcommands
(``train``/``distill``, ``eval``/``info``/``export``, ``demos``, ``plan-train``/``plan-export``,
``quickstart``), and the one place where bad input becomes a one-line error."""

from __future__ import annotations

import argparse
import json
import os
import sys

import dp_agent
from dp_agent.cli import checkpoints, plan, quickstart, train
from dp_agent.cli.demos import add_subcommands as add_demos_subcommands


def _add_gui(sub) -> None:
    # listed for --help; main() hands "gui ..." to the app's own parser before parsing
    sub.add_parser("gui", help="open the desktop app (dp-agent gui --help for its options)")


class Parser(argparse.ArgumentParser):
    """argparse whose bad input (an unknown flag, a number out of its range) is one line, as
    every other error of the command; the subcommands' parsers are of this class too."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="dp-agent", description="Diffusion Policy: record, train, evaluate, inspect."
    )
    parser.add_argument("--version", action="version", version=dp_agent.__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    train.add_subcommands(sub)  # train, distill
    checkpoints.add_subcommands(sub)  # eval, info, export
    add_demos_subcommands(sub)
    _add_gui(sub)
    quickstart.add_subcommand(sub)
    plan.add_subcommands(sub)  # plan-train, plan-export
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["gui"]:  # the app parses its own options (argparse would eat the dashes)
        from dp_agent.gui import main as gui_main

        return int(gui_main(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    json_mode = getattr(args, "json_progress", False)
    from gymnasium.error import Error as GymError

    # CheckpointError, DemoError and bad configs are ValueErrors; TrainingError a RuntimeError;
    # OSError: a path of the wrong kind, a full disk
    known = (ValueError, OSError, RuntimeError, GymError)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, in the handler below, not at exit
        return code
    except BrokenPipeError:  # the reader left early (`dp-agent demos info F | head`): stop quietly
        # point stdout at /dev/null so that the interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for a process ended by SIGPIPE (128 + 13)
    except known as e:  # bad input or a stopped run: one readable line, no traceback
        if json_mode:
            print(json.dumps({"event": "error", "message": str(e)}), flush=True)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
