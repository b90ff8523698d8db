"""ids.arrow (formats/index_ids.py): search looks up the ids of its hits from a memory-mapped file,
never every id in RAM; indexes written before it still open; a damaged one is one error line."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.errors import CorruptArtifact
from embedpipe.formats import index_ids
from embedpipe.formats.index_dir import write_index_dir
from embedpipe.formats.vectors import VectorWriter
from embedpipe.index import IndexConfig, append_index, build_index, open_index
from embedpipe.retrieval.documents import doc_of, not_indexed
from tests.helpers import assert_one_line_error, entries, run_cli
from tests.index.clustered import DIM, clustered_unit_vectors, write_vectors
from tests.reliability.support import add_shard


def parquet_ids(index_dir: Path) -> list:
    return pq.read_table(index_dir / "ids.parquet").column("id").to_pylist()


def hits_match_parquet(index_dir: Path, queries: np.ndarray, *, mmap: bool = True) -> list[list]:
    """The ids of each query's hits, checked against ids.parquet's rows; returns them."""
    loaded, every = open_index(index_dir, mmap=mmap), parquet_ids(index_dir)
    rows = loaded.search(queries, 10)[1]
    found = [loaded.ids_of(r) for r in rows]
    assert found == [[every[i] for i in r if i >= 0] for r in rows]
    return found


@pytest.fixture
def small_index(tmp_path) -> Path:
    build_index(write_vectors(tmp_path / "v", clustered_unit_vectors(1_000)), tmp_path / "i",
                IndexConfig(factory="Flat"))
    return tmp_path / "i"


QUERIES = clustered_unit_vectors(1_050)[1_000:]    # not in the index


def test_hits_come_back_with_the_ids_of_ids_parquet_in_any_number_of_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(index_ids, "BATCH_ROWS", 97)     # many batches: hits fall on either side of their edges
    build_index(write_vectors(tmp_path / "v", clustered_unit_vectors(1_000)), tmp_path / "i",
                IndexConfig(factory="IVF8,Flat", target_recall=0.9, tuning_queries=50))
    assert "ids.arrow" in entries(tmp_path / "i")
    assert json.loads((tmp_path / "i" / "index.json").read_text())["ids_file"] == "ids.arrow"
    loaded = open_index(tmp_path / "i", mmap=True)
    every = parquet_ids(tmp_path / "i")
    assert len(loaded.ids.chunks) == 11 and loaded.ids.to_pylist() == every
    assert loaded.ids_of(np.array([96, -1, 97, 0, 999])) == [every[96], every[97], every[0], every[999]]
    assert loaded.ids_of_each(np.array([[96, 97, -1], [-1, -1, -1], [999, 0, 500]])) == [
        [every[96], every[97]], [], [every[999], every[0], every[500]]]
    for mmap in (True, False):
        hits_match_parquet(tmp_path / "i", QUERIES, mmap=mmap)


def test_an_index_written_before_ids_arrow_opens_and_searches_as_before(small_index):
    want = hits_match_parquet(small_index, QUERIES)
    info = json.loads((small_index / "index.json").read_text())
    del info["ids_file"]
    (small_index / "index.json").write_text(json.dumps(info))
    (small_index / "ids.arrow").unlink()
    assert hits_match_parquet(small_index, QUERIES) == want


def test_append_to_an_index_written_before_ids_arrow_adds_it(tmp_path):
    x = clustered_unit_vectors(1_100)
    vectors = write_vectors(tmp_path / "v", x[:1_000])
    build_index(vectors, tmp_path / "i", IndexConfig(factory="Flat"))
    info = json.loads((tmp_path / "i" / "index.json").read_text())
    (tmp_path / "i" / "index.json").write_text(json.dumps({k: v for k, v in info.items() if k != "ids_file"}))
    (tmp_path / "i" / "ids.arrow").unlink()
    add_shard(vectors, [f"new{i}" for i in range(100)], x[1_000:])
    append_index(tmp_path / "i")
    assert "ids.arrow" in entries(tmp_path / "i")
    loaded = open_index(tmp_path / "i")
    assert loaded.info["ids_file"] == "ids.arrow" and loaded.ids.where is not None   # memory-mapped now
    assert loaded.ids_of(loaded.search(x[1_000:1_003], 1)[1][:, 0]) == ["new0", "new1", "new2"]
    hits_match_parquet(tmp_path / "i", QUERIES)


def million_id_index(tmp_path: Path) -> tuple[Path, int]:
    """An exact index of 1M two-dimensional vectors and 1M string ids; returns it and the ids' bytes."""
    n = 1_000_000
    ids = pa.array([f"passage-{i:09d}" for i in range(n)])
    index = faiss.IndexFlatL2(2)
    index.add(np.random.default_rng(0).random((n, 2), dtype=np.float32))
    write_index_dir(tmp_path / "big", index, ids, lambda size: {
        "format_version": 1, "factory": "Flat", "metric": "l2", "n": n, "dim": 2, "memory_bytes": size})
    return tmp_path / "big", ids.nbytes


def allocated_by_open_and_search(index_dir: Path) -> tuple[int, int, list]:
    """(Arrow bytes held after opening and searching, Python bytes at peak meanwhile, the hits' ids)."""
    queries = np.random.default_rng(1).random((200, 2), dtype=np.float32)
    before = pa.total_allocated_bytes()
    tracemalloc.start()
    try:
        loaded = open_index(index_dir, mmap=True)
        found = [loaded.ids_of(r) for r in loaded.search(queries, 10)[1]]
        held = pa.total_allocated_bytes() - before
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return held, peak, found


def test_a_million_ids_are_not_read_into_memory_to_search(tmp_path):
    index_dir, id_bytes = million_id_index(tmp_path)
    held, peak, found = allocated_by_open_and_search(index_dir)
    assert held < id_bytes / 100 and peak < id_bytes / 20, (held, peak, id_bytes)
    every = parquet_ids(index_dir)
    rows = open_index(index_dir).search(np.random.default_rng(1).random((200, 2), dtype=np.float32), 10)[1]
    assert found == [[every[i] for i in r] for r in rows]
    # the same index as written before ids.arrow: every id is read (what the bound above rules out)
    info = json.loads((index_dir / "index.json").read_text())
    (index_dir / "index.json").write_text(json.dumps({k: v for k, v in info.items() if k != "ids_file"}))
    held_before, _, found_before = allocated_by_open_and_search(index_dir)
    assert held_before >= id_bytes and found_before == found


def test_a_truncated_ids_file_is_one_error_line(small_index):
    path = small_index / "ids.arrow"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptArtifact, match="ids.arrow"):
        open_index(small_index)
    assert_one_line_error(run_cli("search", str(small_index), "a query"), "ids.arrow", "rebuild")


def test_an_ids_file_of_another_row_count_or_type_or_missing_is_refused(small_index, tmp_path):
    index_ids.write_ids_file(small_index / "ids.arrow", pa.array([f"doc{i}" for i in range(999)]))
    with pytest.raises(CorruptArtifact, match="holds 999 ids, index.json says 1000"):
        open_index(small_index)
    index_ids.write_ids_file(small_index / "ids.arrow", pa.array(range(1000)))
    with pytest.raises(CorruptArtifact, match="type string"):
        open_index(small_index)
    (small_index / "ids.arrow").unlink()
    with pytest.raises(CorruptArtifact, match="ids.arrow is missing"):
        open_index(small_index)
    info = json.loads((small_index / "index.json").read_text())
    (small_index / "index.json").write_text(json.dumps({**info, "ids_file": "../elsewhere.arrow"}))
    with pytest.raises(CorruptArtifact, match="names the ids file '../elsewhere.arrow'"):
        open_index(small_index)


def test_offsets_altered_inside_the_file_are_refused_at_lookup_never_read_past(small_index):
    """A file of the right size whose string offsets point far outside its data: the lookup of such
    an id is one error (Arrow would read past the mapping)."""
    path = small_index / "ids.arrow"
    data = bytearray(path.read_bytes())
    chunk = open_index(small_index).ids.chunks[0]
    offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32)
    at = data.find(offsets[1:40].tobytes())            # the offsets buffer, found by its contents
    assert at > 0
    data[at + 4 * 9: at + 4 * 10] = np.int32(1 << 30).tobytes()   # the end of row 9 (the start of row 10)
    path.write_bytes(bytes(data))
    loaded = open_index(small_index)
    assert loaded.ids_of(np.array([0, 1, 2])) == ["doc0", "doc1", "doc2"]   # rows elsewhere still read
    for row in (9, 10):
        with pytest.raises(CorruptArtifact, match=f"^{path} is corrupt .an id.s offsets point outside"):
            loaded.ids_of(np.array([row]))


def test_chunk_ids_and_the_qrels_check_streamed_over_them(tmp_path, monkeypatch):
    monkeypatch.setattr(index_ids, "BATCH_ROWS", 64)
    x = clustered_unit_vectors(300)
    chunk_ids = [f"d{i // 3}#k#{i % 3}" for i in range(300)]     # "#" inside a document id too
    with VectorWriter(tmp_path / "v", dim=DIM, rows_per_shard=128) as writer:
        writer.write(chunk_ids, x)
        writer.publish({"model": {"name": "synthetic"}, "pooling": "mean", "normalize": True})
    build_index(tmp_path / "v", tmp_path / "i", IndexConfig(factory="Flat"))
    loaded = open_index(tmp_path / "i")
    assert {doc_of(c) for r in loaded.search(x[:5], 6)[1] for c in loaded.ids_of(r)} >= {"d0#k", "d1#k"}
    wanted = {"d0#k", "d99#k", "d100#k", "d5", "nohash", ""}
    assert not_indexed(loaded, wanted, documents=True) == sorted(wanted - {doc_of(c) for c in chunk_ids})
    assert not_indexed(loaded, {"d3#k#2", "d3#k"}, documents=False) == ["d3#k"]


def test_integer_ids_are_compared_as_python_prints_them(tmp_path):
    index = faiss.IndexFlatIP(2)
    index.add(np.eye(2, dtype=np.float32)[[0, 1, 0]])
    write_index_dir(tmp_path / "i", index, pa.array([7, -3, 12], pa.int64()), lambda size: {
        "format_version": 1, "factory": "Flat", "metric": "ip", "n": 3, "dim": 2, "memory_bytes": size})
    loaded = open_index(tmp_path / "i")
    assert loaded.ids_of(loaded.search(np.eye(2, dtype=np.float32)[[1]], 1)[1][0]) == [-3]
    assert not_indexed(loaded, {"7", "-3", "8"}, documents=False) == ["8"]



def test_exact_search_over_the_vectors_reads_only_the_ids_of_its_hits_shard_by_shard(tmp_path, monkeypatch):
    """evaluate's exhaustive comparison over a non-Flat index: hits are rows of the vector directory
    (not the index's order); their ids come from the shards holding them, every other shard unread."""
    import importlib

    from embedpipe.formats import vectors as vector_format
    evaluate = importlib.import_module("embedpipe.retrieval.evaluate")   # the module: the package exports the function

    x = clustered_unit_vectors(1_000)
    write_vectors(tmp_path / "v", x, rows_per_shard=100)
    build_index(tmp_path / "v", tmp_path / "i", IndexConfig(factory="IVF8,Flat", target_recall=0.9,
                                                           tuning_queries=50))
    queries = x[[5, 250, 251]] + 0.001
    read = []
    real_read_ids = vector_format.read_ids
    monkeypatch.setattr(evaluate, "read_ids", lambda store, shards, **kw: read.append(shards[0]["file"])
                        or real_read_ids(store, shards, **kw))
    scores, ids = evaluate.exact_search(open_index(tmp_path / "i"), queries, 3)
    want = np.argsort(-(queries @ x.T), axis=1, kind="stable")[:, :3]
    assert ids == [[f"doc{i}" for i in row] for row in want]
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ x.T, want, 1), rtol=1e-5)
    assert len(read) == len({int(i) // 100 for i in want.ravel()}) < 10
