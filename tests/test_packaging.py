"""Packaging: one import root, light import, envs/gui/demos installed under dp_agent.*."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_python(code, cwd, env=None):
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, env=env, check=True
    ).stdout


def test_import_dp_agent_is_light_and_registers_the_tasks(tmp_path):
    out = run_python(
        "import sys, dp_agent, gymnasium as gym;"
        "print('torch' in sys.modules, 'PyQt6' in sys.modules,"
        " 'dp_agent/PushT-v0' in gym.registry, 'dp_agent/TreeDetour-v0' in gym.registry)",
        cwd=tmp_path,
    )
    assert out.split() == ["False", "False", "True", "True"]


def test_the_cli_and_the_app_window_load_without_torch(tmp_path):
    """``dp-agent gui`` shows its window before torch is loaded (the policy worker loads it)."""
    import os

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = run_python(
        "import sys, dp_agent.cli.main, dp_agent.gui.app, dp_agent.gui.main_window;"
        "print('torch' in sys.modules)",
        cwd=tmp_path,
        env=env,
    )
    assert out.split() == ["False"]


def test_installed_package_maps_top_level_folders_under_dp_agent(tmp_path):
    out = run_python(
        "import dp_agent.envs, dp_agent.gui, dp_agent.demos;"
        "print(dp_agent.envs.__file__); print(dp_agent.demos.__file__)",
        cwd=tmp_path,
    )
    envs_file, demos_file = out.split()
    assert Path(envs_file) == ROOT / "envs" / "__init__.py"
    assert Path(demos_file) == ROOT / "demos" / "__init__.py"


@pytest.mark.slow
def test_wheel_installs_envs_gui_demos_and_data_under_dp_agent(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("dp_agent-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.startswith("dp_agent-")}
    assert top == {"dp_agent"}  # nothing named envs or gui lands in site-packages
    for needed in (
        "dp_agent/envs/__init__.py",
        "dp_agent/gui/__init__.py",
        "dp_agent/data/reader.py",
        "dp_agent/cli/main.py",
    ):
        assert needed in names
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    out = run_python(
        "import dp_agent.envs, dp_agent.demos, dp_agent.gui; print(dp_agent.envs.__file__)",
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"},
    )
    assert out.strip().startswith(str(target))
