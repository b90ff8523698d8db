"""SIGTERM handled like Ctrl-C: the signal Kubernetes, Ray, cron and ``timeout`` send becomes an
exception, so every ``with`` block and ``except BaseException`` on the way up runs (finished shards
are kept, locks released, an embedded Ray shut down) and the CLI prints one line and exits 128 + N.

    >>> with stop_on_signals():           # doctest: +SKIP
    ...     encode_corpus(job)            # a SIGTERM here raises Interrupted(signal.SIGTERM)

``Interrupted`` subclasses ``KeyboardInterrupt``: code that already cleans up after Ctrl-C cleans up
after SIGTERM the same way, and ``except Exception`` never swallows either. Only the first signal
raises; more of them while the run cleans up are ignored (cleanup is short and bounded; SIGKILL
still ends it at once).

Ray's ``ray.init`` installs SIGTERM handlers of its own (exit without cleanup, or kill the node and
exit 1): whoever calls it puts the handler back with ``keep_handler_across``.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HANDLED = (signal.SIGTERM, signal.SIGINT)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; ``detail`` says what was kept (filled in on the way up)."""

    def __init__(self, signum: int, detail: str = ""):
        super().__init__(signum, detail)
        self.signum, self.detail = signum, detail

    @property
    def exit_code(self) -> int:
        """What a shell reports for a process killed by this signal: 128 + N (143 for SIGTERM)."""
        return 128 + self.signum

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        return f"stopped by {name}" + (f"; {self.detail}" if self.detail else "")


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """For the length of the block (main thread only; elsewhere a no-op), SIGTERM and SIGINT raise
    ``Interrupted`` once; the handlers in place before are restored after. A handler someone else
    installed (not Python's defaults) is left alone: it is theirs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    global _depth, _received
    previous = {signum: signal.getsignal(signum) for signum in HANDLED}
    if _depth == 0:
        _received = None

    def handler(signum, frame):
        global _received
        if _received is not None:
            return
        _received = signum
        raise Interrupted(signum)

    handler.embedpipe = True
    for signum, old in previous.items():
        if old in (signal.SIG_DFL, signal.default_int_handler) or getattr(old, "embedpipe", False):
            signal.signal(signum, handler)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        for signum, old in previous.items():
            signal.signal(signum, old)


_depth = 0                   # stop_on_signals blocks open (the CLI's and the library's nest)
_received: int | None = None  # the signal received since the outermost block opened


def signal_received() -> int | None:
    """The signal that stopped the current (or last) run, if one came: whatever exception then
    surfaces (a library may wrap the KeyboardInterrupt in its own error), the run was stopped by it."""
    return _received


@contextmanager
def keep_handler_across() -> Iterator[None]:
    """Run the block (``ray.init``), then put back the SIGTERM and SIGINT handlers that were in place
    before it, where the block replaced them (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in HANDLED}
    try:
        yield
    finally:
        for signum, old in previous.items():
            if old is not None and signal.getsignal(signum) is not old:
                signal.signal(signum, old)
