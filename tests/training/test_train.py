"""Training runs: JSON-lines progress, resume after a kill, NaN stop, EMA and LR schedules."""

import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from dp_agent.checkpoint import read_header
from dp_agent.config import make_configs
from dp_agent.data import DemoWriter
from dp_agent.policy import DiffusionPolicy
from dp_agent.progress import Progress, TrainCheckpoint
from dp_agent.training.loop import TrainingError, cosine_with_warmup, ema_decay
from dp_agent.training.train import train
from dp_agent.training.windows import EpisodeArrays


def write_demos(path, n=8, length=30):
    rng = np.random.default_rng(0)
    w = DemoWriter(path, {"env_name": "test/Point", "type": 2, "env_kwargs": {}})
    for _ in range(n):
        obs = rng.uniform(-1, 1, (length, 3)).astype(np.float32)
        act = rng.uniform(-1, 1, (length, 2)).astype(np.float32)
        w.append_episode({"state": obs}, act, np.zeros(length), np.zeros(length))
    return path


TINY = [
    "--preset",
    "cpu-small",
    "--pred-horizon",
    "8",
    "--action-horizon",
    "4",
    "--batch-size",
    "16",
    "--threads",
    "1",
]


def run_cli(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "dp_agent.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def events(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_json_progress_reports_start_steps_checkpoints_and_done(tmp_path):
    demos = write_demos(tmp_path / "d.hdf5")
    proc = run_cli(
        "train",
        "--demos",
        str(demos),
        "--out",
        str(tmp_path / "run"),
        "--steps",
        "40",
        "--checkpoint-every",
        "20",
        "--json-progress",
        *TINY,
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    ev = events(out)
    kinds = [e["event"] for e in ev]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert ev[0]["device"] == "cpu" and ev[0]["num_episodes"] == 8
    steps = [e for e in ev if e["event"] == "step"]
    assert [e["step"] for e in steps] == [10, 20, 30, 40]
    assert all(e["loss"] > 0 and e["samples_per_s"] > 0 and e["eta_s"] >= 0 for e in steps)
    assert [e["step"] for e in ev if e["event"] == "checkpoint"] == [20]
    assert (tmp_path / "run" / "final.safetensors").exists()


@pytest.mark.slow
def test_resume_after_a_killed_run_continues_from_the_last_checkpoint(tmp_path):
    demos = write_demos(tmp_path / "d.hdf5")
    out_dir = tmp_path / "run"
    args = [
        "train",
        "--demos",
        str(demos),
        "--out",
        str(out_dir),
        "--steps",
        "3000",
        "--checkpoint-every",
        "25",
        "--json-progress",
        *TINY,
    ]
    proc = run_cli(*args)
    saved = None
    for line in proc.stdout:  # wait for the second checkpoint, then kill without warning
        e = json.loads(line)
        if e["event"] == "checkpoint" and e["step"] >= 50:
            saved = e["step"]
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert saved is not None
    resumed = run_cli(*[a if a != "3000" else "120" for a in args], "--resume")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    ev = events(out)
    assert ev[0]["event"] == "start" and ev[0]["start_step"] >= saved
    first_step = next(e["step"] for e in ev if e["event"] == "step")
    assert first_step == ev[0]["start_step"] + 10 - ev[0]["start_step"] % 10
    assert ev[-1] == {**ev[-1], "event": "done", "step": 120}
    info = subprocess.run(
        [sys.executable, "-m", "dp_agent.cli", "info", str(out_dir / "final.safetensors")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "step 120 of 120" in info.stdout


def tiny_configs(**train):
    return make_configs(
        "cpu-small",
        {"pred_horizon": 8, "action_horizon": 4, "down_dims": (16, 32)},
        {"batch_size": 8, "warmup_steps": 5, "log_every": 5, **train},
    )


def tiny_episodes(n=4, length=20):
    rng = np.random.default_rng(0)
    return [
        EpisodeArrays(
            rng.uniform(-1, 1, (length, 3)).astype(np.float32),
            rng.uniform(-1, 1, (length, 2)).astype(np.float32),
        )
        for _ in range(n)
    ]


class StopAfterCheckpoint(Progress):
    """Progress that stops the run (as a kill would) right after the checkpoint at ``step``."""

    def __init__(self, total, step):
        super().__init__(total, json_lines=True)
        self.stop_step = step

    def emit(self, event):
        super().emit(event)
        if isinstance(event, TrainCheckpoint) and event.step == self.stop_step:
            raise KeyboardInterrupt


def test_nan_loss_stops_the_run_and_never_overwrites_the_last_good_checkpoint(
    tmp_path, monkeypatch
):
    from safetensors.torch import load_file

    pc, tc = tiny_configs(num_steps=50, checkpoint_every=10, log_every=100)
    real_loss = DiffusionPolicy.forward
    calls = []

    def loss_that_goes_bad_at_step_15(self, *args, **kwargs):
        calls.append(1)
        loss = real_loss(self, *args, **kwargs)
        return loss * float("nan") if len(calls) >= 15 else loss

    monkeypatch.setattr(DiffusionPolicy, "forward", loss_that_goes_bad_at_step_15)
    with pytest.raises(TrainingError, match=r"loss became NaN or inf by step 20"):
        train(tiny_episodes(), tmp_path / "nan", pc, tc, json_progress=True)
    last = tmp_path / "nan" / "last.safetensors"
    assert read_header(last).training.step == 10  # the good one, kept
    assert all(torch.isfinite(t).all() for t in load_file(last).values() if t.is_floating_point())
    assert not (tmp_path / "nan" / "final.safetensors").exists()


@pytest.mark.slow
def test_resumed_run_equals_a_straight_run(tmp_path):
    """0 -> 20, stop, resume -> 30 gives the weights, EMA and optimiser state of a straight
    0 -> 30 run: the checkpoint carries the batch generator's state, so the resumed run draws
    the same batches and noise. Exact on one CPU thread (the tolerance below is zero)."""
    from safetensors.torch import load_file

    pc, tc = tiny_configs(num_steps=30, checkpoint_every=20)
    train(tiny_episodes(), tmp_path / "straight", pc, tc, json_progress=True)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_episodes(), tmp_path / "cut", pc, tc, progress=StopAfterCheckpoint(30, 20))
    assert read_header(tmp_path / "cut" / "last.safetensors").training.step == 20
    train(tiny_episodes(), tmp_path / "cut", pc, tc, resume=True, json_progress=True)
    straight = load_file(tmp_path / "straight" / "last.safetensors")
    resumed = load_file(tmp_path / "cut" / "last.safetensors")
    assert straight.keys() == resumed.keys()
    assert {k.split(".")[0] for k in straight} == {"model", "train", "optim", "rng"}
    for k in straight:
        torch.testing.assert_close(resumed[k], straight[k], rtol=0, atol=0, msg=k)


def test_final_checkpoint_holds_inference_weights_only(tmp_path):
    from safetensors.torch import load_file

    pc, tc = tiny_configs(num_steps=6, checkpoint_every=100)
    final = train(tiny_episodes(), tmp_path / "run", pc, tc, json_progress=True)
    last = load_file(tmp_path / "run" / "last.safetensors")
    weights = load_file(final)
    assert {k.split(".")[0] for k in weights} == {"model"}
    for k, v in weights.items():  # the EMA weights, the same as in last
        torch.testing.assert_close(v, last[k], rtol=0, atol=0)
    assert final.stat().st_size < (tmp_path / "run" / "last.safetensors").stat().st_size / 2


def test_fine_tuning_starts_from_the_given_policy_and_checks_its_shape(tmp_path):
    """``init_from``: the model and its EMA start as the earlier run's policy (a step at a
    vanishing learning rate leaves them there, where a fresh run is elsewhere); a policy of
    another shape, or a missing file, is refused by name."""
    from safetensors.torch import load_file

    pc, tc = tiny_configs(num_steps=30, checkpoint_every=100)
    first = train(tiny_episodes(), tmp_path / "first", pc, tc, json_progress=True)
    tune = dict(num_steps=1, lr=1e-12, warmup_steps=0, seed=1)
    _, tc_tuned = tiny_configs(**tune, init_from=str(first))
    tuned = train(tiny_episodes(), tmp_path / "tuned", pc, tc_tuned, json_progress=True)
    fresh = train(
        tiny_episodes(), tmp_path / "fresh", pc, tiny_configs(**tune)[1], json_progress=True
    )
    a, b, c = (load_file(p) for p in (first, tuned, fresh))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6, msg=k)
    assert any(not torch.allclose(c[k], a[k], atol=1e-3) for k in a)
    assert read_header(tuned).training.train_config["init_from"] == str(first)

    wider, _ = make_configs(
        "cpu-small",
        {"pred_horizon": 8, "action_horizon": 4, "down_dims": (16, 64)},
        {},
    )
    with pytest.raises(TrainingError, match=r"cannot start from, policy_config.down_dims"):
        train(tiny_episodes(), tmp_path / "wider", wider, tc_tuned, json_progress=True)
    other_embedding, _ = make_configs(
        "cpu-small",
        {"pred_horizon": 8, "action_horizon": 4, "down_dims": (16, 32), "step_embed_dim": 32},
        {},
    )
    with pytest.raises(
        TrainingError, match=r"cannot start from, weight \S+ is \(256, 64\) there but \(128, 32\)"
    ):
        train(tiny_episodes(), tmp_path / "embed", other_embedding, tc_tuned, json_progress=True)
    _, missing = tiny_configs(**tune, init_from=str(tmp_path / "nope.safetensors"))
    with pytest.raises(TrainingError, match=r"nope.safetensors: no such checkpoint"):
        train(tiny_episodes(), tmp_path / "missing", pc, missing, json_progress=True)


def test_training_refuses_to_overwrite_an_earlier_run_unless_asked(tmp_path):
    eps = [EpisodeArrays(np.zeros((12, 3), np.float32), np.zeros((12, 2), np.float32))] * 2
    pc, tc = make_configs(
        "cpu-small",
        {"pred_horizon": 8, "action_horizon": 4, "down_dims": (16, 32)},
        {"num_steps": 2, "batch_size": 4},
    )
    train(eps, tmp_path / "run", pc, tc, json_progress=True)
    with pytest.raises(TrainingError, match="already holds last.safetensors and final"):
        train(eps, tmp_path / "run", pc, tc, json_progress=True)
    train(eps, tmp_path / "run", pc, tc, overwrite=True, json_progress=True)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args,message",
    [
        (["eval", "CKPT", "--env", "Nope-v0"], "Nope"),
        (["train", "--demos", "DEMOS", "--obs-keys", "nope", "--out", "OUT"], "['nope'] not found"),
        (
            ["train", "--demos", "DEMOS", "--checkpoint-every", "0", "--out", "OUT"],
            "checkpoint_every must be at least 1",
        ),
    ],
)
def test_cli_bad_arguments_give_one_line_and_no_traceback(tmp_path, tiny_agent, args, message):
    subs = {
        "CKPT": str(tiny_agent.save(tmp_path / "c.safetensors")),
        "DEMOS": str(write_demos(tmp_path / "d.hdf5")),
        "OUT": str(tmp_path / "o"),
    }
    proc = run_cli(*[subs.get(a, a) for a in args])
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "Traceback" not in err
    assert err.startswith("error: ") and message in err


def test_cli_reports_bad_demo_files_in_one_line(tmp_path):
    bad = tmp_path / "notes.hdf5"
    bad.write_text("not hdf5")
    proc = run_cli("train", "--demos", str(bad), "--out", str(tmp_path / "r"), "--json-progress")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in err and err.startswith("error: ") and "notes.hdf5" in err
    assert events(out)[-1]["event"] == "error"


def test_ema_decay_follows_the_reference_formula():
    assert ema_decay(0) == 0.0
    for step in (1, 10, 1000):
        assert ema_decay(step) == pytest.approx(1 - (1 + step) ** -0.75)
    assert ema_decay(10**9) == 0.9999


def test_learning_rate_warms_up_then_follows_a_cosine():
    f = cosine_with_warmup(warmup_steps=10, total_steps=110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(110) == pytest.approx(0.0, abs=1e-12)
