"""Command-line flags come from the config dataclasses: every simple field has one, the values
given override the preset and nothing else does."""

import dataclasses

import pytest

from dp_agent.cli.flags import flag_of, given
from dp_agent.cli.main import build_parser
from dp_agent.config import DistillConfig, PolicyConfig, TrainConfig, make_configs


def parse(*argv):
    return build_parser().parse_args(list(argv))


def test_every_training_field_has_a_flag_and_only_given_ones_override_the_preset():
    args = parse(
        "train",
        "--demos",
        "d.hdf5",
        "--steps",
        "7",
        "--down-dims",
        "32,64",
        "--betas",
        "0.9",
        "0.99",
        "--no-clip-sample",
        "--threads",
        "2",
    )
    assert given(args, TrainConfig) == {"num_steps": 7, "betas": (0.9, 0.99), "num_threads": 2}
    assert given(args, PolicyConfig) == {"down_dims": (32, 64), "clip_sample": False}
    pc, tc = make_configs("cpu-small", given(args, PolicyConfig), given(args, TrainConfig))
    assert (tc.num_steps, tc.lr, pc.pred_horizon) == (7, 1e-3, 16)  # the preset's lr


def test_every_field_of_the_training_configs_has_a_flag(capsys):
    with pytest.raises(SystemExit):
        parse("train", "--help")
    text = capsys.readouterr().out
    skipped = {"obs_dim", "action_dim", "obs_spec", "timesteps", "conditioned_entries"}
    for cls in (PolicyConfig, TrainConfig):
        for f in dataclasses.fields(cls):
            assert (f.name in skipped) != (flag_of(cls, f.name) in text), f.name


def test_distillation_flags_keep_their_names_and_defaults():
    args = parse(
        "distill",
        "t.safetensors",
        "--out",
        "o",
        "--steps",
        "3",
        "--grid",
        "99,49,5",
        "--method",
        "trajectory",
    )
    values = given(args, DistillConfig)
    assert values == {"student_steps": 3, "grid": (99, 49, 5), "method": "trajectory"}
    assert dataclasses.replace(DistillConfig(), **values).batch_size == 128


def test_a_bad_number_list_is_named():
    with pytest.raises(SystemExit):
        parse("distill", "t.safetensors", "--out", "o", "--grid", "99,x")
