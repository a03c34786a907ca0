"""The train panel runs ``dp_agent.cli train`` in a real child process and follows it."""

from __future__ import annotations

from pathlib import Path

import pytest

from dp_agent.gui import widgets
from dp_agent.gui.train_panel import train_command
from dp_agent.gui.train_progress import format_seconds
from dp_agent.progress import TrainStart, TrainStep

pytestmark = pytest.mark.slow  # real training processes run from the app


def _setup(panel, demos, out: Path, steps: int) -> None:
    panel.add_demos(demos)
    panel.set_preset("cpu-small")
    panel.steps_spin.setValue(steps)
    panel.device_combo.setCurrentText("cpu")
    panel.out_edit.setText(str(out))
    panel._out_edited = True
    panel.extra_env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_train_command_follows_the_cli_contract():
    args = train_command("d.hdf5", "cpu-small", 20, "out", "cpu")
    assert args[:3] == ["-m", "dp_agent.cli", "train"]
    assert args[args.index("--demos") + 1] == "d.hdf5"
    assert args[args.index("--steps") + 1] == "20"
    assert "--json-progress" in args
    assert format_seconds(125) == "2 min 05 s" and format_seconds(None) == "–"
    two = train_command("d.hdf5", "cpu-small", 20, "out", "cpu", processes=2)
    assert two[:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    assert two[6:] == args[1:]


def test_a_two_process_run_trains_one_model_and_is_loaded(window, tiny_demos, tmp_path, qtbot):
    panel = window.train_panel
    out = tmp_path / "run2"
    _setup(panel, tiny_demos, out, steps=10)
    panel.processes_spin.setValue(2)
    with qtbot.waitSignal(panel.trained, timeout=240_000) as finished:
        assert panel.start()
    assert finished.args == [str(out / "final.safetensors")]
    assert [e.event for e in panel.events].count("start") == 1  # rank 0 alone reports
    assert panel.step_label.text() == "10 / 10"


def test_training_runs_to_completion_and_the_policy_is_loaded(window, tiny_demos, tmp_path, qtbot):
    panel = window.train_panel
    out = tmp_path / "run"
    _setup(panel, tiny_demos, out, steps=20)
    with qtbot.waitSignal(panel.trained, timeout=180_000) as finished:
        assert panel.start()
        assert panel.running and not panel.start_button.isEnabled()
    final = out / "final.safetensors"
    assert finished.args == [str(final)] and final.is_file()
    kinds = [e.event for e in panel.events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "step" in kinds
    assert panel.state == "done"
    assert panel.progress.value() == panel.progress.maximum() == 20
    assert panel.step_label.text() == "20 / 20"
    assert "CPU" in panel.device_label.text()
    assert len(panel.loss_curve.getData()[0]) == kinds.count("step")
    assert float(panel.speed_label.text().replace(",", "")) > 0
    # the result goes to the policy view
    qtbot.waitUntil(lambda: window.policy_panel.policy is not None, timeout=60_000)
    assert window.policy_panel.agent_path == final
    assert window.policy_panel.run_button.isEnabled()


def test_a_failing_run_shows_a_readable_message(window, tmp_path, qtbot):
    bad = tmp_path / "broken.hdf5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)  # an HDF5 signature, then garbage
    panel = window.train_panel
    _setup(panel, bad, tmp_path / "run", steps=20)
    assert panel.start()
    qtbot.waitUntil(lambda: not panel.running, timeout=120_000)
    assert panel.state == "failed"
    text = panel.error_label.text()
    assert text.startswith("Training failed:") and "broken.hdf5" in text
    assert "Traceback" not in text
    assert panel.start_button.isEnabled()


def _start_long_run(panel, demos, out: Path, qtbot) -> None:
    """A run too long to end during the test, followed until it reports a step (and an ETA)."""
    _setup(panel, demos, out, steps=100_000)
    assert panel.start()
    qtbot.waitUntil(lambda: any(isinstance(e, TrainStep) for e in panel.events), timeout=120_000)
    assert panel.eta_label.text() != "–"


def test_cancel_kills_the_process_clears_the_eta_and_keeps_the_window_usable(
    window, tiny_demos, tmp_path, qtbot
):
    panel = window.train_panel
    _start_long_run(panel, tiny_demos, tmp_path / "run", qtbot)
    assert isinstance(panel.events[0], TrainStart) and panel.progress.maximum() == 100_000
    panel.cancel_button.click()
    qtbot.waitUntil(lambda: not panel.running, timeout=30_000)
    assert panel.state == "cancelled"
    assert "cancelled" in panel.progress.format()
    assert panel.eta_label.text() == "–"  # no time is left to estimate
    assert not (tmp_path / "run" / "final.safetensors").exists()
    assert panel.start_button.isEnabled()


def test_closing_the_window_during_training_asks_first(
    window, tiny_demos, tmp_path, qtbot, monkeypatch
):
    panel = window.train_panel
    _start_long_run(panel, tiny_demos, tmp_path / "run", qtbot)
    asked = []

    def answer(keep_running: bool):
        def ask(parent, title, text, yes="Yes", no="No"):
            asked.append((text, yes, no))
            return not keep_running

        return ask

    monkeypatch.setattr(widgets, "ask", answer(keep_running=True))
    window.close()
    assert window.isVisible() and panel.running  # kept running
    text, yes, no = asked[0]
    assert "training run is in progress" in text and str(tmp_path / "run") in text
    assert (yes, no) == ("Stop and close", "Keep running")

    monkeypatch.setattr(widgets, "ask", answer(keep_running=False))
    window.close()
    assert not window.isVisible() and not panel.running and len(asked) == 2
    assert panel.state == "cancelled"
