"""Progress of long jobs: a terminal bar on stderr, or JSON lines on stdout for other programs
(the app reads them). One object per line, each with an ``event`` field."""

from __future__ import annotations

import json
import sys
import time


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
