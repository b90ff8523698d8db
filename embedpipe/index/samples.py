"""A vector directory + IndexConfig -> the tuning queries and the training sample a build needs,
drawn in one streaming pass and never overlapping.

    >>> samples = draw_samples(open_vectors("corpus.vectors"), index, IndexConfig())   # doctest: +SKIP
    >>> len(samples.queries), len(samples.train)                                       # doctest: +SKIP
    (1000, 30000)

The tuning queries are held-out corpus vectors by default, or sample queries the config names
(``tuning_vectors``: a vector directory, or a queries parquet encoded here as the corpus was).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa

from ..errors import EmbedpipeError
from ..formats.beir import read_queries
from ..formats.vectors import VectorSet, differences, identity_of, open_vectors
from .choose import ivf_centroids, training_rows
from .config import IndexConfig
from .factory import nlist_of
from .source import check_row_count

log = logging.getLogger("embedpipe.index")


@dataclass
class Samples:
    query_rows: np.ndarray       # held-out tuning queries: row positions in the vector directory
    query_ids: list
    queries: np.ndarray
    train: np.ndarray | None     # training vectors, never overlapping the queries


def gather_rows(vectors: VectorSet, rows: np.ndarray, batch_rows: int) -> tuple[list, np.ndarray]:
    """(ids, vectors) at the given row positions, in the order given, in one streaming pass."""
    order = np.argsort(rows)
    sorted_rows = rows[order]
    out = np.empty((len(rows), vectors.dim), dtype=np.float32)
    ids: list = [None] * len(rows)
    start = 0
    for batch_ids, batch in vectors.iter_batches(batch_rows):
        lo, hi = np.searchsorted(sorted_rows, [start, start + len(batch)])
        local = sorted_rows[lo:hi] - start
        out[order[lo:hi]] = batch[local]
        for position, doc_id in zip(order[lo:hi], batch_ids.take(pa.array(local)).to_pylist()):
            ids[position] = doc_id
        start += len(batch)
    check_row_count(vectors, start)
    return ids, out


def draw_samples(vectors: VectorSet, index: faiss.Index | None, config: IndexConfig, sample_rows: int = 0) -> Samples:
    """Held-out tuning queries and a training sample for ``index`` (for an index still to be chosen,
    None: at least ``sample_rows`` vectors, and enough to train any IVF at this scale)."""
    n, rng = vectors.rows, np.random.default_rng(config.seed)
    external = tuning_vectors(config, vectors, rng) if config.tuning_vectors else None
    n_queries = 0 if external is not None else min(config.tuning_queries, max(n // 10, 1))
    if index is None:
        n_train = min(max(training_rows(n, ivf_centroids(n)), sample_rows), n - n_queries)
    else:
        n_train = 0 if index.is_trained else min(training_rows(n, nlist_of(index)), n - n_queries)
    rows = rng.choice(n, size=n_queries + n_train, replace=False)
    ids, picked = gather_rows(vectors, rows, config.add_batch_rows)
    queries = external if external is not None else picked[:n_queries]
    log.info("tuning on %d %s, training on %d vectors", len(queries),
             "query vectors" if external is not None else "held-out corpus vectors", n_train)
    return Samples(rows[:n_queries], ids[:n_queries], queries, picked[n_queries:] if n_train else None)


def _encoder_of(manifest: dict) -> dict:
    """What makes two vector sets comparable: the encoder identity, less the prompts (queries are
    meant to be encoded with the query prompt, documents with the document prompt)."""
    return {k: v for k, v in identity_of(manifest).items() if "prompt" not in k}


def tuning_vectors(config: IndexConfig, vectors: VectorSet, rng: np.random.Generator) -> np.ndarray:
    """Sample query vectors to tune on: a vector directory, or a queries parquet (id, text) that is
    encoded here exactly as the corpus was (model, pooling, normalization from its manifest), with the
    query prompt the manifest recorded (or the config's tuning prompt)."""
    path = Path(config.tuning_vectors)
    if path.is_file():
        from ..encode.encoder import TextEncoder  # here: onnxruntime and tokenizers load only for texts

        _, texts = read_queries(path)
        if len(texts) > config.tuning_queries:
            texts = [texts[i] for i in np.sort(rng.choice(len(texts), config.tuning_queries, replace=False))]
        if not texts:
            raise EmbedpipeError(f"tuning queries {path} hold no rows; recall cannot be measured on none")
        log.info("encoding %d tuning queries from %s", len(texts), path)
        return TextEncoder.from_manifest(vectors.manifest, query=True, prompt_name=config.tuning_prompt_name,
                                         prompt=config.tuning_prompt, device=config.tuning_device).encode(texts)
    tuning = open_vectors(path)
    if tuning.dim != vectors.dim:
        raise EmbedpipeError(f"tuning vectors {tuning.path} have dimension {tuning.dim}, the corpus {vectors.dim}")
    changed = differences(_encoder_of(vectors.manifest), _encoder_of(tuning.manifest))
    if changed:   # same width, another space: recall measured there says nothing of these vectors
        raise EmbedpipeError(f"tuning vectors {tuning.path} were encoded by another encoder than {vectors.path} "
                             f"({changed}); encode the queries with the corpus's model and pooling")
    _, queries = tuning.read_all()
    if len(queries) > config.tuning_queries:
        queries = queries[np.sort(rng.choice(len(queries), config.tuning_queries, replace=False))]
    if not len(queries):
        raise EmbedpipeError(f"tuning vectors {tuning.path} hold no vectors")
    return queries
