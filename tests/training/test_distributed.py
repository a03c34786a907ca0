"""torchrun: N processes (gloo on CPU) train one model exactly as one process with the same
global batch, only rank 0 writes, and a killed multi-process run resumes."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from test_train import TINY, events, write_demos

from dp_agent.checkpoint import read_header

pytestmark = [
    pytest.mark.slow,  # two-process training runs under torchrun
    pytest.mark.skipif(
        not torch.distributed.is_available() or not os.path.isdir("/proc"),
        reason="needs torch.distributed and /proc (Linux)",
    ),
]


def command(demos, out, *extra, nproc=1):
    train = [
        "-m",
        "dp_agent.cli",
        "train",
        "--demos",
        str(demos),
        "--out",
        str(out),
        "--json-progress",
        *TINY,
        *extra,
    ]
    if nproc == 1:
        return [sys.executable, *train]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*launcher, "--nproc_per_node", str(nproc), *train]


def run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return events(proc.stdout)


def kill_all_with(text: str) -> None:
    """SIGKILL every process whose command line contains ``text`` (torchrun starts its workers
    in sessions of their own, so killing the launcher's group would leave them running)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
            if text in cmdline and int(pid) != os.getpid():
                os.kill(int(pid), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def test_two_processes_give_the_weights_of_one_process_with_the_same_global_batch(tmp_path):
    demos = write_demos(tmp_path / "d.hdf5")
    # fp32: bf16 autocast (the default on CPUs with native bf16) rounds a batch of 8 and a batch
    # of 16 differently, which compounds to ~1e-2 relative over 20 steps
    steps = ["--steps", "20", "--checkpoint-every", "10", "--precision", "fp32"]
    run(command(demos, tmp_path / "one", *steps))
    ev = run(command(demos, tmp_path / "two", *steps, nproc=2))
    assert [e["event"] for e in ev].count("start") == 1  # rank 0 alone reports
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        "final.safetensors",
        "last.safetensors",
    ]
    one = load_file(tmp_path / "one" / "last.safetensors")
    two = load_file(tmp_path / "two" / "last.safetensors")
    assert one.keys() == two.keys()
    # the same samples and noise; only the order of the gradient all-reduce's sums differs
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-4, atol=1e-5, msg=k)


def test_a_killed_two_process_run_resumes_on_every_rank(tmp_path):
    demos = write_demos(tmp_path / "d.hdf5")
    out = tmp_path / "run"
    proc = subprocess.Popen(
        command(demos, out, "--steps", "3000", "--checkpoint-every", "10", nproc=2),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    saved = None
    for line in proc.stdout:
        if line.startswith("{") and json.loads(line)["event"] == "checkpoint":
            saved = json.loads(line)["step"]
            if saved >= 10:
                break
    kill_all_with(str(out))  # the launcher and its workers, without warning
    proc.wait()
    assert saved is not None
    at = read_header(out / "last.safetensors").training.step  # where it was cut
    assert at >= saved
    ev = run(command(demos, out, "--steps", str(at + 20), "--resume", nproc=2))
    assert ev[0]["event"] == "start" and ev[0]["start_step"] == at
    assert ev[-1]["event"] == "done" and ev[-1]["step"] == at + 20
