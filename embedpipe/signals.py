"""SIGTERM handled like Ctrl-C: the signal Kubernetes, Ray, cron and ``timeout`` send becomes an
exception, so every ``with`` block and ``except BaseException`` on the way up runs (finished shards
are kept, locks released, an embedded Ray shut down) and the CLI prints one line and exits 128 + N.

    >>> with stop_on_signals():           # doctest: +SKIP
    ...     encode_corpus(job)            # a SIGTERM here raises Interrupted(signal.SIGTERM)

``Interrupted`` subclasses ``KeyboardInterrupt``: code that already cleans up after Ctrl-C cleans up
after SIGTERM the same way, and ``except Exception`` never swallows either. Only the first signal
raises; more of them while the run cleans up are ignored (cleanup is short and bounded; SIGKILL
still ends it at once).

A handler runs only when the main thread returns to Python: a run blocked in native code (an
object-store call that never returns) would ignore the signal. With ``grace_s``, a watchdog thread
hears the signal through Python's wakeup fd and, when the run has not stopped ``grace_s`` seconds
later, prints the same line and exits 128 + N at once (what a resumable run survives, like a kill).

Ray's ``ray.init`` installs SIGTERM handlers of its own (exit without cleanup, or kill the node and
exit 1): whoever calls it puts the handler back with ``keep_handler_across``.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HANDLED = (signal.SIGTERM, signal.SIGINT)
STOP_GRACE_ENV = "EMBEDPIPE_STOP_GRACE_S"   # seconds a stopped run may clean up before it exits anyway
DEFAULT_STOP_GRACE_S = 30.0


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
def stop_on_signals(grace_s: float | None = None) -> Iterator[None]:
    """For the length of the block (main thread only; elsewhere a no-op), SIGTERM and SIGINT raise
    ``Interrupted`` once; the handlers in place before are restored after. A handler someone else
    installed (not Python's defaults) is left alone: it is theirs. ``grace_s`` (the outermost
    block's): exit anyway when the run is still going that long after the signal."""
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
    watchdog = _Watchdog(grace_s) if grace_s and _depth == 0 else None
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if watchdog is not None:
            watchdog.stop()
        for signum, old in previous.items():
            signal.signal(signum, old)


class _Watchdog:
    """Hears a handled signal on Python's wakeup fd (written by the C-level handler even while the
    main thread is blocked in native code) and ends the process when the run has not stopped
    ``grace_s`` seconds later. Not started when another wakeup fd is in place (an event loop's)."""

    def __init__(self, grace_s: float):
        self.grace_s, self.done = grace_s, threading.Event()
        self.reader, self.writer = socket.socketpair()
        self.writer.setblocking(False)
        self.previous = signal.set_wakeup_fd(self.writer.fileno(), warn_on_full_buffer=False)
        if self.previous != -1:   # someone else's: theirs to keep
            signal.set_wakeup_fd(self.previous)
            self.thread = None
            return
        self.thread = threading.Thread(target=self._watch, name="embedpipe-stop-watchdog", daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while data := self.reader.recv(1):
            if data[0] in HANDLED:
                if not self.done.wait(self.grace_s):
                    stop = Interrupted(data[0], f"the run had not stopped {self.grace_s:g} s later (blocked in a "
                                                "call that cannot be interrupted, such as an object store that does "
                                                "not answer): exited at once; finished shards are kept for a rerun")
                    os.write(2, f"Error: {stop}\n".encode())
                    os._exit(stop.exit_code)
                return

    def stop(self) -> None:
        self.done.set()
        if self.thread is not None:
            signal.set_wakeup_fd(-1)
            self.reader.shutdown(socket.SHUT_RDWR)   # wakes the watching thread's recv
            self.thread.join(timeout=5)
        self.reader.close()
        self.writer.close()


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
