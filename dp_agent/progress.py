"""Progress of long jobs: a terminal bar on stderr, or JSON lines on stdout for other programs
(the app reads them). One object per line, each with an ``event`` field."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, fields
from typing import ClassVar


class Progress:
    """``update(n, **metrics)`` advances to step n; ``event(name, **fields)`` reports anything else.

    In JSON mode every event is one line on stdout; ``step`` events are throttled to ``every``.
    """

    def __init__(self, total: int, desc: str = "", json_lines: bool = False, every: int = 1):
        self.total = total
        self.json_lines = json_lines
        self.every = max(1, every)
        self.t0 = time.perf_counter()
        self._bar = None
        if not json_lines:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, file=sys.stderr, dynamic_ncols=True)

    def event(self, name: str, **fields) -> None:
        if self.json_lines:
            print(json.dumps({"event": name, **fields}), flush=True)
        elif name not in ("step", "start"):
            msg = " ".join(f"{k}={v}" for k, v in fields.items())
            (self._bar.write if self._bar else print)(f"[{name}] {msg}", file=sys.stderr)

    def emit(self, event: TrainEvent) -> None:
        """Report one typed event (``TrainStep`` advances the bar like ``update``)."""
        if isinstance(event, TrainStep):
            metrics = {k: v for k, v in asdict(event).items() if k not in ("step", "total_steps")}
            self.update(event.step, **{k: v for k, v in metrics.items() if v is not None})
        else:
            self.event(event.event, **asdict(event))

    def update(self, n: int, **metrics) -> None:
        if self._bar is not None:
            if metrics:
                self._bar.set_postfix(
                    {k: f"{v:.4g}" if isinstance(v, float) else v for k, v in metrics.items()},
                    refresh=False,
                )
            self._bar.update(n - self._bar.n)
        elif n % self.every == 0 or n == self.total:
            self.event("step", step=n, total_steps=self.total, **metrics)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class SilentProgress(Progress):
    """Reports nothing (the other ranks of a multi-process run)."""

    def __init__(self, total: int):
        super().__init__(total, json_lines=True)

    def event(self, name: str, **fields) -> None:
        pass


# ----------------------------------------------------------------------------------------------
# Training events: written by the training loop (``dp_agent.training.loop``, ``--json-progress``),
# read by the app's Train tab.


@dataclass
class TrainStart:
    total_steps: int
    start_step: int = 0
    device: str = "cpu"
    device_name: str = "CPU"
    num_episodes: int = 0
    num_samples: int = 0
    out: str = ""
    parameters: int = 0
    event: ClassVar[str] = "start"


@dataclass
class TrainStep:
    step: int
    total_steps: int
    loss: float | None = None
    lr: float | None = None
    samples_per_s: float | None = None
    eta_s: float | None = None
    event: ClassVar[str] = "step"


@dataclass
class TrainCheckpoint:
    step: int
    path: str
    event: ClassVar[str] = "checkpoint"


@dataclass
class TrainDone:
    step: int
    path: str
    seconds: float
    peak_memory_mb: float | None = None  # the GPU's peak allocation, or the process's peak RSS
    event: ClassVar[str] = "done"


@dataclass
class TrainError:
    message: str
    event: ClassVar[str] = "error"


TrainEvent = TrainStart | TrainStep | TrainCheckpoint | TrainDone | TrainError
TRAIN_EVENTS: dict[str, type] = {
    cls.event: cls for cls in (TrainStart, TrainStep, TrainCheckpoint, TrainDone, TrainError)
}


def parse_train_event(line: str) -> TrainEvent | None:
    """The training event on one JSON line, or None when the line is not one (a log line, or
    an object whose fields do not fit its event type)."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    cls = TRAIN_EVENTS.get(obj.get("event")) if isinstance(obj, dict) else None
    if cls is None:
        return None
    names = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in obj.items() if k in names})
    except TypeError:  # a required field is missing
        return None
