"""The parallel build's parts, merge and resume, run in this process (the Ray tasks are in
test_parallel_cluster.py): the merged index equals one whose vectors were added in one process, its
rows are the one-process build's, and a run stopped part way is resumed from its finished parts."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from embedpipe.formats.vectors import open_vectors
from embedpipe.index import IndexConfig, build_index
from embedpipe.index.exact_store import open_exact_store
from embedpipe.index.factory import make_index
from embedpipe.index.parallel import build_dir_of, fill_in_parallel, to_fast_scan
from embedpipe.index.parts import receipt_name
from tests.index.clustered import clustered_unit_vectors, write_vectors

FACTORY = "IVF32,PQ24x4fs"
RESUMED = "IVF32,Flat"  # quick to train: the resume test trains three times


def here(function, calls):
    """The units one after another in this process (parallel_ray.py runs the same calls as Ray tasks)."""
    for call in calls:
        yield function(*call)


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    x = clustered_unit_vectors(6_000, seed=7)
    return write_vectors(tmp_path_factory.mktemp("par") / "c.vectors", x, rows_per_shard=1_000), x


def test_parts_merge_into_the_index_rows_the_one_process_build_numbers(vectors, tmp_path):
    path, x = vectors
    config = IndexConfig(factory=FACTORY, tuning_queries=200)
    index = make_index(FACTORY, 24, "ip")
    filled = fill_in_parallel(open_vectors(path), index, FACTORY, config, tmp_path / "build", "float16", here,
                              tmp_path)
    held = filled.samples.query_rows
    assert len(held) == 200 and filled.index.ntotal == 5_800 and filled.reused == 0
    kept = np.setdiff1d(np.arange(6_000), held)
    assert filled.ids.to_pylist() == [f"doc{i}" for i in kept]                 # index row -> corpus id, in order
    np.testing.assert_array_equal(open_exact_store(filled.store_path).vectors(np.arange(5_800)),
                                  x[kept].astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(filled.samples.queries, x[held])
    assert filled.samples.query_ids == [f"doc{i}" for i in held]
    # the merged lists hold what adding every kept vector into the trained index in one process gives
    one = faiss.read_index(str(tmp_path / "build" / "trained.faiss"))  # plain 4-bit IVF-PQ: its lists merge
    one.add_with_ids(x[kept], np.arange(5_800))
    one = to_fast_scan(faiss.downcast_index(one))
    assert isinstance(faiss.downcast_index(filled.index), faiss.IndexIVFPQFastScan)
    nprobe = faiss.extract_index_ivf(one)
    faiss.extract_index_ivf(filled.index).nprobe = nprobe.nprobe = 8
    d1, i1 = filled.index.search(x[held], 10)
    d2, i2 = one.search(x[held], 10)
    np.testing.assert_array_equal(i1, i2)
    # the exact top-k merged from the parts is exact search over the kept vectors
    exact = faiss.IndexFlatIP(24)
    exact.add(x[kept])
    np.testing.assert_array_equal(filled.truth, exact.search(x[held], 10)[1])


def test_a_run_stopped_part_way_is_resumed_from_its_finished_parts(vectors, tmp_path):
    path, _ = vectors
    config = IndexConfig(factory=RESUMED, tuning_queries=200)
    build = tmp_path / "build"

    def stops_after_two(function, calls):
        for number, call in enumerate(calls):
            if number == 2 and function.__name__ == "add_part":
                raise KeyboardInterrupt  # the driver killed mid-build
            yield function(*call)

    with pytest.raises(KeyboardInterrupt):
        fill_in_parallel(open_vectors(path), make_index(RESUMED, 24, "ip"), RESUMED, config, build, "float16",
                         stops_after_two, tmp_path)
    assert sorted(p.name for p in build.glob("part-*.json")) == [receipt_name(0), receipt_name(1)]
    trained = (build / "trained.faiss").read_bytes()
    receipt = json.loads((build / receipt_name(1)).read_text())
    receipt["files"]["lists"] = "../../elsewhere.lists"        # a receipt naming other files is not a finished part
    (build / receipt_name(1)).write_text(json.dumps(receipt))
    ran = []

    def counting(function, calls):
        ran.extend(call[0].number for call in calls if function.__name__ == "add_part")
        yield from here(function, calls)

    filled = fill_in_parallel(open_vectors(path), make_index(RESUMED, 24, "ip"), RESUMED, config, build, "float16",
                              counting, tmp_path)
    assert filled.reused == 1 and ran == [1, 2, 3, 4, 5]
    assert (build / "trained.faiss").read_bytes() == trained                  # not trained again
    fresh = fill_in_parallel(open_vectors(path), make_index(RESUMED, 24, "ip"), RESUMED, config,
                             tmp_path / "fresh", "float16", here, tmp_path / "build")
    assert filled.ids.to_pylist() == fresh.ids.to_pylist() and filled.index.ntotal == fresh.index.ntotal
    # another config is another plan: nothing of the earlier run is reused
    other = fill_in_parallel(open_vectors(path), make_index(RESUMED, 24, "ip"), RESUMED,
                             IndexConfig(factory=RESUMED, tuning_queries=100), build, "float16", here, tmp_path)
    assert other.reused == 0 and len(other.samples.query_rows) == 100


def test_a_parallel_build_needs_an_ivf_factory(vectors, tmp_path):
    with pytest.raises(Exception, match="needs an IVF factory, not 'HNSW16'; use runner=local"):
        build_index(vectors[0], tmp_path / "i", IndexConfig(factory="HNSW16", runner="ray"))
    assert not build_dir_of(tmp_path / "i").exists() and not (tmp_path / "i").exists()


@pytest.mark.parametrize("factory", ["auto", "HNSW16", "Flat"])
def test_auto_runner_with_a_cluster_named_builds_an_index_without_lists_here(vectors, tmp_path, monkeypatch, factory):
    # A pipeline run as a Ray job has $RAY_ADDRESS set; a small corpus's Flat (auto's choice for 6,000
    # vectors) or an HNSW graph has no inverted lists to build in parts: built here, not refused. The
    # address is unreachable, so any attempt to join it would fail the test.
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    info = build_index(vectors[0], tmp_path / "i", IndexConfig(factory=factory))
    assert info["runner"]["name"] == "local" and "no inverted lists" in info["runner"]["why"]
    assert info["n"] == 6_000
