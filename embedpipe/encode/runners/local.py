"""In-process runner: one encoder, corpus windows in order.

    >>> for table in run_local(corpus, config, window=8192): ...    # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from ...formats.corpus import Corpus
from ..mapper import CorpusBatchEncoder, MapperConfig


def run_local(corpus: Corpus, config: MapperConfig, *, window: int,
              skip_ids: pa.Array | None = None) -> Iterator[pa.Table]:
    mapper = CorpusBatchEncoder(config, skip_ids)
    for batch in corpus.iter_batches(window):
        yield mapper(batch)
