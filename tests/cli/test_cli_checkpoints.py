"""``dp-agent info`` and ``dp-agent eval`` on every kind of shipped checkpoint: policies,
distilled students and planners."""

from pathlib import Path

import pytest

from dp_agent.cli.main import main
from dp_agent.data.shipped import package_dir

SHIPPED = sorted((package_dir() / "pretrained").glob("*.safetensors"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: Path(p).name)
def test_info_describes_every_shipped_checkpoint(path, capsys):
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"checkpoint   {path}") and "parameters" in out
    assert ("planner      H=" in out) == path.name.startswith("maze2d")
    assert ("distilled    from" in out) == ("distilled" in path.name)
    assert main(["info", str(path), "--json"]) == 0
    assert '"policy_config"' in capsys.readouterr().out


def summary(out: str) -> dict[str, str]:
    rows = [line.split(":", 1) for line in out.splitlines() if ":" in line]
    return {k.strip(): v.strip() for k, v in rows}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["maze2d_umaze.safetensors", "tree_detour.safetensors"])
def test_eval_runs_a_shipped_planner_and_a_shipped_policy(name, capsys):
    path = package_dir() / "pretrained" / name
    args = ["eval", str(path), "--episodes", "2", "--n-envs", "2", "--max-episode-steps", "12"]
    assert main([*args, "--in-process", "--deterministic", "--device", "cpu"]) == 0
    got = summary(capsys.readouterr().out)
    assert got["episodes"] == "2" and float(got["mean_length"]) <= 12
    assert got["sampler"] == "ddim" and int(got["steps"]) >= 1


@pytest.mark.slow
def test_eval_of_a_planner_takes_the_sampler_asked_for(capsys):
    path = package_dir() / "pretrained" / "maze2d_umaze.safetensors"
    args = ["eval", str(path), "--episodes", "1", "--n-envs", "1", "--max-episode-steps", "3"]
    assert main([*args, "--in-process", "--sampler", "dpmsolver++", "--steps", "4"]) == 0
    got = summary(capsys.readouterr().out)
    assert (got["sampler"], got["steps"]) == ("dpmsolver++", "4")


def test_eval_refuses_an_env_the_planner_cannot_read(capsys):
    path = package_dir() / "pretrained" / "maze2d_umaze.safetensors"
    assert main(["eval", str(path), "--env", "dp_agent/TreeDetour-v0", "--episodes", "1"]) == 2
    assert "observation parts" in capsys.readouterr().err
