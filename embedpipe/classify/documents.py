"""Document vectors from chunks, for ``classify --chunk-tokens``: does reading the whole document help?

Each text is cut into windows (encode/chunking.py) and every window encoded in one pass, for every
pooling asked (at the last layer). Two vectors per document and pooling join the probes:

    POOLING+chunks   the mean of its chunk vectors (L2-normalized again when the job normalizes)
    POOLING+first    its first chunk alone: the truncation baseline at the same window size

beside the plain POOLING rows (each text truncated at max_length, as always).

    >>> got = document_vectors(cache, spec, part, [("mean", 6)], chunk_tokens=128, overlap=16)  # doctest: +SKIP
    >>> sorted(got)                                                                             # doctest: +SKIP
    [('mean+chunks', 6), ('mean+first', 6)]
"""

from __future__ import annotations

import numpy as np

from ..encode.chunking import Chunker
from ..encode.encoder import EncoderSpec
from ..encode.pooling import l2_normalize
from ..progress import Progress
from .data import Part

CHUNKS, FIRST = "+chunks", "+first"


def from_chunks(pooling: str) -> bool:
    """Whether a report row's pooling names document vectors made from chunks."""
    return pooling.endswith((CHUNKS, FIRST))


def document_pairs(pairs: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The (pooling, layer) names the document vectors of ``pairs`` get in the report."""
    return [(pooling + suffix, layer) for pooling, layer in pairs for suffix in (CHUNKS, FIRST)]


def document_vectors(cache, spec: EncoderSpec, part: Part, pairs: list[tuple[str, int]], chunk_tokens: int,
                     overlap: int) -> dict[tuple[str, int], np.ndarray]:
    """{(POOLING+chunks | POOLING+first, layer): (documents, dim)} for ``part``'s texts; ``cache`` (a
    FeatureCache) lends its encoder. Not cached: chunk vectors are encoded anew each run."""
    encoder = cache.multi_encoder(spec, [layer for _, layer in pairs])
    chunker = Chunker(encoder.cut.full, chunk_tokens, overlap, encoder.max_length, encoder.prompt)
    texts = part.texts
    spans = chunker.spans_of(texts)
    counts = np.array([len(s) for s in spans], dtype=np.int64)
    chunk_texts = [text[a:b] for text, doc in zip(texts, spans) for a, b in doc]
    firsts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    with Progress(len(chunk_texts), f"chunks of {len(texts)} documents encoded") as progress:
        vectors, _ = encoder.encode_many(chunk_texts, pairs)
        progress.update(len(chunk_texts))
    out = {}
    for (pooling, layer), chunk_vectors in vectors.items():
        means = np.add.reduceat(chunk_vectors, firsts, axis=0) / counts[:, None]
        out[(pooling + CHUNKS, layer)] = l2_normalize(means) if spec.normalize else means.astype(np.float32)
        out[(pooling + FIRST, layer)] = chunk_vectors[firsts]
    return out
