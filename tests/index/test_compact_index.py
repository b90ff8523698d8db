"""Indexes over compact codes: binary and SQ8 indexes, rescored from the exact store; search, evaluate,
append, and the refusals."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.encode import EncodeJob, encode_corpus
from embedpipe.encode.encoder import EncoderSpec
from embedpipe.errors import BadInput, EmbedpipeError
from embedpipe.formats.vectors import open_vectors
from embedpipe.index import IndexConfig, build_index, open_index
from embedpipe.index.append import append_index
from embedpipe.index.compact import compact_factory
from embedpipe.retrieval import evaluate
from tests.helpers import TEXTS, write_corpus

MORE = [f"{a} {b} and the {c}" for a, b, c in zip(["red", "old", "new", "small", "blue", "fast"] * 4,
                                                      ["cat", "dog", "bird", "fish", "tree"] * 5,
                                                      ["river", "city", "moon", "road"] * 6)]


@pytest.fixture(scope="module")
def encoded(tiny_model_dir, tmp_path_factory):
    """The same 30-text corpus as float32, int8, binary and 16-dim (truncated) float32 / binary."""
    root = tmp_path_factory.mktemp("compact")
    corpus = write_corpus(root / "c.parquet", TEXTS + MORE[:20], ids=[f"d{i}" for i in range(30)])

    def encode(name, **kwargs):
        return encode_corpus(EncodeJob(str(corpus), out=str(root / name), runner="local",
                                       spec=EncoderSpec(model=str(tiny_model_dir)), **kwargs)).out

    return {"root": root, "corpus": corpus, "float32": encode("f32"),
            "int8": encode("i8", dtype="int8"), "binary": encode("b", dtype="binary"),
            "float32@16": encode("f16d", truncate_dim=16),
            "binary@16": encode("b16d", dtype="ubinary", truncate_dim=16),
            "binary+int8": encode("bi8", dtype="binary", rescore_dtype="int8")}


def exact(floats: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ floats.T), axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("binary, floats", [("binary", "float32"), ("binary@16", "float32@16")])
def test_binary_candidates_rescored_from_floats_rank_as_float_search(encoded, tmp_path, binary, floats):
    config = IndexConfig(rescore_from=str(encoded[floats]), rescore_multiplier=10)
    info = build_index(encoded[binary], tmp_path / "idx", config)
    assert info["factory"] == "BFlat" and info["compact"]["rescore"]
    assert info["memory_bytes"] == (tmp_path / "idx" / "index.faiss").stat().st_size
    assert info["disk_bytes"] == info["compact"]["exact_store"]["bytes"] > 30 * info["dim"] * 4
    assert info["recall_at_10"] == 1.0   # 10 x 10 candidates of 30 vectors: every one, rescored
    _, vectors = open_vectors(encoded[floats]).read_all()
    index = open_index(tmp_path / "idx")
    scores, rows = index.search(vectors[:5], 5)
    np.testing.assert_array_equal(rows, exact(vectors, vectors[:5], 5))
    np.testing.assert_allclose(scores[:, 0], 1, atol=1e-5)   # each finds itself, scored as floats


def test_int8_codes_rescore_themselves_and_search_from_text(encoded, tmp_path):
    info = build_index(encoded["int8"], tmp_path / "idx", IndexConfig())
    assert info["factory"] == "SQ8" and info["compact"]["exact_store"]["dtype"] == "int8"
    assert info["compact"]["bytes_per_vector"] == 32 and info["recall_at_10"] >= 0.9
    _, codes_as_floats = open_vectors(encoded["int8"]).read_all()
    _, rows = open_index(tmp_path / "idx").search(codes_as_floats[:5], 3)
    np.testing.assert_array_equal(rows, exact(codes_as_floats, codes_as_floats[:5], 3))


def test_rescoring_vectors_kept_beside_the_bits_by_encode(encoded, tmp_path):
    vectors = open_vectors(encoded["binary+int8"])
    assert vectors.compact["rescore_dtype"] == "int8" and vectors.compact["ranges"]
    info = build_index(encoded["binary+int8"], tmp_path / "idx", IndexConfig(rescore_multiplier=10))
    assert info["compact"]["exact_store"]["dtype"] == "int8" and info["recall_at_10"] == 1.0
    _, kept = vectors.rescore_vectors().read_all()   # the int8 column, read back as floats
    _, floats = open_vectors(encoded["float32"]).read_all()
    assert np.abs(kept - floats).max() < 0.05
    _, rows = open_index(tmp_path / "idx").search(floats[:5], 5)
    np.testing.assert_array_equal(rows, exact(kept, floats[:5], 5))


def test_without_rescoring_binary_ranks_by_hamming(encoded, tmp_path):
    info = build_index(encoded["binary"], tmp_path / "idx", IndexConfig(rescore=False))
    assert info["disk_bytes"] == 0 and info["recall_at_10"] is None
    assert not (tmp_path / "idx" / "exact.npy").exists()
    _, bits = open_vectors(encoded["binary"]).read_all()   # +-1/sqrt(dim): inner product ranks as Hamming
    scores, rows = open_index(tmp_path / "idx").search(bits[:3], 1)
    np.testing.assert_array_equal(rows[:, 0], [0, 1, 2])
    np.testing.assert_allclose(scores[:, 0], 1)


def test_evaluate_and_search_encode_truncated_queries(encoded, tmp_path):
    build_index(encoded["binary@16"], tmp_path / "idx", IndexConfig(rescore_from=str(encoded["float32@16"])))
    pq.write_table(pa.table({"id": ["q1", "q2"], "text": [MORE[0], MORE[3]]}), tmp_path / "q.parquet")
    pq.write_table(pa.table({"query_id": ["q1", "q2"], "doc_id": ["d10", "d13"], "relevance": [1, 1]}),
                   tmp_path / "qrels.parquet")
    report = evaluate(tmp_path / "idx", tmp_path / "q.parquet", tmp_path / "qrels.parquet", [1, 10])
    assert report["index"]["ndcg_at_10"] == report["exact"]["ndcg_at_10"] == 1.0


def test_an_append_rebuilds_the_codes_and_their_store(encoded, tmp_path):
    corpus = write_corpus(tmp_path / "c.parquet", MORE[:12], ids=[f"m{i}" for i in range(12)])
    job = {"spec": EncoderSpec(model=str(open_vectors(encoded["float32"]).manifest["model"]["path"]))}
    runs = {}
    for name, kwargs in (("f", {}), ("b", {"dtype": "binary"})):
        runs[name] = encode_corpus(EncodeJob(str(corpus), out=str(tmp_path / name), runner="local",
                                             **job, **kwargs)).out
    build_index(runs["b"], tmp_path / "idx", IndexConfig(rescore_from=str(runs["f"])))
    write_corpus(corpus, MORE, ids=[f"m{i}" for i in range(len(MORE))])
    for name, kwargs in (("f", {}), ("b", {"dtype": "binary"})):
        encode_corpus(EncodeJob(str(corpus), out=str(tmp_path / name), runner="local", **job, **kwargs))
    info = append_index(tmp_path / "idx")
    assert info["n"] == len(MORE) and info["appends"][-1]["rows"] == len(MORE) - 12
    assert info["compact"]["exact_store"]["rows"] == len(MORE)
    ids = open_index(tmp_path / "idx").ids.to_pylist()      # from the memory-mapped ids.arrow
    assert ids == [f"m{i}" for i in range(len(MORE))]
    assert ids == pq.read_table(tmp_path / "idx" / "ids.parquet")["id"].to_pylist()


def test_appending_vectors_of_another_precision_is_refused(encoded, tmp_path):
    corpus = encoded["corpus"]
    spec = EncoderSpec(model=str(open_vectors(encoded["float32"]).manifest["model"]["path"]))
    encode_corpus(EncodeJob(str(corpus), out=str(tmp_path / "v"), runner="local", spec=spec, dtype="int8"))
    build_index(tmp_path / "v", tmp_path / "idx", IndexConfig())
    before = (tmp_path / "idx" / "index.json").read_bytes()
    encode_corpus(EncodeJob(str(corpus), out=str(tmp_path / "v"), runner="local", spec=spec, overwrite=True))
    with pytest.raises(EmbedpipeError, match="holds int8 vectors and .* holds float32"):
        append_index(tmp_path / "idx")
    assert (tmp_path / "idx" / "index.json").read_bytes() == before


@pytest.mark.parametrize("vectors, config, message", [
    ("binary", {}, "rescored from higher-precision vectors"),
    ("binary", {"factory": "HNSW32", "rescore": False}, "need a binary index"),
    ("int8", {"factory": "IVF4,PQ8"}, "are indexed with factory SQ8"),
    ("binary", {"rescore_from": "float32@16"}, "was not encoded like"),
    ("binary", {"rescore_from": "binary"}, "rescoring needs float or int8"),
    ("int8", {"max_memory": "100B"}, "more than max_memory"),
    ("float32", {"rescore_from": "float32@16"}, "applies to int8 and binary vectors"),
])
def test_indexes_a_precision_cannot_use_are_refused(encoded, tmp_path, vectors, config, message):
    if "rescore_from" in config:
        config = {**config, "rescore_from": str(encoded[config["rescore_from"]])}
    with pytest.raises(BadInput, match=message):
        build_index(encoded[vectors], tmp_path / "idx", IndexConfig(**config))
    assert not (tmp_path / "idx").exists()


def test_the_auto_choice_for_bits_follows_the_corpus_size():
    assert compact_factory("auto", "binary", 1000, 384, 1 << 30) == "BFlat"
    assert compact_factory("auto", "ubinary", 4_000_000, 384, 1 << 30) == "BIVF8000"
    assert compact_factory("BHNSW32", "binary", 10, 64, 1 << 30) == "BHNSW32"
    assert compact_factory("auto", "int8", 10, 64, 1 << 30) == "SQ8"


def test_evaluate_compares_precisions_side_by_side(encoded, tmp_path):
    from tests.helpers import run_cli

    build_index(encoded["float32"], tmp_path / "f.index", IndexConfig(factory="Flat"))
    build_index(encoded["binary"], tmp_path / "b.index", IndexConfig(rescore_from=str(encoded["float32"])))
    build_index(encoded["int8"], tmp_path / "i.index", IndexConfig())
    pq.write_table(pa.table({"id": ["q1", "q2"], "text": [MORE[0], MORE[3]]}), tmp_path / "q.parquet")
    pq.write_table(pa.table({"query_id": ["q1", "q2"], "doc_id": ["d10", "d13"], "relevance": [1, 1]}),
                   tmp_path / "qrels.parquet")
    result = run_cli("evaluate", tmp_path / "f.index", "--compare", tmp_path / "b.index", "--compare",
                     tmp_path / "i.index", "--queries", tmp_path / "q.parquet", "--qrels", tmp_path / "qrels.parquet",
                     "--plot", tmp_path / "q.png", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output.strip().splitlines()[-1])
    assert [(r["dtype"], r["rescored"]) for r in rows] == [("float32", False), ("binary", True), ("int8", True)]
    # 32 dims: 4 bytes, 1 bit, 1 byte each (and the index file's header, spread over 30 vectors)
    ram = [r["ram_bytes_per_vector"] for r in rows]
    assert 128 <= ram[0] < 136 and 4 <= ram[1] < 12 and 32 <= ram[2] < 48
    assert rows[1]["ndcg_at_10"] == rows[0]["ndcg_at_10"] and rows[1]["disk_bytes_per_vector"] >= 128
    assert (tmp_path / "q.png").read_bytes()[:4] == b"\x89PNG"


def test_an_index_inside_its_rescoring_vectors_is_refused(encoded, tmp_path):
    with pytest.raises(BadInput, match="rescoring vectors"):
        build_index(encoded["binary"], encoded["float32"] / "idx", IndexConfig(rescore_from=str(encoded["float32"])))
    assert not (encoded["float32"] / "idx").exists()


def test_compact_codes_on_ray_are_refused_before_ray_starts(encoded, tmp_path):
    # The parallel build on Ray adds float vectors into partial IVF indexes; codes build in one process
    with pytest.raises(BadInput, match="indexed in one process.*runner=local"):
        build_index(encoded["int8"], tmp_path / "idx", IndexConfig(runner="ray"))
    assert not (tmp_path / "idx").exists()


def test_chunked_compact_vectors_search_by_document(encoded, tmp_path):
    # Chunk rows (doc_id, chunk, span) and int8 codes in one output: the index answers with documents
    from embedpipe.retrieval.documents import show_texts
    from embedpipe.retrieval.search import corpus_columns, corpus_texts, query_encoder, search_texts

    long_texts = [" ".join(MORE[i:i + 12]) for i in range(0, 12, 3)]
    corpus = write_corpus(tmp_path / "long.parquet", long_texts, ids=[f"doc{i}" for i in range(len(long_texts))])
    out = encode_corpus(EncodeJob(str(corpus), out=str(tmp_path / "v"), runner="local", dtype="int8",
                                  chunk_tokens=16, chunk_overlap=4,
                                  spec=EncoderSpec(model=str(encoded_model(encoded))))).out
    vectors = open_vectors(out)
    assert vectors.rows > len(long_texts)   # several chunks a document
    build_index(out, tmp_path / "idx", IndexConfig())
    index = open_index(tmp_path / "idx")
    hits = search_texts(index, [long_texts[2]], 3, query_encoder(index))[0]
    assert len({h.id for h in hits}) == len(hits) and {h.id for h in hits} <= {f"doc{i}" for i in range(4)}
    assert all(h.chunk is not None for h in hits)
    show_texts(index, hits, lambda ids: corpus_texts(corpus, ids, **corpus_columns(index)))
    by_id = dict(zip([f"doc{i}" for i in range(len(long_texts))], long_texts))
    assert index.spans is not None     # the spans are in the index directory (spans.arrow)
    for hit in hits:   # the best chunk's characters
        start, end = hit.span
        assert 0 <= start < end <= len(by_id[hit.id]) and hit.text == by_id[hit.id][start:end]


def encoded_model(encoded) -> str:
    return json.loads((encoded["float32"] / "manifest.json").read_text())["encoder"]["model"]
