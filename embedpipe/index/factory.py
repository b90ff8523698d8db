"""A FAISS factory string -> an empty index set up for its build, and the FAISS calls around it
(metric names, threads, training, what kind of index a factory made).

    >>> index = make_index("HNSW16", 8, "ip")
    >>> prepare_auto_index(index); hnsw_graph(index).hnsw.efConstruction
    80
    >>> nlist_of(make_index("IVF64,Flat", 8, "l2")), is_exact(make_index("Flat", 8, "ip"))
    (64, True)

This is the bottom of index/: choosing, measuring, building and appending all make and train
indexes through here, and it imports nothing else of index/.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import faiss
import numpy as np

from .. import checks
from ..errors import EmbedpipeError

log = logging.getLogger("embedpipe.index")

# metric names as index.json and IndexConfig spell them (formats/index_dir.METRICS) -> FAISS's constants
FAISS_METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}
OPQ_ITERATIONS = 10
HNSW_EF_CONSTRUCTION = 80  # FAISS's default is 40; a better graph for hard (keyword-like) queries


def faiss_metric(metric: str) -> int:
    """'ip' -> faiss.METRIC_INNER_PRODUCT, 'l2' -> faiss.METRIC_L2; an error naming the others."""
    if metric not in FAISS_METRICS:
        raise EmbedpipeError(f"unknown metric {metric!r}; choose one of {', '.join(FAISS_METRICS)}")
    return FAISS_METRICS[metric]


@contextmanager
def faiss_threads(threads: int | None) -> Iterator[None]:
    """FAISS (OpenMP) threads for the block: training, adding and searching; None = FAISS's default
    (all cores). Restored afterwards, so a library caller's setting survives."""
    checks.at_least("threads", threads, 1, optional=True)
    before = faiss.omp_get_max_threads()
    if threads is not None:
        faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _faiss_reason(error: RuntimeError) -> str:
    """FAISS errors end with 'Error in <function> at <file>: <reason>'; keep the reason."""
    text = str(error).strip()
    return text.splitlines()[-1].split(": ", 1)[-1] if text else "rejected"


def make_index(factory: str, dim: int, metric: str) -> faiss.Index:
    """An empty FAISS index, or an EmbedpipeError naming the factory string FAISS cannot parse."""
    try:
        return faiss.index_factory(dim, factory, faiss_metric(metric))
    except RuntimeError as e:
        reason = _faiss_reason(e)
        raise EmbedpipeError(f"FAISS cannot build index {factory!r} for dimension {dim}: {reason}") from None


def train_index(index: faiss.Index, factory: str, train: np.ndarray) -> None:
    """Train ``index`` on ``train``; FAISS's refusal (too few points for its centroids, ...) becomes
    one EmbedpipeError naming the factory."""
    started = time.monotonic()
    log.info("training %s on %d vectors", factory, len(train))
    try:
        index.train(train)
    except RuntimeError as e:
        reason = _faiss_reason(e)
        raise EmbedpipeError(f"training {factory} on {len(train)} vectors failed: {reason}") from None
    log.info("trained in %.1fs", time.monotonic() - started)


def shorten_opq_training(index: faiss.Index, iterations: int = OPQ_ITERATIONS) -> None:
    """Fewer OPQ rotation iterations than FAISS's 50: most of the gain comes early, and 50 cost
    minutes per 30k training vectors on 2 cores. Applied to auto-chosen factories only."""
    if isinstance(index, faiss.IndexPreTransform):
        for i in range(index.chain.size()):
            transform = faiss.downcast_VectorTransform(index.chain.at(i))
            if isinstance(transform, faiss.OPQMatrix):
                transform.niter = iterations


def hnsw_graph(index: faiss.Index) -> faiss.IndexHNSW | None:
    """The HNSW index that holds the vectors' graph, behind any transform (``PCA64,HNSW32``), if
    there is one; not an IVF's HNSW quantizer (that graph holds centroids)."""
    inner = faiss.downcast_index(index)
    while isinstance(inner, faiss.IndexPreTransform):
        inner = faiss.downcast_index(inner.index)
    return inner if isinstance(inner, faiss.IndexHNSW) else None


def prepare_auto_index(index: faiss.Index, ef_construction: int | None = None) -> None:
    """What `auto` sets on the index it chose before training: fewer OPQ iterations, and a wider
    HNSW construction search (``ef_construction``, by default HNSW_EF_CONSTRUCTION)."""
    shorten_opq_training(index)
    graph = hnsw_graph(index)
    if graph is not None:
        graph.hnsw.efConstruction = ef_construction or HNSW_EF_CONSTRUCTION


def set_ef_construction(index: faiss.Index, factory: str, ef_construction: int) -> None:
    """efConstruction for the graph of a factory given by name; an error when it builds no HNSW graph."""
    graph = hnsw_graph(index)
    if graph is None:
        raise EmbedpipeError(f"ef_construction applies to HNSW indexes; {factory!r} builds no HNSW graph",
                             fields=("ef_construction",))
    graph.hnsw.efConstruction = ef_construction


def ivf_of(index: faiss.Index) -> faiss.IndexIVF | None:
    """The inverted-file part of ``index`` (behind any OPQ or refine wrapper), None when it has none."""
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def nlist_of(index: faiss.Index) -> int | None:
    """How many IVF cells ``index`` has; None when it is not an IVF index."""
    ivf = ivf_of(index)
    return None if ivf is None else ivf.nlist


def is_exact(index: faiss.Index) -> bool:
    """Whether ``index`` searches exactly (a flat index: nothing to train or tune)."""
    return isinstance(faiss.downcast_index(index), faiss.IndexFlat)
