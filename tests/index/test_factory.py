"""factory.py, through build_index and the CLI: a factory string FAISS cannot parse, one it cannot
train, and the HNSW construction width."""

from __future__ import annotations

import faiss

from embedpipe.index import IndexConfig, build_index, open_index
from tests.helpers import assert_one_line_error, entries, run_cli
from tests.index.clustered import clustered_unit_vectors, write_vectors


def test_unknown_factory_string_is_one_clear_error(corpus, tmp_path):
    result = run_cli("index", str(corpus[0]), "--out", str(tmp_path / "bad.index"), "--factory", "Bogus12,Flat")
    assert_one_line_error(result, "Bogus12,Flat", "could not parse")
    assert entries(tmp_path) == set()


def test_untrainable_factory_is_one_clear_error(tmp_path):
    vectors = write_vectors(tmp_path / "v", clustered_unit_vectors(500))
    result = run_cli("index", str(vectors), "--out", str(tmp_path / "i"), "--factory", "IVF4096,Flat")
    assert_one_line_error(result, "training IVF4096,Flat")
    assert entries(tmp_path) == {"v"}


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
