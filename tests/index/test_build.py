"""`embedpipe index`: the auto choice, tuning to a target recall, the index directory, and bad input.

Vectors are clustered random unit vectors written through VectorWriter at test time; indexes are
small real FAISS indexes.
"""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.errors import EmbedpipeError
from embedpipe.formats.vectors import VectorWriter, vector_array
from embedpipe.fsio import file_sha256
from embedpipe.index import IndexConfig, build_index, open_index
from embedpipe.index.choose import (
    candidate_factories,
    choose_factory,
    ivf_centroids,
    parse_size,
    pick_measured,
    training_rows,
)
from embedpipe.index.measure import measure_candidates
from embedpipe.index.params import NPROBE_GRID, ExactTopK, recall_at_k, tune_search_params
from tests.helpers import assert_one_line_error, entries, run_cli

DIM = 24


def clustered_unit_vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    """Points around 40 random centres, normalized: neighbourhoods like real embeddings have."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    x = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write_vectors(path: Path, x: np.ndarray, *, normalize: bool = True, rows_per_shard: int = 5_000) -> Path:
    with VectorWriter(path, dim=x.shape[1], rows_per_shard=rows_per_shard) as writer:
        writer.write([f"doc{i}" for i in range(len(x))], x)
        writer.publish({"model": {"name": "synthetic"}, "pooling": "mean", "normalize": normalize})
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """12,000 clustered unit vectors in three shards (the first 12,000 of the 12,300 made)."""
    x = clustered_unit_vectors(12_300)[:12_000]
    return write_vectors(tmp_path_factory.mktemp("vectors") / "corpus.vectors", x), x


@pytest.fixture(scope="module")
def auto_index(corpus, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("indexes") / "auto.index"
    return out, build_index(corpus[0], out, IndexConfig(factory="auto"))


# --- choosing a factory -------------------------------------------------------------------------

@pytest.mark.parametrize("n, dim, memory, expected", [
    (5_000, 384, "4GB", "Flat"),                                   # small: exact search
    (88_000, 384, "4GB", "HNSW32"),                                # HNSW fits with room to spare
    (1_000_000, 384, "1.6GB", "HNSW8"),                            # HNSW with fewer links to fit
    (1_000_000, 384, "1.56GB", "IVF4096,Flat"),                    # no HNSW, full vectors fit
    (1_000_000, 384, "1GB", "OPQ256_512,IVF4096_HNSW32,PQ256x8np"),  # compressed codes
    (1_000_000, 384, "100MB", "OPQ64_448,IVF4096_HNSW32,PQ64x8np"),  # smaller codes for less memory
])
def test_auto_choice_follows_the_memory_ladder(n, dim, memory, expected):
    assert choose_factory(n, dim, parse_size(memory)) == expected


def test_auto_measures_each_route_that_fits_and_picks_the_fastest_on_target(corpus):
    assert candidate_factories(1_000_000, 384, parse_size("1.56GB")) == ["IVF4096,Flat"]  # nothing else fits
    x = corpus[1][:4000]
    queries = clustered_unit_vectors(12_300)[12_000:12_050]
    rows = measure_candidates(["HNSW8", "IVF4096,Flat", "IVF4096,PQ12x4fs,RFlat"], x, queries, "ip", 0.9)
    cells = ivf_centroids(4000)  # each route is measured at the sample's scale
    assert [r["measured_as"] for r in rows] == ["HNSW8", f"IVF{cells},Flat", f"IVF{cells},PQ12x4fs,RFlat"]
    assert all(r["reached"] and r["recall_at_10"] >= 0.9 and r["qps"] > 0 for r in rows)
    assert "k_factor_rf=8" in rows[2]["search_params"]       # the refine re-ranks 8k candidates exactly
    assert pick_measured(rows) == max(rows, key=lambda r: r["qps"])
    missed = [{**r, "reached": False} for r in rows]
    assert pick_measured(missed)["factory"] == max(rows, key=lambda r: r["recall_at_10"])["factory"]


def test_auto_choice_refuses_an_impossible_budget():
    with pytest.raises(EmbedpipeError, match="raise max_memory"):
        choose_factory(1_000_000, 384, parse_size("1MB"))


def test_ivf_centroids_and_training_sample_follow_faiss_guidance():
    assert ivf_centroids(1_000_000) == 4096
    assert 0.9 * 12_000 >= 39 * ivf_centroids(12_000)          # >= 39 training points per centroid
    assert training_rows(10_000_000, 4096) == 50 * 4096         # 30k..256k, ~50 per centroid
    assert training_rows(10_000_000, 65_536) == 256_000         # capped
    assert training_rows(20_000, 128) == 20_000                 # small corpora train on everything


@pytest.mark.parametrize("text, expected", [("4GB", 4 * 10**9), ("512MiB", 512 * 2**20), ("1.5g", 1_500_000_000),
                                            ("1000", 1000)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "4 parsecs", "-1GB", "0MB", ""])
def test_parse_size_rejects_nonsense(text):
    with pytest.raises(EmbedpipeError, match="size"):
        parse_size(text)


# --- exact neighbours and recall ----------------------------------------------------------------

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


# --- building -----------------------------------------------------------------------------------

def test_auto_index_agrees_with_exact_search(corpus, auto_index, tmp_path):
    vectors_dir, x = corpus
    out, info = auto_index
    assert info["factory"] == "HNSW32" and info["search_params"].startswith("efSearch=")
    assert info["recall_at_10"] >= 0.95 and info["recall_reached"]
    flat_info = build_index(vectors_dir, tmp_path / "flat.index", IndexConfig(factory="Flat"))
    assert flat_info["recall_at_10"] == 1.0 and flat_info["search_params"] == ""

    queries = clustered_unit_vectors(12_300)[12_000:]  # fresh points from the same clusters, not in the corpus
    approx_index, flat_index = open_index(out), open_index(tmp_path / "flat.index")
    approx = [approx_index.ids_of(rows) for rows in approx_index.search(queries, 10)[1]]
    exact = [flat_index.ids_of(rows) for rows in flat_index.search(queries, 10)[1]]
    brute = np.argsort(-(queries @ x.T), axis=1)[:, :10]
    assert np.mean([ids == [f"doc{i}" for i in row] for ids, row in zip(exact, brute)]) > 0.95
    assert np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)]) >= 0.9


def test_index_directory_holds_what_design_says(corpus, auto_index):
    vectors_dir, x = corpus
    out, info = auto_index
    assert entries(out) == {"index.faiss", "ids.parquet", "index.json", "tuning.parquet"}
    on_disk = json.loads((out / "index.json").read_text())
    assert on_disk == json.loads(json.dumps(info))
    for key in ("factory", "metric", "n", "dim", "build_seconds", "memory_bytes", "search_params",
                "recall_at_10", "manifest"):
        assert key in on_disk
    assert (on_disk["n"], on_disk["dim"], on_disk["metric"]) == (12_000, DIM, "ip")
    assert on_disk["memory_bytes"] == (out / "index.faiss").stat().st_size
    assert on_disk["manifest"]["pooling"] == "mean" and on_disk["manifest"]["rows"] == 12_000
    ids = pq.read_table(out / "ids.parquet").column("id").to_pylist()
    assert sorted(ids) == sorted(f"doc{i}" for i in range(12_000))  # held-out tuning rows come last
    kept = [int(i[3:]) for i in ids[:-on_disk["tuning"]["queries"]]]
    assert kept == sorted(kept)  # the others in corpus order
    index = open_index(out)
    scores, rows = index.search(x[[5, 6000, 11_999]], 1)
    assert index.ids_of(rows[:, 0]) == ["doc5", "doc6000", "doc11999"]
    assert np.allclose(scores[:, 0], 1.0, atol=1e-4)  # cosine with itself


def test_tight_memory_gives_ivf_tuned_to_the_smallest_nprobe_reaching_target(corpus, tmp_path):
    vectors_dir, x = corpus
    queries = clustered_unit_vectors(12_300)[12_000:]
    tuning = write_vectors(tmp_path / "q.vectors", queries)
    info = build_index(vectors_dir, tmp_path / "ivf.index",
                       IndexConfig(max_memory="1.5MB", target_recall=0.9, tuning_vectors=str(tuning)))
    assert info["factory"] == "IVF256,Flat" and info["memory_bytes"] <= parse_size("1.5MB")
    nprobe = int(info["search_params"].split("=")[1])

    index = open_index(tmp_path / "ivf.index")
    truth = [[f"doc{i}" for i in row] for row in np.argsort(-(queries @ x.T), axis=1)[:, :10]]

    def recall_at(value: int) -> float:  # measured here, independently of the tuner
        faiss.extract_index_ivf(index.index).nprobe = value
        rows = index.search(queries, 10)[1]
        return float(np.mean([len(set(index.ids_of(r)) & set(t)) / 10 for r, t in zip(rows, truth)]))

    aim = 0.9 + IndexConfig.recall_margin  # tuned above the target by the default margin
    assert info["tuning"]["aimed_at"] == pytest.approx(aim)
    assert recall_at(nprobe) == pytest.approx(info["recall_at_10"], abs=0.01) and recall_at(nprobe) >= aim
    tried_below = max(int(v) for v in info["tuning"]["trials"] if int(v) < nprobe)
    assert recall_at(tried_below) < aim  # the value tried next below misses the aim


def test_held_out_tuning_samples_do_not_overlap_training(corpus, tmp_path):
    info = build_index(corpus[0], tmp_path / "ivf.index", IndexConfig(factory="IVF64,Flat", target_recall=0.9,
                                                                      recall_margin=0.0))
    assert info["tuning"]["on"] == "held-out corpus vectors"
    assert info["tuning"]["queries"] == 1_000 and info["tuning"]["training_vectors"] == 11_000
    trials = {int(k): v for k, v in info["tuning"]["trials"].items()}
    nprobe = int(info["search_params"].split("=")[1])
    assert info["recall_at_10"] == trials[nprobe] >= 0.9
    assert all(recall < 0.9 for value, recall in trials.items() if value < nprobe)


def test_tuning_aims_above_the_target_by_the_margin(corpus, tmp_path):
    """The same index tuned with and without a margin: with it, the smallest nprobe whose recall on
    the tuning queries reaches target + margin (not just the target), recorded in index.json."""
    def built(margin: float) -> tuple[dict, int, dict]:
        info = build_index(corpus[0], tmp_path / f"ivf-{margin}.index",
                           IndexConfig(factory="IVF256,Flat", target_recall=0.88, recall_margin=margin))
        return info, int(info["search_params"].split("=")[1]), {int(k): v for k, v in info["tuning"]["trials"].items()}

    plain, plain_nprobe, _ = built(0.0)
    wide, wide_nprobe, trials = built(0.06)
    assert 0.88 <= plain["recall_at_10"] < 0.94 <= wide["recall_at_10"]  # the margin moved the pick
    assert wide_nprobe > plain_nprobe
    assert all(recall < 0.94 for value, recall in trials.items() if value < wide_nprobe)
    assert wide["recall_margin"] == wide["config"]["recall_margin"] == 0.06
    assert wide["tuning"]["aimed_at"] == pytest.approx(0.94) and wide["recall_reached"]
    searched = open_index(tmp_path / "ivf-0.06.index")
    assert faiss.extract_index_ivf(searched.index).nprobe == wide_nprobe  # search uses the tuned value


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


def test_any_factory_string_is_accepted_and_unreachable_targets_are_reported(corpus, tmp_path):
    info = build_index(corpus[0], tmp_path / "pq.index", IndexConfig(factory="IVF16,PQ4x4"))
    assert info["factory"] == "IVF16,PQ4x4" and info["search_params"] == "nprobe=16"
    assert not info["recall_reached"] and info["recall_at_10"] < 0.95
    assert any("below the target" in w for w in info["warnings"])
    assert open_index(tmp_path / "pq.index").index.ntotal == 12_000


def test_tuning_on_sample_query_vectors(corpus, tmp_path):
    """--tuning-queries: tune on query vectors (not in the index), and keep corpus row order."""
    queries = write_vectors(tmp_path / "q.vectors", clustered_unit_vectors(12_300)[12_000:])
    result = run_cli("index", str(corpus[0]), "--out", str(tmp_path / "i"), "--factory", "IVF128,Flat",
                    "--tuning-queries", str(queries), "--json")
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "i" / "index.json").read_text())
    assert info["tuning"]["on"] == str(queries) and info["tuning"]["queries"] == 300
    assert info["recall_at_10"] >= 0.95
    assert pq.read_table(tmp_path / "i" / "ids.parquet").column("id").to_pylist() == [f"doc{i}" for i in range(12_000)]


def test_tuning_queries_of_another_dimension(corpus, tmp_path):
    queries = write_vectors(tmp_path / "q.vectors", clustered_unit_vectors(50, dim=DIM + 1))
    result = run_cli("index", str(corpus[0]), "--out", str(tmp_path / "i"), "--factory", "HNSW8",
                    "--tuning-queries", str(queries))
    assert_one_line_error(result, f"dimension {DIM + 1}")
    assert entries(tmp_path) == {"q.vectors"}


def test_l2_metric_on_unnormalized_vectors(tmp_path):
    x = clustered_unit_vectors(2_000) * np.linspace(0.5, 3, 2_000, dtype=np.float32)[:, None]
    vectors = write_vectors(tmp_path / "raw.vectors", x, normalize=False)
    info = build_index(vectors, tmp_path / "l2.index", IndexConfig(metric="l2"))
    assert info["factory"] == "Flat" and info["warnings"] == []
    scores, rows = open_index(tmp_path / "l2.index").search(x[:3], 2)
    assert rows[:, 0].tolist() == [0, 1, 2]
    assert np.allclose(scores[:, 0], 0.0, atol=1e-4) and (scores[:, 1] < 0).all()  # negated distances


@pytest.mark.parametrize("metric, normalize, says", [("ip", False, "not normalized"), ("l2", True, "are normalized")])
def test_metric_that_disagrees_with_normalization_is_a_warning(tmp_path, caplog, metric, normalize, says):
    vectors = write_vectors(tmp_path / "v", clustered_unit_vectors(500), normalize=normalize)
    result = run_cli("index", str(vectors), "--out", str(tmp_path / "i"), "--metric", metric)
    assert result.exit_code == 0, result.output
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(says in w for w in warnings), warnings
    assert says in json.loads((tmp_path / "i" / "index.json").read_text())["warnings"][0]


def test_matching_metric_gives_no_warning(tmp_path, caplog):
    vectors = write_vectors(tmp_path / "v", clustered_unit_vectors(500), normalize=True)
    assert build_index(vectors, tmp_path / "i", IndexConfig(metric="ip"))["warnings"] == []
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_index_cli_prints_a_summary(corpus, tmp_path):
    threads = faiss.omp_get_max_threads()
    result = run_cli("index", str(corpus[0]), "--out", str(tmp_path / "cli.index"), "--factory", "IVF64,Flat",
                    "--target-recall", "0.9", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert "IVF64,Flat over 12000 vectors of dimension 24" in result.output
    assert "nprobe=" in result.output and "recall@10" in result.output
    assert entries(tmp_path / "cli.index") == {"index.faiss", "ids.parquet", "index.json", "tuning.parquet"}
    assert faiss.omp_get_max_threads() == threads  # --threads applied to the build only


@pytest.mark.parametrize("factory", ["auto", "Flat", "IVF16,PQ12x4fs,RFlat"])
def test_a_memory_mapped_index_searches_like_a_loaded_one(corpus, auto_index, tmp_path, factory):
    out = auto_index[0] if factory == "auto" else tmp_path / "i.index"   # auto: HNSW32
    if factory != "auto":
        small = write_vectors(tmp_path / "v", corpus[1][:3000])
        build_index(small, out, IndexConfig(factory=factory, target_recall=0.9, tuning_queries=100))
    loaded, mapped = open_index(out), open_index(out, mmap=True)
    assert mapped.info["search_params"] == loaded.info["search_params"]
    queries = clustered_unit_vectors(12_300)[12_000:12_100]        # not in the index
    np.testing.assert_array_equal(mapped.search(queries, 10)[1], loaded.search(queries, 10)[1])


# --- bad input ----------------------------------------------------------------------------------

def test_unknown_factory_string_is_one_clear_error(corpus, tmp_path):
    result = run_cli("index", str(corpus[0]), "--out", str(tmp_path / "bad.index"), "--factory", "Bogus12,Flat")
    assert_one_line_error(result, "Bogus12,Flat", "could not parse")
    assert entries(tmp_path) == set()


def test_untrainable_factory_is_one_clear_error(tmp_path):
    vectors = write_vectors(tmp_path / "v", clustered_unit_vectors(500))
    result = run_cli("index", str(vectors), "--out", str(tmp_path / "i"), "--factory", "IVF4096,Flat")
    assert_one_line_error(result, "training IVF4096,Flat")
    assert entries(tmp_path) == {"v"}


@pytest.mark.parametrize("option, value, says", [("--max-memory", "lots", "size"),
                                                  ("--max-memory", "1KB", "raise --max-memory"),
                                                  ("--target-recall", "1.5", "target-recall"),
                                                  ("--metric", "cosine", "cosine")])
def test_bad_options(corpus, tmp_path, option, value, says):
    result = run_cli("index", str(corpus[0]), "--out", str(tmp_path / "i"), option, value)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert says in result.output
    assert entries(tmp_path) == set()


def test_shards_with_different_dimensions_fail_and_keep_the_old_index(tmp_path):
    vectors = write_vectors(tmp_path / "v", clustered_unit_vectors(2_000), rows_per_shard=1_000)
    build_index(vectors, tmp_path / "i", IndexConfig())
    before = (tmp_path / "i" / "index.faiss").read_bytes()
    wider = pa.table({"id": [f"x{i}" for i in range(1_000)],
                      "vector": vector_array(clustered_unit_vectors(1_000, dim=DIM + 8))})
    pq.write_table(wider, vectors / "part-00001.parquet")  # a second shard of another width,
    manifest = json.loads((vectors / "manifest.json").read_text())  # recorded in the manifest as such
    manifest["shards"][1]["sha256"] = file_sha256(vectors / "part-00001.parquet")
    (vectors / "manifest.json").write_text(json.dumps(manifest))

    result = run_cli("index", str(vectors), "--out", str(tmp_path / "i"), "--overwrite")
    assert_one_line_error(result, "part-00001.parquet", f"dimension {DIM + 8}")
    assert entries(tmp_path) == {"v", "i"}  # no staging directory left behind
    assert (tmp_path / "i" / "index.faiss").read_bytes() == before


def test_existing_output_needs_overwrite(corpus, auto_index):
    result = run_cli("index", str(corpus[0]), "--out", str(auto_index[0]))
    assert_one_line_error(result, "--overwrite")


def test_not_a_vector_directory(tmp_path):
    result = run_cli("index", str(tmp_path / "nothing"), "--out", str(tmp_path / "i"))
    assert_one_line_error(result, "does not exist")


# --- loading ------------------------------------------------------------------------------------

@pytest.fixture
def small_index(tmp_path) -> Path:
    vectors = write_vectors(tmp_path / "v", clustered_unit_vectors(1_000))
    build_index(vectors, tmp_path / "i", IndexConfig())
    return tmp_path / "i"


def test_index_dir_without_index_json(small_index):
    (small_index / "index.json").unlink()
    with pytest.raises(EmbedpipeError, match="no index.json"):
        open_index(small_index)


def test_truncated_index_file(small_index):
    data = (small_index / "index.faiss").read_bytes()
    (small_index / "index.faiss").write_bytes(data[: len(data) // 2])
    with pytest.raises(EmbedpipeError, match="truncated"):
        open_index(small_index)


def test_corrupt_index_file(small_index):
    data = bytearray((small_index / "index.faiss").read_bytes())
    data[:4] = b"XXXX"  # the index type tag: same size, unreadable
    (small_index / "index.faiss").write_bytes(bytes(data))
    with pytest.raises(EmbedpipeError, match="corrupt"):
        open_index(small_index)


def test_dimension_recorded_differs_from_index(small_index):
    info = json.loads((small_index / "index.json").read_text())
    (small_index / "index.json").write_text(json.dumps({**info, "dim": DIM * 2}))
    with pytest.raises(EmbedpipeError, match=f"dimension {DIM}, index.json says {DIM * 2}"):
        open_index(small_index)


def test_query_vectors_of_another_dimension(small_index):
    with pytest.raises(EmbedpipeError, match=f"dimension {DIM}"):
        open_index(small_index).search(np.zeros((2, DIM + 1), np.float32), 5)


def test_ids_file_that_does_not_match(small_index):
    pq.write_table(pa.table({"id": ["a", "b"]}), small_index / "ids.parquet")
    with pytest.raises(EmbedpipeError, match="one 'id' per indexed vector"):
        open_index(small_index)


def test_ef_construction_sets_the_graph_build_width_of_hnsw_indexes(corpus, auto_index, tmp_path):
    """auto's HNSW gets HNSW_EF_CONSTRUCTION (80), a named HNSW factory FAISS's 40 unless
    ef_construction says otherwise; an index without an HNSW graph refuses the option."""
    def ef_construction(path) -> int:
        return faiss.downcast_index(open_index(path).index).hnsw.efConstruction

    assert auto_index[1]["factory"] == "HNSW32" and ef_construction(auto_index[0]) == 80
    small = write_vectors(tmp_path / "small.vectors", corpus[1][:3000])
    build_index(small, tmp_path / "named.index", IndexConfig(factory="HNSW8", tuning_queries=100))
    build_index(small, tmp_path / "wide.index", IndexConfig(factory="HNSW8", tuning_queries=100, ef_construction=120))
    assert ef_construction(tmp_path / "named.index") == 40 and ef_construction(tmp_path / "wide.index") == 120
    result = run_cli("index", str(small), "--out", str(tmp_path / "ivf.index"), "--factory", "IVF16,Flat",
                     "--ef-construction", "100")
    assert_one_line_error(result, "--ef-construction applies to HNSW indexes")
    assert not (tmp_path / "ivf.index").exists()
