"""The Train tab's side of a run's output: the ``--json-progress`` events and log lines read
from the training process, shown as progress, a loss curve and a log, and how the run ended."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pyqtgraph as pg
from PyQt6.QtCore import QProcess

from dp_agent.progress import (
    TrainCheckpoint,
    TrainDone,
    TrainError,
    TrainEvent,
    TrainStart,
    TrainStep,
    parse_train_event,
)


def format_seconds(seconds: float | None) -> str:
    """12 -> '12 s', 125 -> '2 min 05 s', 7300 -> '2 h 01 min'."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "–"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


class LossAxis(pg.AxisItem):
    """A log axis that labels only 1, 2 and 5 times a power of ten (the default labels every
    minor tick, and they overlap)."""

    def logTickStrings(self, values, scale, spacing):  # noqa: N802 (pyqtgraph API)
        labels = []
        for v in values:
            x = 10.0**v
            mantissa = x / 10.0 ** math.floor(math.log10(x) + 1e-9)
            keep = min(abs(mantissa - k) for k in (1.0, 2.0, 5.0)) < 1e-3
            labels.append(f"{x:.3g}" if keep else "")
        return labels


class TrainProgressMixin:
    """TrainPanel's reading of the training process (see ``train_panel``)."""

    # ------------------------------------------------------------------ process output
    def _read_stdout(self) -> None:
        data = bytes(self.process.readAllStandardOutput()).decode("utf-8", errors="replace")
        self._stdout_buffer += data
        *lines, self._stdout_buffer = self._stdout_buffer.split("\n")
        for line in lines:
            self._handle_line(line.strip())

    def _read_stderr(self) -> None:
        data = bytes(self.process.readAllStandardError()).decode("utf-8", errors="replace")
        for line in data.replace("\r", "\n").splitlines():
            line = line.rstrip()
            if line:
                self._stderr_tail = (self._stderr_tail + [line])[-20:]
                self._append_log(line)

    def _handle_line(self, line: str) -> None:
        if not line:
            return
        event = parse_train_event(line)
        if event is None:  # a log line (or JSON that is not a progress event)
            self._append_log(line)
        else:
            self.handle_event(event)

    def handle_event(self, event: TrainEvent) -> None:
        """Apply one progress event of the run."""
        self.events.append(event)
        handlers = {
            TrainStart: self._on_start,
            TrainStep: self._on_step,
            TrainCheckpoint: self._on_checkpoint,
            TrainDone: self._on_done,
            TrainError: self._on_error,
        }
        handlers[type(event)](event)

    def _on_start(self, event: TrainStart) -> None:
        self.progress.setRange(0, event.total_steps)
        self.progress.setValue(event.start_step)
        self.progress.setFormat("%v / %m steps")
        name = event.device_name or event.device
        self.device_label.setText(f"{name} ({event.device})")
        self._append_log(
            f"training on {event.num_episodes} episodes, {event.num_samples} windows, device {name}"
        )

    def _on_step(self, event: TrainStep) -> None:
        step, total = event.step, event.total_steps
        if self.progress.maximum() != total:
            self.progress.setRange(0, total)
        self.progress.setValue(step)
        self.step_label.setText(f"{step:,} / {total:,}")
        if event.loss is not None:
            self.loss_label.setText(f"{event.loss:.4g}")
            if event.loss > 0:
                self._loss_steps.append(step)
                self._loss_values.append(float(event.loss))
                self.loss_curve.setData(self._loss_steps, self._loss_values)
        if event.samples_per_s is not None:
            self.speed_label.setText(f"{event.samples_per_s:,.0f}")
        self.eta_label.setText(format_seconds(event.eta_s))

    def _on_checkpoint(self, event: TrainCheckpoint) -> None:
        self._append_log(f"checkpoint at step {event.step}: {event.path}")

    def _on_done(self, event: TrainDone) -> None:
        self.final_path = Path(event.path) if event.path else None
        self.progress.setValue(self.progress.maximum())
        self.eta_label.setText("0 s")
        self._append_log(f"done in {format_seconds(event.seconds)}: {event.path}")

    def _on_error(self, event: TrainError) -> None:
        self._error_message = event.message or "unknown error"

    def _process_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.state = "failed"
            self.show_error(f"Could not start the training process ({sys.executable}).")
            self._reset_progress("failed")
            self._update_buttons()

    def _finished(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        if self._stdout_buffer.strip():
            self._handle_line(self._stdout_buffer.strip())
            self._stdout_buffer = ""
        if self.state == "cancelled":
            self._cancelled()
        elif exit_status == QProcess.ExitStatus.NormalExit and exit_code == 0:
            self._succeeded()
        else:
            self._failed(exit_code, exit_status)
        self._update_buttons()

    def _cancelled(self) -> None:
        self._reset_progress("cancelled")
        last = self.out_dir / "last.safetensors" if self.out_dir else None
        kept = f" The last checkpoint is kept: {last}" if last and last.exists() else ""
        self.message.emit(f"Training cancelled.{kept}")
        self._append_log(f"cancelled.{kept}")

    def _succeeded(self) -> None:
        path = self.final_path or (self.out_dir / "final.safetensors")
        if path.is_file():
            self.state = "done"
            self.final_path = path
            self.progress.setFormat("done – %m steps")
            self.message.emit(f"Training finished: {path}")
            self.trained.emit(str(path))
        else:
            self.state = "failed"
            self.eta_label.setText("–")
            self.show_error(f"Training ended but {path} was not written.")

    def _failed(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        self.state = "failed"
        self._reset_progress("failed")
        why = self._error_message
        if why is None:
            tail = [ln for ln in self._stderr_tail if not ln.startswith(("  ", "Traceback"))]
            why = tail[-1] if tail else f"the process exited with code {exit_code}"
            if exit_status == QProcess.ExitStatus.CrashExit:
                why = f"the training process crashed ({why})"
        self.show_error(f"Training failed: {why}")

    def _reset_progress(self, text: str) -> None:
        """The run stopped early (cancelled, failed): no time is left to estimate."""
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 100)
            self.progress.setValue(0)
        self.progress.setFormat(f"{text} – %v / %m steps")
        self.eta_label.setText("–")
