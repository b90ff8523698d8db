"""The stderr filter of the Ray runner drops Ray's two known false alarms, whole lines only, and
forwards everything else as it comes (C++ writes to fd 2 included)."""

import os
import sys

from embedpipe.encode.runners.ray_noise import without_known_noise

CONSTRUCTOR = (b"[2026-11-30 14:12:58,533 E 20540 20540] core_worker.cc:2465: Actor with class name: "
               b"'MapWorker(MapBatches(CorpusBatchEncoder))' and ID: 'aa7c6f370d6b596056d4911201000000' has "
               b"constructor arguments in the object store and max_restarts > 0. If the arguments in the object "
               b"store go out of scope or are lost, the actor restart will fail. See "
               b"https://github.com/ray-project/ray/issues/53727 for more details.\n")
KILLED = (b"\x1b[33m(raylet)\x1b[0m Task MapWorker(MapBatches(CorpusBatchEncoder)).submit failed. There are 3 "
          b"retries remaining, so the task will be retried. Error: The actor is dead because it was killed by "
          b"`ray.kill`.\n")
REAL_ERRORS = [b"[2026-11-30 14:13:00,001 E 20540 20540] core_worker.cc:999: Something else broke.\n",
               b"\x1b[33m(raylet)\x1b[0m Task MapWorker(MapBatches(CorpusBatchEncoder)).submit failed. There are 0 "
               b"retries remaining. Error: The actor died unexpectedly (OOM).\n",
               b"Error: a line of embedpipe's own\n"]


def test_only_the_known_lines_are_dropped(capfd):
    with without_known_noise():
        os.write(2, CONSTRUCTOR[:50])                    # a line arriving in pieces is judged whole
        os.write(2, CONSTRUCTOR[50:] + REAL_ERRORS[0])
        os.write(2, KILLED)
        for line in REAL_ERRORS[1:]:
            os.write(2, line)
        print("from Python", file=sys.stderr, flush=True)
        os.write(2, b"\rprogress 50%")                   # a progress bar's partial line is not held back
    err = capfd.readouterr().err.encode()
    assert CONSTRUCTOR.strip() not in err and KILLED.strip() not in err
    for line in REAL_ERRORS:
        assert line in err
    # capfd hands Python's sys.stderr its own file, so that line is not ordered with the fd-2 writes
    assert b"from Python" in err and err.endswith(b"\rprogress 50%")


def test_stderr_is_restored_afterwards(capfd):
    with without_known_noise():
        pass
    os.write(2, CONSTRUCTOR)
    assert capfd.readouterr().err.encode() == CONSTRUCTOR
