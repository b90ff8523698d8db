"""Drop Ray's known false alarms from stderr during a Ray session, and nothing else.

Today's runner (ray.py) starts its own actors with ``max_restarts=0`` and replaces dead ones
itself, so the alarm below does not fire; the filter stays as a guard, since any actor given
object-store arguments with Ray-level restarts (as Ray Data's were) brings it back. What it drops:

Every actor Ray Data starts gets its context and UDF as object-store references (Ray Data's own
``ray.put``, whatever embedpipe passes), and Ray's core worker, written in C++, then logs to the
driver's stderr, for each actor with ``max_restarts > 0``::

    [2026-11-30 14:12:58,533 E 20540 20540] core_worker.cc:2465: Actor with class name:
    'MapWorker(MapBatches(CorpusBatchEncoder))' and ID: '...' has constructor arguments in the object
    store and max_restarts > 0. If the arguments in the object store go out of scope or are lost, the
    actor restart will fail. See https://github.com/ray-project/ray/issues/53727 for more details.

(ray-project/ray#57733). A user reads it as a failure; it was not one: Ray Data kept those
references alive for the whole run, so restarts worked. While a Ray session is open, file descriptor
2 goes through a pipe whose reader forwards every byte except lines matching ``KNOWN_NOISE``
exactly. Partial lines are forwarded at once (a progress bar's ``\\r`` updates stay live) unless
they start like a Ray log line (``[``), which waits for its end.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

KNOWN_NOISE = re.compile(
    rb"^\[[^\]]* E \d+ \d+\] core_worker\.cc:\d+: Actor with class name: '[^']*' and ID: '[0-9a-f]+' "
    rb"has constructor arguments in the object store and max_restarts > 0\. .*ray-project/ray/issues/53727.*$"
    # When a run stops (an error, SIGTERM), Ray Data kills its actors with ray.kill while calls are
    # queued on them; the raylet then reports each such call as "will be retried". It will not be.
    rb"|^(\x1b\[\d+m)?\(raylet\)(\x1b\[0m)? Task MapWorker\(MapBatches\(CorpusBatchEncoder\)\)\.submit failed\. "
    rb"There are \d+ retries remaining, so the task will be retried\. Error: The actor is dead because it was "
    rb"killed by `ray\.kill`\.?$")
MAX_HELD = 1 << 16  # a partial line held back longer than this is forwarded as it is


@contextmanager
def without_known_noise(pattern: re.Pattern = KNOWN_NOISE) -> Iterator[None]:
    """For the block, drop whole stderr lines (of this process and of C++ code in it) matching ``pattern``."""
    try:
        sys.stderr.flush()
        original = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to filter
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    pump = threading.Thread(target=_forward, args=(read_end, original, pattern), daemon=True,
                            name="embedpipe-stderr-filter")
    pump.start()
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(original, 2)  # the pipe's last writer (unless a child process kept a copy) closes: EOF
        pump.join(timeout=2)
        if not pump.is_alive():
            os.close(original)


def _forward(read_end: int, out: int, pattern: re.Pattern) -> None:
    held = b""
    with open(read_end, "rb", buffering=0) as pipe:
        while chunk := pipe.read(8192):
            *lines, held = (held + chunk).split(b"\n")
            text = b"".join(line + b"\n" for line in lines if not pattern.match(line))
            if held and (not held.startswith(b"[") or len(held) > MAX_HELD):
                text, held = text + held, b""
            _write_all(out, text)
    _write_all(out, held)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(fd, data):]
        except OSError:  # the terminal went away: nothing left to show it on
            return
