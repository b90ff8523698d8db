"""factory.py, directly and through build_index and the CLI: a factory string FAISS cannot parse,
one it cannot train, and the HNSW construction width."""

from __future__ import annotations

import faiss
import pytest

from embedpipe.errors import EmbedpipeError
from embedpipe.index import IndexConfig, build_index, open_index
from embedpipe.index.factory import hnsw_graph, make_index, set_ef_construction
from embedpipe.index.params import tunable_parameter
from tests.helpers import assert_one_line_error, entries, run_cli
from tests.index.clustered import DIM, clustered_unit_vectors, write_vectors


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


def test_the_hnsw_graph_behind_a_transform_takes_ef_construction_and_is_tuned_by_ef_search():
    """``PCA16,HNSW8`` wraps its graph in a transform: the graph is still found, for the construction
    width and for tuning; an IVF whose coarse quantizer is HNSW has no graph over the vectors."""
    index = make_index("PCA16,HNSW8", DIM, "ip")
    set_ef_construction(index, "PCA16,HNSW8", 99)
    assert hnsw_graph(index).hnsw.efConstruction == 99
    assert tunable_parameter(index)[0] == "efSearch"
    quantized = make_index("IVF16_HNSW8,Flat", DIM, "ip")
    assert hnsw_graph(quantized) is None and tunable_parameter(quantized)[0] == "nprobe"
    with pytest.raises(EmbedpipeError, match="builds no HNSW graph"):
        set_ef_construction(quantized, "IVF16_HNSW8,Flat", 99)
