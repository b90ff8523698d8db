"""Several onnxruntime calls in flight on one session: batches in, results out in input order.

    >>> with InFlight(2) as calls:
    ...     list(calls.map(lambda x: x * x, range(5)))
    [0, 1, 4, 9, 16]

One onnxruntime session runs concurrent ``run`` calls safely and releases the GIL while it computes,
so a worker with T cores can keep N calls going, each on its own thread, instead of one call that
spreads each operator over T threads. Many operators of a small encoder (LayerNorm, Softmax, GELU,
Transpose, the small MatMuls of short texts) are too short to split well over threads; N whole calls
keep every core busy through them, and the pooling and vector copy of one batch (numpy, in the same
worker thread) overlap with the next batch's inference. The session itself is shared, so memory
grows only by the activations of the extra calls in flight, not by another copy of the weights.

Measured on 2 cores (docs/performance.md, "Calls in flight"): ``default_calls`` is what won there.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_CALLS = 2   # calls in flight by default: more than two gained nothing measured (docs/performance.md)


def default_calls(threads: int) -> int:
    """Calls in flight for a worker with ``threads`` cores: one per core up to ``MAX_CALLS``.

        >>> [default_calls(t) for t in (1, 2, 8)]
        [1, 2, 2]
    """
    return max(1, min(threads, MAX_CALLS))


def intra_op_threads(threads: int, calls: int) -> int:
    """onnxruntime intra-op threads for a session that runs ``calls`` calls at once on ``threads`` cores.

    onnxruntime's intra-op pool has ``intra_op_num_threads - 1`` threads of its own and the thread that
    calls ``run`` works too, so ``calls`` callers plus ``threads - calls`` pool threads fill the cores
    without oversubscribing them.

        >>> intra_op_threads(2, 2), intra_op_threads(4, 2), intra_op_threads(4, 1), intra_op_threads(1, 2)
        (1, 3, 4, 1)
    """
    return max(1, threads - calls + 1)


class InFlight:
    """Up to ``calls`` applications of a function running at once on worker threads, results in
    input order; ``calls=1`` runs them in the caller's thread, as a plain loop would."""

    def __init__(self, calls: int):
        if not isinstance(calls, int) or isinstance(calls, bool) or calls < 1:
            raise ValueError(f"calls in flight must be an integer >= 1, got {calls!r}")
        self.calls = calls
        self._pool = ThreadPoolExecutor(calls, thread_name_prefix="embedpipe-call") if calls > 1 else None

    def map(self, function: Callable[[Item], Result], items: Iterable[Item]) -> Iterator[Result]:
        """``function`` over ``items``: each result once, in the order of ``items``; at most ``calls``
        running at a time (the next one starts as the oldest is taken). The first call that raises
        raises here, in order; the calls still in flight are waited for (never left running on a
        session that its owner may close) and those not started are cancelled. So is everything when
        the caller stops early (a signal, an error of its own, a generator closed)."""
        if self._pool is None:
            yield from map(function, items)
            return
        pending: deque[Future] = deque()
        try:
            for item in items:
                if len(pending) < self.calls:
                    pending.append(self._pool.submit(function, item))
                    continue
                oldest = pending.popleft().result()
                pending.append(self._pool.submit(function, item))   # started before the caller takes the result
                yield oldest
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
            wait(pending)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> InFlight:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
