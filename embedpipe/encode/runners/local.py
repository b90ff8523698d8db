"""In-process runner: one encoder, the pieces in order, each written as its shard by this process.

    >>> for receipt in run_local(corpus, config, pieces, staging, window=8192): ...    # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pyarrow as pa

from ...formats.corpus import Corpus
from ..pieces import Piece, ShardWriter, new_attempt
from ..rows import WorkerConfig


def run_local(corpus: Corpus, config: WorkerConfig, pieces: list[Piece], staging: str, *, window: int,
              known_ids: pa.Array | None = None, dtype: str = "float32",
              on_rows: Callable[[int], None] | None = None) -> Iterator[dict]:
    """Yield each piece's receipt; ``on_rows`` hears of every window encoded, so progress moves
    within a piece (a piece is a whole shard, 100,000 rows by default: minutes on one machine)."""
    if not pieces:
        return
    encoder = ShardWriter(config, corpus, staging, dtype=dtype, window=window)
    for piece in pieces:
        yield encoder.encode(piece, new_attempt(), known_ids, on_rows)
