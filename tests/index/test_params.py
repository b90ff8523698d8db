"""params.py: exact top-k over chunks, recall@k, and tuning a search parameter to a target."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from embedpipe.index.params import NPROBE_GRID, ExactTopK, recall_at_k, tune_search_params
from tests.index.clustered import DIM, clustered_unit_vectors


def test_exact_top_k_over_chunks_equals_brute_force():
    x = clustered_unit_vectors(3_001, seed=3)
    queries = x[:50]
    exact = ExactTopK(queries, k=7, metric="ip")
    for start in range(0, len(x), 1_000):  # the last chunk has one row: shorter than k
        exact.add(x[start:start + 1_000], start)
    _, rows = exact.result()
    brute = np.argsort(-(queries @ x.T), axis=1)[:, :7]
    assert (rows == brute).mean() > 0.99  # equal up to ties in float rounding


def test_recall_at_k():
    assert recall_at_k(np.array([[1, 2, 9]]), np.array([[1, 2, 3]])) == pytest.approx(2 / 3)
    assert recall_at_k(np.array([[1, -1], [4, 5]]), np.array([[1, -1], [6, 7]])) == pytest.approx(0.5)


def test_tuning_tries_halfway_below_the_first_grid_value_that_reaches_the_aim(corpus):
    """The grid grows ~1.5x a step; the value halfway down to the step that missed is measured too
    and kept when it reaches the aim, so a margin costs no more speed than it must."""
    x = corpus[1]
    queries = clustered_unit_vectors(12_300)[12_000:]
    index = faiss.index_factory(DIM, "IVF256,Flat", faiss.METRIC_INNER_PRODUCT)
    index.train(x)
    index.add(x)
    truth = np.argsort(-(queries @ x.T), axis=1)[:, :10]
    tuning = tune_search_params(index, queries, truth, target=0.93, margin=0.01)
    value, trials = int(tuning.params.split("=")[1]), tuning.trials
    assert trials[value] == tuning.recall >= 0.94
    assert all(recall < 0.94 for tried, recall in trials.items() if tried < value)
    first = min(v for v in NPROBE_GRID if v in trials and trials[v] >= 0.94)
    halfway = (NPROBE_GRID[NPROBE_GRID.index(first) - 1] + first) // 2
    assert halfway in trials and halfway not in NPROBE_GRID and value in (halfway, first)


def test_an_aim_above_one_keeps_the_largest_value_and_judges_by_the_target(corpus):
    """target 0.995 + margin 0.01 aims at every neighbour (1.0); a 4-bit PQ index cannot reach it, so
    tuning keeps the largest nprobe, and `reached` says whether that meets the target itself."""
    x = corpus[1]
    queries = clustered_unit_vectors(12_300)[12_000:12_200]
    index = faiss.index_factory(DIM, "IVF16,PQ12x4fs,RFlat", faiss.METRIC_INNER_PRODUCT)
    index.train(x)
    index.add(x)
    truth = np.argsort(-(queries @ x.T), axis=1)[:, :10]
    tuning = tune_search_params(index, queries, truth, target=0.995, margin=0.01)
    assert tuning.aim == 1.0 and tuning.params.startswith("nprobe=16,")  # the whole grid, the largest kept
    assert tuning.reached == (tuning.recall >= 0.995)
    assert tune_search_params(index, queries, truth, target=0.5, margin=0.01).params.split(",")[0] != "nprobe=16"
