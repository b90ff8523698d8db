"""Progress for long loops: a tqdm bar (rate, ETA) when stderr is a terminal, plain log lines otherwise.

    >>> with Progress(1_000_000, "vectors added") as progress:
    ...     progress.update(65_536)
    >>> progress.done, progress.line().split(" (")[0]
    (65536, 'vectors added: 65,536/1,000,000 rows')
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
        self.bar = None

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif time.monotonic() - self.last_line >= self.every_s:
            self._log()

    def _log(self) -> None:
        self.last_line, self.logged = time.monotonic(), self.done
        log.info(self.line())

    def line(self) -> str:
        """'rows encoded: 2,048/10,000 rows (20%), 205 rows/s, ETA 39s, 10s elapsed'"""
        rate = self.done / max(self.seconds, 1e-9)
        text = f"{self.desc}: {self.done:,}"
        if self.total:
            text += f"/{self.total:,} {self.unit} ({100 * self.done / self.total:.0f}%)"
        else:
            text += f" {self.unit}"
        text += f", {rate:,.0f} {self.unit}/s"
        if self.total and 0 < self.done < self.total:
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
            self._log()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
