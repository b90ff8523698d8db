"""samples.py, through build_index: held-out tuning queries, or sample query vectors to tune on."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from embedpipe.index import IndexConfig, build_index
from tests.helpers import assert_one_line_error, entries, run_cli
from tests.index.clustered import DIM, clustered_unit_vectors, write_vectors


def test_held_out_tuning_samples_do_not_overlap_training(corpus, tmp_path):
    info = build_index(corpus[0], tmp_path / "ivf.index", IndexConfig(factory="IVF64,Flat", target_recall=0.9,
                                                                      recall_margin=0.0))
    assert info["tuning"]["on"] == "held-out corpus vectors"
    assert info["tuning"]["queries"] == 1_000 and info["tuning"]["training_vectors"] == 11_000
    trials = {int(k): v for k, v in info["tuning"]["trials"].items()}
    nprobe = int(info["search_params"].split("=")[1])
    assert info["recall_at_10"] == trials[nprobe] >= 0.9
    assert all(recall < 0.9 for value, recall in trials.items() if value < nprobe)


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
