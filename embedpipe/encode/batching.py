"""How token id lists become onnxruntime calls: sorted by length and cut into batches under a row
and a token budget (each batch is then padded by model/feeds.py's ``pack``).

    >>> lengths = np.array([3, 2])
    >>> [rows.tolist() for rows in batches(np.array([0, 1]), lengths, BatchPlan(batch_size=8))]
    [[0], [1]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import checks


@dataclass(frozen=True)
class BatchPlan:
    """How texts are packed into onnxruntime calls."""

    batch_size: int = 128          # at most this many texts per call
    token_budget: int = 16_384     # at most this many (padded) tokens per call
    threads: int | None = None     # onnxruntime intra-op threads (= the CPUs this worker owns); None = all
    max_padding: float = 0.0       # a batch takes no row shorter than (1 - this) x its longest: 0 = no padding
    inflight: int | None = None    # onnxruntime calls in flight at once (encode/inflight.py); None = by threads

    def __post_init__(self):
        checks.at_least("batch_size", self.batch_size, 1)
        checks.at_least("token_budget", self.token_budget, 1)
        checks.at_least("threads", self.threads, 1, optional=True)
        checks.number_in("max_padding", self.max_padding, 0.0, 1.0)
        checks.at_least("inflight", self.inflight, 1, optional=True)


def batches(order: np.ndarray, lengths: np.ndarray, plan: BatchPlan):
    """Rows in ``order`` (longest first) cut into batches: each holds as many rows as fit the row
    and token budgets, all of one length by default (``plan.max_padding``): short texts differ by a
    token or two, so a batch of 128 mixed lengths is ~10% padding; one length per batch costs a few
    more, smaller calls."""
    ordered = lengths[order]
    start = 0
    while start < len(order):
        longest = int(ordered[start])
        end = start + max(1, min(plan.batch_size, plan.token_budget // max(longest, 1)))
        shortest_allowed = longest * (1 - plan.max_padding)
        end = start + max(1, int(np.searchsorted(-ordered[start:end], -shortest_allowed, side="right")))
        yield order[start:end]
        start = end
