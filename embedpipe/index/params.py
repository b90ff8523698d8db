"""Exact neighbours, recall@k, and tuning an index's search parameter to a target recall.

    >>> exact = ExactTopK(queries, k=10, metric="ip")  # doctest: +SKIP
    >>> for start, chunk in chunks: exact.add(chunk, start)  # doctest: +SKIP
    >>> truth = exact.result()[1]  # doctest: +SKIP
    >>> tune_search_params(index, queries, truth, target=0.95, margin=0.01)  # doctest: +SKIP
    Tuning(params='efSearch=48', recall=0.962, reached=True, trials={16: 0.81, 32: 0.93, 48: 0.962, ...}, aim=0.96)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faiss
import numpy as np

from ..errors import EmbedpipeError
from .factory import faiss_metric, hnsw_graph, ivf_of

RECALL_K = 10  # the k of the recall index.json records (recall_at_10), measured by build and append
NPROBE_GRID = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024,
               1536, 2048, 3072, 4096, 6144, 8192, 12288, 16384, 32768, 65536]
# An index with an exact refine (`...,RFlat`) re-ranks this many times k candidates by their full
# vectors: 4-bit fast-scan codes order neighbours roughly, and 8k exact distances per query are cheap.
REFINE_K_FACTOR = 8
EF_SEARCH_GRID = [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 4096]


class ExactTopK:
    """Exact top-k of fixed queries over a corpus that arrives in chunks (memory: one chunk)."""

    def __init__(self, queries: np.ndarray, k: int, metric: str):
        self.queries, self.k, self.metric = np.ascontiguousarray(queries, dtype=np.float32), k, metric
        self.heap = faiss.ResultHeap(len(queries), k, keep_max=(metric == "ip"))

    def add(self, chunk: np.ndarray, first_row: int) -> None:
        k = min(self.k, len(chunk))
        distances, rows = faiss.knn(self.queries, np.ascontiguousarray(chunk), k, metric=faiss_metric(self.metric))
        if k < self.k:  # a short last chunk: pad so the heap sees k columns
            pad = ((0, 0), (0, self.k - k))
            worst = -np.inf if self.metric == "ip" else np.inf
            distances = np.pad(distances, pad, constant_values=worst)
            rows = np.pad(rows, pad, constant_values=-1)
        self.heap.add_result(distances, np.where(rows >= 0, rows + first_row, -1))

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(distances, rows), best first; rows are -1 where the corpus had fewer than k vectors."""
        self.heap.finalize()
        return self.heap.D, self.heap.I


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each query's exact top-k that the index also returned in its top-k.

    >>> recall_at_k(np.array([[1, 2, 9]]), np.array([[1, 2, 3]]))
    0.666...
    """
    hits = [len(set(f[f >= 0]) & set(t[t >= 0])) / int((t >= 0).sum()) for f, t in zip(found, truth) if (t >= 0).any()]
    if not hits:   # a figure from no queries would read as perfect recall
        raise EmbedpipeError("recall cannot be measured: no tuning query has a neighbour to find")
    return float(np.mean(hits))


@dataclass
class Tuning:
    params: str                      # FAISS ParameterSpace string, "" when nothing can be tuned
    recall: float                    # recall@k at those parameters on the tuning queries
    reached: bool                    # whether recall >= the target
    trials: dict = field(default_factory=dict)  # parameter value -> recall, for every value tried
    aim: float | None = None         # the recall the tuner aimed for: the target plus the margin


def tunable_parameter(index: faiss.Index) -> tuple[str, list[int]] | None:
    """('nprobe', grid) for IVF indexes, ('efSearch', grid) for HNSW, None when there is no knob."""
    ivf = ivf_of(index)
    if ivf is not None:
        return "nprobe", [p for p in NPROBE_GRID if p < ivf.nlist] + [ivf.nlist]
    if hnsw_graph(index) is not None:
        return "efSearch", EF_SEARCH_GRID
    return None


def parameter_string(index: faiss.Index, name: str, value: int) -> str:
    """An IVF whose coarse quantizer is itself HNSW needs that graph searched wide enough too."""
    if name == "nprobe":
        quantizer = faiss.downcast_index(faiss.extract_index_ivf(index).quantizer)
        refine = f",k_factor_rf={REFINE_K_FACTOR}" if isinstance(faiss.downcast_index(index), faiss.IndexRefine) else ""
        if isinstance(quantizer, faiss.IndexHNSW):
            return f"nprobe={value},quantizer_efSearch={max(2 * value, 32)}{refine}"
        return f"nprobe={value}{refine}"
    return f"{name}={value}"


def apply_search_params(index: faiss.Index, params: str) -> None:
    if params:
        faiss.ParameterSpace().set_index_parameters(index, params)


def measure_recall(index: faiss.Index, params: str, queries: np.ndarray, truth: np.ndarray, k: int,
                   search=None) -> float:
    """``search``: what answers the queries (default ``index.search``; refine.StoreRefined re-ranks)."""
    apply_search_params(index, params)
    _, found = (search or index.search)(queries, k)
    return recall_at_k(found, truth)


def tuning_aim(target: float, margin: float) -> float:
    """The recall the tuner aims for: ``target`` + ``margin``, at most 1 (every neighbour found).

    >>> tuning_aim(0.95, 0.01), tuning_aim(0.995, 0.01)
    (0.96, 1.0)
    """
    return min(1.0, round(target + margin, 6))


def tune_search_params(index: faiss.Index, queries: np.ndarray, truth: np.ndarray, target: float,
                       k: int = 10, margin: float = 0.0, search=None) -> Tuning:
    """Smallest nprobe / efSearch whose recall@k on ``queries`` reaches ``target`` + ``margin``
    (binary search on a grid, then the value halfway to the grid step below); ``reached`` says
    whether it reaches ``target``.

    The margin is for the queries tuning did not see: a value picked as the first to reach the target
    on a sample of queries often reaches a little less on others (the sample's mean recall is noisy),
    see IndexConfig.recall_margin.
    ``queries`` must not be in ``index`` (an indexed point is found by its own graph links and
    cells, which flatters recall); ``truth`` is their exact top-k in it. When the aim cannot be
    reached (compressed codes), the largest value is kept, and ``reached`` is False when even that
    misses the target. ``search``: what answers the queries, as in measure_recall.
    """
    if not len(queries):
        raise EmbedpipeError("no tuning queries to measure recall on; give tuning queries that hold rows")
    aim = tuning_aim(target, margin)
    knob = tunable_parameter(index)
    if knob is None:
        recall = measure_recall(index, "", queries, truth, k, search)
        return Tuning("", recall, recall >= target, aim=aim)
    name, grid = knob
    trials: dict[int, float] = {}

    def recall_of(value: int) -> float:
        if value not in trials:
            trials[value] = measure_recall(index, parameter_string(index, name, value), queries, truth, k, search)
        return trials[value]

    lo, hi = 0, len(grid) - 1
    while lo < hi:  # recall grows with the parameter: find the first grid value that reaches the aim
        mid = (lo + hi) // 2
        if recall_of(grid[mid]) >= aim:
            hi = mid
        else:
            lo = mid + 1
    value, recall = grid[lo], recall_of(grid[lo])
    if lo > 0 and recall >= aim:
        # the grid grows ~1.5x a step: the value halfway down to the step that missed is often enough,
        # and a margin above the target should not cost a whole step of speed more than it must
        between = (grid[lo - 1] + grid[lo]) // 2
        if grid[lo - 1] < between < grid[lo] and recall_of(between) >= aim:
            value, recall = between, trials[between]
    params = parameter_string(index, name, value)
    apply_search_params(index, params)
    return Tuning(params, recall, recall >= target, dict(sorted(trials.items())), aim)
