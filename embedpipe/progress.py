"""Progress for long loops: a tqdm bar (rate, ETA) when stderr is a terminal, plain log lines otherwise.

    >>> with Progress(1_000_000, "vectors added") as progress:
    ...     progress.update(65_536)
    >>> progress.done, progress.line().split(" (")[0]
    (65536, 'vectors added: 65,536/1,000,000 rows')

The rate is measured from the first work done, not from the start: a runner that takes 30 s to
start and then does 300 rows/s is reported at 300 rows/s, and its first line says it started late
instead of showing 1 row/s with an ETA of hours.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("embedpipe")


class Progress:
    """Counts work done; shows a bar on a TTY, else logs a line with rate and ETA every ``every_s`` seconds."""

    def __init__(self, total: int | None, desc: str, unit: str = "rows", every_s: float = 10.0):
        self.total, self.desc, self.unit, self.every_s = total, desc, unit, every_s
        self.done = self.logged = 0
        self.started = self.last_line = time.monotonic()
        self.first_at: float | None = None  # when the first work arrived, and how much it was: the rate
        self.first_done = 0                 # is measured from there, so a start-up stall is not a slow rate
        self.bar = None

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def update(self, n: int) -> None:
        if self.first_at is None:
            self.first_at, self.first_done = time.monotonic(), n
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif time.monotonic() - self.last_line >= self.every_s:
            self._log()

    def _log(self, final: bool = False) -> None:
        self.last_line, self.logged = time.monotonic(), self.done
        log.info(self.line(final))

    def rate(self, final: bool = False) -> float | None:
        """Units per second since the first work arrived (start-up excluded); None until a second
        piece of work has arrived, as one piece gives no rate (unless ``final``: then the overall one)."""
        if self.first_at is not None and self.done > self.first_done:
            return (self.done - self.first_done) / max(time.monotonic() - self.first_at, 1e-9)
        return self.done / max(self.seconds, 1e-9) if final else None

    def line(self, final: bool = False) -> str:
        """'rows encoded: 2,048/10,000 rows (20%), 205 rows/s, ETA 39s, 10s elapsed'; before the rate
        can be measured: 'rows encoded: 128/10,000 rows (1%), first rows after 33s (start-up), 33s elapsed'"""
        rate = self.rate(final)
        text = f"{self.desc}: {self.done:,}"
        if self.total:
            text += f"/{self.total:,} {self.unit} ({100 * self.done / self.total:.0f}%)"
        else:
            text += f" {self.unit}"
        if rate is None:
            if self.first_at is not None:
                text += f", first {self.unit} after {_duration(self.first_at - self.started)} (start-up)"
        else:
            text += f", {rate:,.0f} {self.unit}/s"
            if self.total and 0 < self.done < self.total and rate > 0:
                text += f", ETA {_duration((self.total - self.done) / rate)}"
        return f"{text}, {_duration(self.seconds)} elapsed"

    def __enter__(self) -> Progress:
        self.started = self.last_line = time.monotonic()
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc=self.desc, unit=f" {self.unit}", unit_scale=True,
                            file=sys.stderr, dynamic_ncols=True)
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
        elif exc[0] is None and self.logged != self.done:
            self._log(final=True)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
