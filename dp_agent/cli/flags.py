"""Command-line flags generated from the config dataclasses, in one place: every field of a
simple type (numbers, strings, booleans, tuples of numbers) becomes ``--field-name`` (or the
flag its ``dp_agent.config.option`` names), with its help and choices; ``given`` reads back the
fields set on the command line, which then override a preset's or the dataclass's values."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from dp_agent.config import metadata_of, out_of_range


def add_flags(parser, cls, *, skip=(), title: str | None = None, preset: bool = False) -> None:
    """Add a flag for each field of the dataclass ``cls`` not in ``skip`` (fields of other
    types, dicts, have none), in an argument group (``title``; default: the class's name).
    ``preset``: the defaults shown are the preset's."""
    group = parser.add_argument_group(title or cls.__name__)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = _kind(hints[f.name])
        if f.name in skip or kind is None:
            continue
        meta = metadata_of(cls, f.name)
        default = f"the preset's, else {f.default!r}" if preset else repr(f.default)
        help_text = f"{meta.get('help') or f.name.replace('_', ' ')} (default: {default})"
        flag = flag_of(cls, f.name)
        common = {"dest": _dest(cls, f.name), "default": argparse.SUPPRESS, "help": help_text}
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif isinstance(kind, tuple):  # numbers: --down-dims 64 128 256 or 64,128,256
            parse = _numbers(kind[0], meta, f.name)
            group.add_argument(flag, type=parse, nargs="+", metavar="N", **common)
        else:
            metavar = None if meta.get("choices") else kind.__name__.upper()
            parse = kind if kind is str else number(kind, meta.get("min"), meta.get("max"), f.name)
            group.add_argument(
                flag, type=parse, choices=meta.get("choices"), metavar=metavar, **common
            )


def number(kind, min=None, max=None, name: str | None = None):
    """An argparse ``type`` for an int or float in ``[min, max]`` (either may be None): a value
    outside it, NaN, or a float where an int is wanted ends the parse with one line saying the
    range (and the config field ``name``), before any work."""
    meta = {"min": min, "max": max}
    what = f"{name} " if name else ""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        problem = out_of_range(value, meta)
        if problem:
            raise argparse.ArgumentTypeError(f"{what}{problem}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def given(args: argparse.Namespace, cls) -> dict[str, Any]:
    """The fields of ``cls`` set on the command line (by ``add_flags``' flags)."""
    out = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, _dest(cls, f.name), argparse.SUPPRESS)
        if value is not argparse.SUPPRESS:
            is_list = isinstance(value, list)
            out[f.name] = tuple(x for part in value for x in part) if is_list else value
    return out


def flag_of(cls, name: str) -> str:
    """The flag of field ``name`` of ``cls``: ``--field-name`` unless its ``option`` names one."""
    return metadata_of(cls, name).get("flag") or "--" + name.replace("_", "-")


def _dest(cls, name: str) -> str:
    return f"{cls.__name__}.{name}"


def _kind(hint):
    """bool, int, float or str for a field of that type (or that type or None); (int,) or
    (float,) for a tuple of numbers; None for anything else."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        return _kind(rest[0]) if len(rest) == 1 else None
    if hint in (bool, int, float, str):
        return hint
    if typing.get_origin(hint) is tuple:
        args = {a for a in typing.get_args(hint) if a is not Ellipsis}
        return (args.pop(),) if len(args) == 1 and args <= {int, float} else None
    return None


def _numbers(kind, meta: dict, name: str):
    def parse(text: str) -> list:
        try:
            values = [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {kind.__name__}s separated by commas or spaces, e.g. 99,49,24; "
                f"got {text!r}"
            ) from None
        for value in values:
            problem = out_of_range(value, meta)
            if problem:
                raise argparse.ArgumentTypeError(f"each of {name} {problem}, got {value}")
        return values

    parse.__name__ = f"{kind.__name__} list"
    return parse
