"""No calls home: building and running a compiled graph writes nothing to the user's home (where
OpenVINO's telemetry keeps its client id, ~/intel/openvino_ga_cid, and ONNX Runtime's its device
id) and leaves no process behind (OpenVINO's forks a sender per event, which without a network
outlives the process)."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc (Linux)"),
]
RUNTIMES = {"openvino": ("openvino",), "onnx": ("onnx", "onnxruntime")}

# a per-step graph of a small U-Net, built by a backend (argv[1]) and run once against the eager
# network
BUILD_AND_RUN = """
import sys
import torch
from dp_agent.fast import backends
from dp_agent.nets.unet import ConditionalUnet1D

torch.manual_seed(0)
net = ConditionalUnet1D(2, 10, (16, 32), step_embed_dim=16).eval()
cond, timesteps, x = torch.randn(1, 10), torch.tensor([9, 5, 0]), torch.randn(1, 16, 2)
with torch.no_grad():
    graph = backends.make_backend(sys.argv[1], net).prepare(cond, timesteps)
    eager = backends.make_backend("eager", net).prepare(cond, timesteps)
    torch.testing.assert_close(graph(x, 0), eager(x, 0), rtol=1e-4, atol=1e-4)
print("graph ran")
"""


def processes_with_home(home: Path) -> list[int]:
    """The live processes whose environment says HOME=``home``: the child and anything it
    started, orphans included (they keep the environment they were forked with; other
    processes on the machine, such as a parallel test run, do not match)."""
    marker = f"HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # ended meanwhile, or not ours to read
            continue
        if marker in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("backend", RUNTIMES)
def test_a_compiled_graph_writes_nothing_home_and_leaves_no_process(tmp_path, backend):
    missing = [p for p in RUNTIMES[backend] if importlib.util.find_spec(p) is None]
    if missing:
        pytest.skip(f"needs `pip install {' '.join(missing)}`")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}
    env.pop("ORT_DISABLE_TELEMETRY", None)  # a user's run: nothing set (OpenVINO's is off in CI)
    env["HOME"] = str(home)
    assert processes_with_home(home) == []
    proc = subprocess.run(
        [sys.executable, "-c", BUILD_AND_RUN, backend],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    left = processes_with_home(home)
    for pid in left:  # started by this test's child: end them before asserting
        os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 0 and "graph ran" in proc.stdout, proc.stderr[-2000:]
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert written == [], f"written to HOME: {written}"  # e.g. intel/openvino_ga_cid
    assert left == [], f"processes left running: {left}"
