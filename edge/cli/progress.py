"""A small progress bar on stderr for long work (no extra dependency on the edge)."""

from __future__ import annotations

import sys
import time


class Progress:
    """``Progress(total, label)``; call :meth:`update` with the amount done so far (same unit as
    ``total``, e.g. seconds of audio) and :meth:`close` at the end. Draws only on a terminal
    unless ``force`` is set; redraws at most 10 times a second."""

    def __init__(self, total: float | None, label: str = "", unit: str = "s",
                 stream=None, force: bool = False):
        self.total = total
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.enabled = force or bool(getattr(self.stream, "isatty", lambda: False)())
        self._t0 = time.monotonic()
        self._last = 0.0
        self.done = 0.0

    def update(self, done: float) -> None:
        self.done = done
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.1:
            return
        self._last = now
        self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self._t0, 1e-9)
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "█" * int(frac * 30) + "·" * (30 - int(frac * 30))
            text = (f"\r{self.label} {bar} {frac * 100:5.1f}% "
                    f"{self.done:.0f}/{self.total:.0f} {self.unit} ({rate:.0f} {self.unit}/s)")
        else:
            text = f"\r{self.label} {self.done:.0f} {self.unit} ({rate:.0f} {self.unit}/s)"
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
