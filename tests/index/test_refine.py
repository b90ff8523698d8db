"""The refine step under max_memory: float vectors in RAM only when they fit, else an exact store on disk
(memory-mapped) re-ranks the candidates; index.json says which and why; search, append and a URL index
use it (real FAISS, real parquet shards, the 12,000-vector clustered corpus)."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from embedpipe.errors import CorruptArtifact, EmbedpipeError
from embedpipe.index import IndexConfig, append_index, build_index, open_index
from embedpipe.index.choose import candidate_factories, parse_size
from embedpipe.index.params import ExactTopK, recall_at_k
from embedpipe.index.refine import budgeted_candidates, plan_refine
from tests.index.clustered import clustered_unit_vectors, write_vectors
from tests.pipeline.test_append import grow

FASTSCAN = "IVF64,PQ24x4fs,RFlat"
# the float vectors of 12,000 x 24 take 1.15 MB: 1MB forces the store, 100MB keeps them in RAM
TIGHT, ROOMY = "1MB", "100MB"


def test_auto_never_plans_an_in_ram_refine_beyond_the_budget():
    for n in (10**6, 10**7, 10**8, 10**9):
        for budget in ("4GB", "16GB", "64GB", "256GB"):
            max_memory = parse_size(budget)
            try:
                candidates = budgeted_candidates(n, 384, max_memory)
            except EmbedpipeError as e:  # nothing at all fits (1B ids alone take 8 GB): said, not planned
                assert n * 8 > max_memory and "raise max_memory" in str(e)
                continue
            for factory in candidates:
                plan = plan_refine(factory, n, 384, max_memory)
                if plan.factory.endswith("RFlat"):
                    assert n * 384 * 4 <= max_memory, (n, budget, factory)
    assert plan_refine(FASTSCAN, 12_000, 24, parse_size(ROOMY)).store_dtype is None
    tight = plan_refine(FASTSCAN, 12_000, 24, parse_size(TIGHT))
    assert (tight.factory, tight.store_dtype) == ("IVF64,PQ24x4fs", "float16")
    assert "exceed max_memory" in tight.reason
    assert plan_refine(FASTSCAN, 12_000, 24, parse_size(TIGHT), "none").factory == FASTSCAN
    assert plan_refine("IVF64,Flat", 12_000, 24, parse_size(TIGHT), "float32").store_dtype == "float32"


def test_the_store_route_joins_autos_candidates_where_only_its_codes_fit():
    ten_million = budgeted_candidates(10**7, 384, parse_size("4GB"))
    assert "IVF16384,PQ192x4fs,RFlat" in ten_million
    assert "IVF16384,PQ192x4fs,RFlat" not in candidate_factories(10**7, 384, parse_size("4GB"))
    assert budgeted_candidates(10**6, 384, parse_size("4GB")) == candidate_factories(10**6, 384, parse_size("4GB"))


def _recall(index_dir, queries, x, metric="ip"):
    exact = ExactTopK(queries, 10, metric)
    exact.add(x, 0)
    _, rows = open_index(index_dir, mmap=True).search(queries, 10)
    ids = open_index(index_dir).ids.to_pylist()
    truth = exact.result()[1]
    found = np.array([[int(ids[r][3:]) if r >= 0 else -1 for r in row] for row in rows])
    return recall_at_k(found, truth)


@pytest.fixture(scope="module")
def store_index(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("refine") / "store.index"
    return out, build_index(corpus[0], out, IndexConfig(factory=FASTSCAN, max_memory=TIGHT, tuning_queries=300))


def test_a_tight_budget_refines_from_the_store_and_says_why(corpus, store_index, tmp_path):
    out, info = store_index
    assert info["factory"] == "IVF64,PQ24x4fs" and info["factory_requested"] == FASTSCAN
    assert info["refine"]["from"] == "exact_store" and "exceed max_memory" in info["refine"]["reason"]
    assert info["exact_store"] == {"dtype": "float16", "rows": 12_000, "dim": 24, "file": "exact.npy",
                                   "scale_file": None, "bytes": 128 + 12_000 * 24 * 2}
    assert json.loads((out / "index.json").read_text())["exact_store"] == info["exact_store"]
    assert np.load(out / "exact.npy", mmap_mode="r").shape == (12_000, 24)
    assert not isinstance(faiss.downcast_index(faiss.read_index(str(out / "index.faiss"))), faiss.IndexRefine)
    assert info["memory_bytes"] < 12_000 * 24 * 4 / 2  # codes, not floats, in what search holds
    assert info["recall_reached"] and info["recall_at_10"] >= 0.95
    # the in-RAM refine of the same factory: the store loses nothing a user would see
    roomy = build_index(corpus[0], tmp_path / "ram.index",
                        IndexConfig(factory=FASTSCAN, max_memory=ROOMY, tuning_queries=300))
    assert roomy["factory"] == FASTSCAN and roomy["exact_store"] is None and roomy["refine"]["from"] == "index"
    queries = clustered_unit_vectors(12_300)[12_000:]  # the 300 vectors the corpus left out: unseen
    x = corpus[1]
    assert abs(_recall(out, queries, x) - _recall(tmp_path / "ram.index", queries, x)) <= 0.01
    assert _recall(out, queries, x) >= 0.95


def test_search_rescored_from_the_store_gives_exact_scores_of_what_it_returns(corpus, store_index):
    out, _ = store_index
    index = open_index(out, mmap=True)
    assert index.refine is not None and index.refine.store.dtype == "float16"
    queries = clustered_unit_vectors(12_300)[12_000:12_010]
    scores, rows = index.search(queries, 10)
    assert (rows >= 0).all() and (np.diff(scores, axis=1) <= 0).all()
    stored = np.load(out / "exact.npy").astype(np.float32)
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", queries, stored[rows]), rtol=1e-5, atol=1e-5)


def test_append_grows_the_store_with_the_index(tmp_path):
    x = clustered_unit_vectors(6_000, seed=3)
    vectors = write_vectors(tmp_path / "c.vectors", x[:5_000], rows_per_shard=2_500)
    out = tmp_path / "c.index"
    build_index(vectors, out, IndexConfig(factory="IVF32,PQ24x4fs,RFlat", max_memory="100KB", tuning_queries=200,
                                           inverted_lists="ram"))  # append extends lists in RAM only
    store_before = (out / "exact.npy").read_bytes()
    grow(vectors, x[5_000:], first_id=5_000)
    info = append_index(out)
    assert info["n"] == 6_000 and info["exact_store"]["rows"] == 6_000
    assert info["exact_store"]["bytes"] == (out / "exact.npy").stat().st_size
    stored = np.load(out / "exact.npy", mmap_mode="r")
    assert bytes(stored[:5_000].tobytes()) == store_before[128:]  # the rows it held, unchanged
    ids = open_index(out).ids.to_pylist()
    np.testing.assert_array_equal(stored[ids.index("doc5500")], x[5_500].astype(np.float16))
    assert info["appends"][-1]["recall_at_10"] >= 0.9


def test_a_missing_or_mismatched_store_is_one_line(corpus, store_index, tmp_path):
    import shutil

    copy = tmp_path / "copy.index"
    shutil.copytree(store_index[0], copy)
    (copy / "exact.npy").unlink()
    with pytest.raises(CorruptArtifact, match="exact store exact.npy that index.json names is missing"):
        open_index(copy)
    info = json.loads((copy / "index.json").read_text())
    info["exact_store"]["file"] = "../elsewhere.npy"
    (copy / "index.json").write_text(json.dumps(info))
    with pytest.raises(CorruptArtifact, match="expected a plain file name"):
        open_index(copy)
    info["exact_store"]["file"] = "exact.npy"
    info["refine"]["k_factor"] = "8; rm -rf"
    (copy / "index.json").write_text(json.dumps(info))
    np.save(copy / "exact.npy", np.zeros((10, 24), np.float16))
    with pytest.raises(CorruptArtifact, match="k_factor"):
        open_index(copy)
    info["refine"]["k_factor"] = 8
    (copy / "index.json").write_text(json.dumps(info))
    with pytest.raises(Exception, match="holds 10 x 24 vectors, the index 12000 x 24"):
        open_index(copy)
