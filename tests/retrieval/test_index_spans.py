"""spans.arrow (formats/index_spans.py): an index over chunks carries each row's typed document id and
character span, so search shows spans and answers int64 document ids with the vectors deleted. Real
encode with --chunk-tokens (tiny random BERT) -> real FAISS."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.encode import EncodeJob, encode_corpus
from embedpipe.encode.encoder import EncoderSpec
from embedpipe.errors import CorruptArtifact, EmbedpipeError
from embedpipe.formats.index_spans import write_spans_file
from embedpipe.formats.vectors import open_vectors
from embedpipe.index import IndexConfig, append_index, build_index, open_index
from embedpipe.retrieval import search_texts
from embedpipe.retrieval.documents import doc_of, show_texts
from embedpipe.retrieval.evaluate import evaluate
from embedpipe.retrieval.search import search_file
from tests.helpers import assert_one_line_error, run_cli, write_corpus
from tests.retrieval.test_documents import QUERIES, long_documents

DOC_IDS = [1000 + 7 * i for i in range(16)]   # int64 document ids


def encode(model, corpus, out, **options):
    return encode_corpus(EncodeJob(str(corpus), out=str(out), runner="local", threads=1,
                                   spec=EncoderSpec(model=str(model)), **options))


@pytest.fixture(scope="module")
def chunked(tiny_model_dir, tmp_path_factory):
    """(corpus, vector dir, {doc id: text}): 16 documents with int64 ids, in chunks of 16 tokens."""
    root = tmp_path_factory.mktemp("spans")
    docs = long_documents(len(DOC_IDS))
    corpus = write_corpus(root / "corpus.parquet", docs, ids=pa.array(DOC_IDS, pa.int64()))
    encode(tiny_model_dir, corpus, root / "corpus.vectors", chunk_tokens=16, chunk_overlap=4, rows_per_shard=7)
    return corpus, root / "corpus.vectors", dict(zip(DOC_IDS, docs))


def shard_spans(vectors_dir) -> dict[str, tuple]:
    """chunk id -> (doc_id, start, end), as the vector shards hold them."""
    vectors = open_vectors(vectors_dir)
    rows = [r for s in vectors.manifest["shards"]
            for r in pq.read_table(vectors.path / s["file"], columns=["id", "doc_id", "start", "end"]).to_pylist()]
    return {r["id"]: (r["doc_id"], r["start"], r["end"]) for r in rows}


def index_spans(index) -> list[tuple]:
    docs, spans = index.spans.take_each(np.arange(index.index.ntotal)[None])
    return [(d, *s) for d, s in zip(docs[0], spans[0])]


def test_spans_and_int_ids_come_from_the_index_directory_with_the_vectors_gone(chunked, tmp_path, caplog):
    corpus, vectors, docs = chunked
    copy = tmp_path / "copy.vectors"
    shutil.copytree(vectors, copy)
    out = tmp_path / "hnsw.index"    # HNSW: the held-out tuning chunks join last, out of the vectors' order
    build_index(copy, out, IndexConfig(factory="HNSW8"))
    want = shard_spans(copy)
    shutil.rmtree(copy)
    index = open_index(out)
    assert index.spans.doc_type == pa.int64()
    assert index_spans(index) == [want[c] for c in index.ids.to_pylist()]
    hits = search_texts(index, QUERIES, 3)
    for hit in (h for found in hits for h in found):
        assert type(hit.id) is int and doc_of(hit.chunk) == str(hit.id)
        assert (hit.id, *hit.span) == want[hit.chunk]
    show_texts(index, hits[0], lambda ids: {str(i): docs[i] for i in DOC_IDS if str(i) in ids})
    assert all(h.text == docs[h.id][h.span[0]:h.span[1]] for h in hits[0])
    for hit in search_texts(index, QUERIES[:1], 4, doc_score="chunks")[0]:   # chunks as hits: spans too
        assert hit.chunk is None and (int(doc_of(hit.id)), *hit.span) == want[hit.id]
    assert "showing whole documents" not in caplog.text
    result = run_cli("search", out, QUERIES[0], "-k", 2, "--corpus", corpus, "--json")
    assert result.exit_code == 0, result.output
    for hit in json.loads(result.output)["hits"]:
        assert hit["id"] in docs and hit["text"] == docs[hit["id"]][hit["span"][0]:hit["span"][1]]


def test_search_file_and_evaluate_answer_documents_typed_as_the_corpus(chunked, tmp_path):
    _, vectors, _ = chunked
    build_index(vectors, tmp_path / "flat.index", IndexConfig(factory="Flat"))
    queries = tmp_path / "q.parquet"
    pq.write_table(pa.table({"id": ["q0", "q1"], "text": QUERIES[:2]}), queries)
    search_file(tmp_path / "flat.index", queries, tmp_path / "hits.parquet", k=4)
    hits = pq.read_table(tmp_path / "hits.parquet")
    assert hits.schema.field("doc_id").type == pa.int64() and set(hits.column("doc_id").to_pylist()) <= set(DOC_IDS)
    firsts = hits.filter(pa.compute.equal(hits.column("rank"), 1))
    qrels = tmp_path / "qrels.parquet"       # qrels typed as the corpus was: int64 document ids
    pq.write_table(pa.table({"query_id": firsts.column("query_id"), "doc_id": firsts.column("doc_id"),
                             "relevance": [1, 1]}), qrels)
    report = evaluate(tmp_path / "flat.index", queries, qrels, [10])
    assert report["index"]["mrr_at_10"] == pytest.approx(1.0) == report["exact"]["mrr_at_10"]


def test_append_keeps_spans_aligned_and_chunks_and_whole_texts_do_not_mix(chunked, tiny_model_dir, tmp_path):
    _, _, docs = chunked
    corpus = write_corpus(tmp_path / "c.parquet", list(docs.values())[:9], ids=pa.array(DOC_IDS[:9], pa.int64()))
    vectors = tmp_path / "v"
    encode(tiny_model_dir, corpus, vectors, chunk_tokens=16, chunk_overlap=4)
    build_index(vectors, tmp_path / "idx", IndexConfig(factory="Flat"))
    write_corpus(corpus, list(docs.values()), ids=pa.array(DOC_IDS, pa.int64()))   # the corpus grew
    encode(tiny_model_dir, corpus, vectors, chunk_tokens=16, chunk_overlap=4)
    info = append_index(tmp_path / "idx")
    index = open_index(tmp_path / "idx")
    assert info["appends"] and index.index.ntotal == open_vectors(vectors).rows
    assert index_spans(index) == [shard_spans(vectors)[c] for c in index.ids.to_pylist()]
    whole = tmp_path / "whole"
    encode(tiny_model_dir, corpus, whole)
    with pytest.raises(EmbedpipeError, match="holds whole texts, the index chunks of 16 tokens .overlap 4."):
        append_index(tmp_path / "idx", whole)
    build_index(whole, tmp_path / "whole.index", IndexConfig(factory="Flat"))
    assert "spans_file" not in json.loads((tmp_path / "whole.index" / "index.json").read_text())
    with pytest.raises(EmbedpipeError, match="holds chunks of 16 tokens .overlap 4., the index whole texts"):
        append_index(tmp_path / "whole.index", vectors)
    assert open_index(tmp_path / "whole.index").spans is None


@pytest.fixture
def index_copy(chunked, tmp_path):
    build_index(chunked[1], tmp_path / "idx", IndexConfig(factory="Flat"))
    return tmp_path / "idx"


def test_a_truncated_spans_file_is_one_error_line(index_copy):
    path = index_copy / "spans.arrow"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptArtifact, match="spans.arrow"):
        open_index(index_copy)
    assert_one_line_error(run_cli("search", index_copy, QUERIES[0]), "spans.arrow", "rebuild")


def test_a_spans_file_of_another_row_count_or_columns_or_missing_is_refused(index_copy):
    n = open_index(index_copy).index.ntotal
    write_spans_file(index_copy / "spans.arrow", pa.table({"doc_id": [1] * (n - 1), "start": [0] * (n - 1),
                                                            "end": [1] * (n - 1)}))
    with pytest.raises(CorruptArtifact, match=f"holds {n - 1} rows, index.json says {n}"):
        open_index(index_copy)
    write_spans_file(index_copy / "spans.arrow", pa.table({"doc_id": [1] * n, "start": ["0"] * n, "end": [1] * n}))
    with pytest.raises(CorruptArtifact, match="start and end integers"):
        open_index(index_copy)
    (index_copy / "spans.arrow").unlink()
    with pytest.raises(CorruptArtifact, match="spans.arrow is missing"):
        open_index(index_copy)
    info = json.loads((index_copy / "index.json").read_text())
    (index_copy / "index.json").write_text(json.dumps({**info, "spans_file": "../elsewhere.arrow"}))
    with pytest.raises(CorruptArtifact, match="names the spans file '../elsewhere.arrow'"):
        open_index(index_copy)


def test_an_index_at_an_s3_url_carries_its_spans(chunked, tmp_path, monkeypatch):
    from embedpipe.testing.services import s3_server

    _, vectors, _ = chunked
    with s3_server(tmp_path) as server:
        for name, value in server.env.items():
            if name.startswith("AWS_"):
                monkeypatch.setenv(name, value)
        build_index(vectors, "s3://embedpipe/chunks.index", IndexConfig(factory="Flat"))
        index = open_index("s3://embedpipe/chunks.index")     # downloaded: spans.arrow with the rest
        assert index.spans is not None
        assert index_spans(index) == [shard_spans(vectors)[c] for c in index.ids.to_pylist()]


@pytest.mark.slow
def test_a_ray_built_index_of_chunks_has_its_spans(chunked, tmp_path):
    _, vectors, _ = chunked     # an embedded local Ray: parts merged in the order they finish
    info = build_index(vectors, tmp_path / "ray.index", IndexConfig(factory="IVF2,Flat", runner="ray"))
    index = open_index(tmp_path / "ray.index")
    assert info["runner"]["name"] == "ray" and index.spans is not None
    assert index_spans(index) == [shard_spans(vectors)[c] for c in index.ids.to_pylist()]


def test_chunks_that_do_not_match_the_index_rows_one_to_one_are_refused(chunked):
    from embedpipe.index.spans import spans_in_index_order

    vectors = open_vectors(chunked[1])
    ids = vectors.read_all()[0]
    assert spans_in_index_order(vectors, ids.take(np.arange(len(ids))[::-1])).num_rows == len(ids)
    for wrong in (ids.slice(1), pa.concat_arrays([ids.slice(1), pa.array(["nope#0"])])):
        with pytest.raises(EmbedpipeError, match="do not match the index's .* ids one to one"):
            spans_in_index_order(vectors, wrong)
