"""A download's progress line on a terminal (``h3-get``; any command that downloads)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import TextIO

PROGRESS_MIN_BYTES = 1 << 20  # no progress bar for downloads smaller than this
PROGRESS_INTERVAL = 0.1  # seconds between redraws


def format_size(count: float) -> str:
    """``512 B``, ``1.5 KiB``, ``20.0 MiB``..."""
    if count < 1024:
        return f"{int(count)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        count /= 1024
        if count < 1024 or unit == "TiB":
            break
    return f"{count:.1f} {unit}"


def format_progress(received: int, total: int | None, elapsed: float, width: int = 80) -> str:
    """A progress line: percentage, bar, bytes and rate; bytes and rate if the size is unknown."""
    rate = f"{format_size(received / elapsed)}/s" if elapsed > 0 else "--/s"
    if total is None:
        return f"{format_size(received)}  {rate}"
    fraction = min(received / total, 1.0) if total > 0 else 1.0
    counts = f"{format_size(received)} / {format_size(total)}"
    text = f"{fraction * 100:5.1f}% [] {counts}  {rate}"
    bar_width = max(10, min(40, width - 1 - len(text)))
    filled = int(fraction * bar_width)
    bar = "#" * filled + "." * (bar_width - filled)
    return f"{fraction * 100:5.1f}% [{bar}] {counts}  {rate}"


class Progress:
    """A progress line on a terminal, redrawn at most every ``interval`` seconds.

    Draws nothing unless ``enabled``, and nothing for downloads below
    ``min_bytes`` (known size) or until that many bytes arrived (unknown size).
    """

    def __init__(
        self,
        stream: TextIO,
        total: int | None,
        *,
        enabled: bool,
        min_bytes: int = PROGRESS_MIN_BYTES,
        interval: float = PROGRESS_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.total = total
        self.enabled = enabled and (total is None or total >= min_bytes)
        self.min_bytes = min_bytes
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self.received = 0
        self.drawn = False
        self._last_draw = -float("inf")
        self._last_len = 0

    def update(self, nbytes: int) -> None:
        self.received += nbytes
        if not self.enabled or (self.total is None and self.received < self.min_bytes):
            return
        now = self.clock()
        if now - self._last_draw >= self.interval:
            self._last_draw = now
            self._draw(now)

    def finish(self) -> None:
        """Draw the final state and end the line (if anything was drawn)."""
        if self.drawn:
            self._draw(self.clock())
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, now: float) -> None:
        width = shutil.get_terminal_size((80, 24)).columns
        line = format_progress(self.received, self.total, now - self.started, width)
        self.stream.write("\r" + line.ljust(self._last_len))
        self.stream.flush()
        self._last_len = len(line)
        self.drawn = True
