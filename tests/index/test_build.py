"""`embedpipe index` / build_index: the index directory, tuning to a target recall, metrics, and bad input.

Vectors are clustered random unit vectors written through VectorWriter at test time (clustered.py);
indexes are small real FAISS indexes.
"""

from __future__ import annotations

import json

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.formats.vectors import vector_array
from embedpipe.fsio import file_sha256
from embedpipe.index import IndexConfig, build_index, open_index
from embedpipe.index.choose import parse_size
from tests.helpers import assert_one_line_error, entries, run_cli
from tests.index.clustered import DIM, clustered_unit_vectors, write_vectors


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
    assert entries(out) == {"index.faiss", "ids.parquet", "ids.arrow", "index.json", "tuning.parquet"}
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


def test_any_factory_string_is_accepted_and_unreachable_targets_are_reported(corpus, tmp_path):
    info = build_index(corpus[0], tmp_path / "pq.index", IndexConfig(factory="IVF16,PQ4x4"))
    assert info["factory"] == "IVF16,PQ4x4" and info["search_params"] == "nprobe=16"
    assert not info["recall_reached"] and info["recall_at_10"] < 0.95
    assert any("below the target" in w for w in info["warnings"])
    assert open_index(tmp_path / "pq.index").index.ntotal == 12_000


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
    assert entries(tmp_path / "cli.index") == {"index.faiss", "ids.parquet", "ids.arrow", "index.json",
                                               "tuning.parquet"}
    assert faiss.omp_get_max_threads() == threads  # --threads applied to the build only


# --- bad input ----------------------------------------------------------------------------------


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
