"""A one-line progress bar on stderr for large transfers; silent when stderr is not a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

#: Transfers smaller than this finish too fast for a bar to help.
MIN_SIZE = 1 << 20


class ProgressBar:
    """Call with ``(done, total)`` as bytes move; :meth:`finish` ends the line."""

    def __init__(self, label: str, *, stream: TextIO | None = None, force: bool = False) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = force or self.stream.isatty()
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total < MIN_SIZE:
            return
        now = time.monotonic()
        if done < total and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        fraction = min(done / total, 1.0) if total else 1.0
        width = 30
        filled = int(fraction * width)
        elapsed = max(now - self.started, 1e-6)
        rate = done / elapsed / (1 << 20)
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(
            f"\r{self.label} [{bar}] {fraction * 100:5.1f}% {done >> 20}/{total >> 20} MiB {rate:.1f} MiB/s"
        )
        self.stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
