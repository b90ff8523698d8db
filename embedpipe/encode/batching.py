"""How token id lists become onnxruntime calls: sorted by length, packed under a row and a token
budget, padded with numpy (no Python loop over tokens).

    >>> flat, starts, lengths = flatten([[101, 7, 102], [101, 102]])
    >>> pack(flat, starts, lengths, pad_id=0)["input_ids"].tolist()
    [[101, 7, 102], [101, 102, 0]]
    >>> [rows.tolist() for rows in batches(np.array([0, 1]), lengths, BatchPlan(batch_size=8))]
    [[0], [1]]
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np

from .. import checks


@dataclass(frozen=True)
class BatchPlan:
    """How texts are packed into onnxruntime calls."""

    batch_size: int = 128          # at most this many texts per call
    token_budget: int = 16_384     # at most this many (padded) tokens per call
    threads: int | None = None     # onnxruntime intra-op threads (= the CPUs this worker owns); None = all
    max_padding: float = 0.0       # a batch takes no row shorter than (1 - this) x its longest: 0 = no padding

    def __post_init__(self):
        checks.at_least("batch_size", self.batch_size, 1)
        checks.at_least("token_budget", self.token_budget, 1)
        checks.at_least("threads", self.threads, 1, optional=True)
        checks.number_in("max_padding", self.max_padding, 0.0, 1.0)


def flatten(token_ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token id lists -> (all ids in one int64 array, each row's start, each row's length)."""
    lengths = np.fromiter(map(len, token_ids), dtype=np.int64, count=len(token_ids))
    flat = np.fromiter(chain.from_iterable(token_ids), dtype=np.int64, count=int(lengths.sum()))
    return flat, np.cumsum(lengths) - lengths, lengths


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


def pack(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray, pad_id: int,
         token_types: bool = False, position_ids: bool = False) -> dict[str, np.ndarray]:
    """Rows of a flat token array -> right-padded (B, longest) input_ids and attention_mask (and
    all-zero token_type_ids, and position_ids 0, 1, 2, ... over the real tokens, when the graph takes
    them: decoder exports do). Right padding is exact for decoders too: a causal model's real tokens
    never attend to the padding after them."""
    columns = np.arange(int(lengths.max()))
    mask = columns[None, :] < lengths[:, None]
    positions = np.minimum(starts[:, None] + columns[None, :], len(flat) - 1)
    input_ids = np.where(mask, flat[positions], pad_id)
    feeds = {"input_ids": input_ids, "attention_mask": mask.astype(np.int64)}
    if token_types:
        feeds["token_type_ids"] = np.zeros_like(input_ids)
    if position_ids:
        feeds["position_ids"] = np.maximum(np.cumsum(feeds["attention_mask"], axis=1) - 1, 0)
    return feeds
