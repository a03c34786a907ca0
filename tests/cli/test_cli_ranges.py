"""Numbers on the command line have ranges, checked before any work, with one line naming the
flag; output paths of the wrong kind get one line, not a traceback."""

import pytest

from dp_agent.cli.main import main
from dp_agent.config import DistillConfig, PolicyConfig, TrainConfig, replace_fields
from dp_agent.data.shipped import package_dir

CKPT = str(package_dir() / "pretrained" / "tree_detour.safetensors")
DEMOS = str(package_dir() / "tree_detour.hdf5")


def refused(argv, capsys) -> str:
    """The one line of stderr for ``argv``, refused while parsing (status 2, no work done)."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: dp-agent "), lines
    return lines[0]


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["train", "--demos", DEMOS, "--batch-size", "1000000000"], "--batch-size"),
        (["train", "--demos", DEMOS, "--steps", "1" + "0" * 21], "--steps"),
        (["train", "--demos", DEMOS, "--steps", "0"], "--steps"),
        (["train", "--demos", DEMOS, "--lr", "nan"], "--lr"),
        (["train", "--demos", DEMOS, "--down-dims", "64,0"], "--down-dims"),
        (["train", "--demos", DEMOS, "--seed", "-1"], "--seed"),
        (["distill", CKPT, "--out", "o", "--steps-per-round", "-5"], "--steps-per-round"),
        (["eval", CKPT, "--n-envs", "0"], "--n-envs"),
        (["eval", CKPT, "--n-envs", "-2"], "--n-envs"),
        (["eval", CKPT, "--episodes", "0"], "--episodes"),
        (["eval", CKPT, "--episodes", "-1"], "--episodes"),
        (["eval", CKPT, "--steps", "0"], "--steps"),
        (["eval", CKPT, "--noise-seed", "-1"], "--noise-seed"),
        (["eval", CKPT, "--max-episode-steps", "0"], "--max-episode-steps"),
        (["export", CKPT, "o.safetensors", "--steps", "-1"], "--steps"),
        (["plan-export", CKPT, "o.safetensors", "--value-steps", "0"], "--value-steps"),
    ],
    ids=lambda v: " ".join(v[-2:]) if isinstance(v, list) else v,
)
def test_a_number_out_of_range_is_one_error_line_naming_the_flag(argv, flag, capsys):
    line = refused(argv, capsys)
    assert f"argument {flag}" in line and ("at least" in line or "at most" in line)


def test_the_ranges_are_the_configs_own(capsys):
    """The same limits hold for configs built in code or read from a file."""
    for cfg, field, value in [
        (TrainConfig(), "batch_size", 10**9),
        (TrainConfig(), "num_steps", 10**21),
        (TrainConfig(), "lr", float("nan")),
        (DistillConfig(), "steps_per_round", 0),
    ]:
        with pytest.raises(ValueError, match=rf"{type(cfg).__name__}\.{field} must be"):
            replace_fields(cfg, {field: value}).validate()
    pc = replace_fields(PolicyConfig(), {"obs_dim": 3, "action_dim": 2, "n_groups": 0})
    with pytest.raises(ValueError, match=r"PolicyConfig\.n_groups must be at least 1"):
        pc.validate()


def test_train_out_that_is_a_file_is_one_error_line(tmp_path, capsys):
    out = tmp_path / "taken"
    out.write_text("keep me")
    args = ["train", "--demos", DEMOS, "--out", str(out), "--steps", "1", "--batch-size", "4"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --out {out}: {out} is a file, not a folder for the run"]
    assert out.read_text() == "keep me"


def test_export_to_a_folder_is_one_error_line(tmp_path, capsys):
    assert main(["export", CKPT, str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path} is a folder")
    assert list(tmp_path.iterdir()) == []
