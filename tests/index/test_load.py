"""load.py: an index directory opened (loaded or memory-mapped) and searched, and the damaged ones it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import embedpipe.index.load as load
from embedpipe.errors import EmbedpipeError
from embedpipe.index import IndexConfig, build_index, open_index
from tests.index.clustered import DIM, clustered_unit_vectors, write_vectors


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


def test_a_file_deleted_between_its_check_and_its_read_by_a_publish_is_read_again(small_index, tmp_path,
                                                                                  monkeypatch):
    """A publish swaps the directory and deletes the old version: a reader that found index.json there
    and then could not read it (FileNotFoundError, not a refusal) reads the new version."""
    newer = tmp_path / "newer"
    build_index(write_vectors(tmp_path / "v2", clustered_unit_vectors(1_200)), newer, IndexConfig())
    real_read_info, calls = load.read_info, []

    def read_info_during_a_publish(path):
        calls.append(path)
        if len(calls) == 1:                     # the swap, between the reader's check and its read
            small_index.rename(tmp_path / "old")
            newer.rename(small_index)
            (tmp_path / "old" / "index.json").unlink()
            raise FileNotFoundError(2, "No such file or directory", str(path / "index.json"))
        return real_read_info(path)

    monkeypatch.setattr(load, "read_info", read_info_during_a_publish)
    assert open_index(small_index).info["n"] == 1_200 and len(calls) == 2


def test_a_file_missing_without_a_publish_is_one_refusal(small_index, monkeypatch):
    def gone(path):
        raise FileNotFoundError(2, "No such file or directory", str(path / "index.json"))

    monkeypatch.setattr(load, "read_info", gone)
    with pytest.raises(EmbedpipeError, match="index.json is missing"):
        open_index(small_index)
