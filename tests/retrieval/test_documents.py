"""Search and evaluate by document over an index of chunks: real encode with --chunk-tokens (tiny
random BERT) -> real FAISS -> documents ranked as a brute-force aggregation of every chunk's score."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.encode import EncodeJob, encode_corpus
from embedpipe.encode.encoder import EncoderSpec
from embedpipe.errors import BadInput
from embedpipe.formats.vectors import open_vectors
from embedpipe.index import IndexConfig, build_index, open_index
from embedpipe.retrieval import search_texts
from embedpipe.retrieval.documents import doc_of, show_texts
from embedpipe.retrieval.evaluate import evaluate
from embedpipe.retrieval.metrics import retrieval_metrics
from embedpipe.retrieval.search import query_encoder, search_file
from tests.helpers import WORDS, run_cli, write_corpus

QUERIES = ["red fish in the river", "old book on fire", "the small cat", "green tree by the road"]


def long_documents(n: int = 24) -> list[str]:
    rng = np.random.default_rng(1)
    docs = []
    for _ in range(n):
        sentences = [" ".join(rng.choice(WORDS, rng.integers(4, 9))) + "." for _ in range(rng.integers(1, 12))]
        docs.append(" ".join(sentences))
    return docs


@pytest.fixture(scope="module")
def chunked(tiny_model_dir, tmp_path_factory):
    """(corpus, vector dir, index dir, {doc id: text}): 24 documents in chunks of 16 tokens."""
    root = tmp_path_factory.mktemp("documents")
    docs = long_documents()
    ids = [f"doc#{i}" if i % 5 == 0 else f"d{i}" for i in range(len(docs))]   # a "#" in an id reads back
    corpus = write_corpus(root / "corpus.parquet", docs, ids=ids)
    vectors = root / "corpus.vectors"
    encode_corpus(EncodeJob(str(corpus), out=str(vectors), runner="local", threads=1, chunk_tokens=16,
                            chunk_overlap=4, spec=EncoderSpec(model=str(tiny_model_dir))))
    build_index(vectors, root / "flat.index", IndexConfig(factory="Flat"))
    return corpus, vectors, root / "flat.index", dict(zip(ids, docs))


def brute_force(vectors_dir, query: np.ndarray, doc_score: str) -> list[tuple[str, float]]:
    ids, vectors = open_vectors(vectors_dir).read_all()
    scores = vectors @ query
    by_doc: dict[str, list[float]] = {}
    for chunk, score in zip(ids.to_pylist(), scores.tolist()):
        by_doc.setdefault(doc_of(chunk), []).append(score)
    take = {"best": 1, "sum2": 2, "sum3": 3}[doc_score]
    totals = {d: sum(sorted(s, reverse=True)[:take]) for d, s in by_doc.items()}
    return sorted(totals.items(), key=lambda item: -item[1])


@pytest.mark.parametrize("doc_score,k", [("best", 3), ("sum2", 24), ("sum3", 24)])
def test_documents_rank_as_the_aggregation_of_every_chunk(chunked, doc_score, k):
    _, vectors, index_dir, docs = chunked
    index = open_index(index_dir)
    assert open_vectors(vectors).rows > 2 * len(docs)        # documents really are several chunks
    encode = query_encoder(index)
    hits = search_texts(index, QUERIES, k, encode, doc_score)
    for query, found in zip(encode(QUERIES), hits):
        want = brute_force(vectors, query, doc_score)[:k]
        assert [h.id for h in found] == [d for d, _ in want]
        assert np.allclose([h.score for h in found], [s for _, s in want], atol=1e-5)
        assert all(doc_of(h.chunk) == h.id for h in found)
        assert len({h.id for h in found}) == len(found)


def test_chunks_are_the_hits_when_asked(chunked):
    index = open_index(chunked[2])
    hits = search_texts(index, QUERIES[:1], 5, doc_score="chunks")[0]
    assert all("#" in str(h.id) and h.chunk is None for h in hits)


def test_search_corpus_shows_the_best_chunks_span(chunked):
    corpus, _, index_dir, docs = chunked
    result = run_cli("search", index_dir, QUERIES[0], "-k", 4, "--corpus", corpus, "--json")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)["hits"]
    for hit in hits:
        start, end = hit["span"]
        assert hit["text"] == docs[hit["id"]][start:end] and hit["chunk"].startswith(hit["id"] + "#")
    table = run_cli("search", index_dir, QUERIES[0], "-k", 2, "--corpus", corpus)
    first = table.output.splitlines()[0].split("\t")
    assert first[1] == hits[0]["id"] and first[3] == f"[{hits[0]['span'][0]}:{hits[0]['span'][1]}]"


def test_an_index_written_before_spans_arrow_reads_spans_from_the_vectors_and_without_them_says_why(
        chunked, tmp_path, caplog):
    _, vectors, _, docs = chunked
    copy = tmp_path / "copy.vectors"
    shutil.copytree(vectors, copy)
    out = tmp_path / "flat.index"
    build_index(copy, out, IndexConfig(factory="Flat"))
    info = json.loads((out / "index.json").read_text())
    (out / "index.json").write_text(json.dumps({k: v for k, v in info.items() if k != "spans_file"}))
    (out / "spans.arrow").unlink()                                 # as an index written before it
    index = open_index(out)
    hits = search_texts(index, QUERIES[:1], 3)[0]
    assert index.spans is None and all(h.span is None for h in hits)
    show_texts(index, hits, lambda ids: {i: docs[i] for i in ids})
    assert all(h.text == docs[h.id][h.span[0]:h.span[1]] for h in hits) and "showing whole" not in caplog.text
    shutil.rmtree(copy)                                            # the vectors the spans come from
    hits = search_texts(index, QUERIES[:1], 3)[0]
    show_texts(index, hits, lambda ids: {i: docs[i] for i in ids})
    assert [h.text for h in hits] == [docs[h.id] for h in hits] and all(h.span is None for h in hits)
    assert "showing whole documents" in caplog.text and str(copy) in caplog.text


def test_search_file_writes_document_ids(chunked, tmp_path):
    _, _, index_dir, docs = chunked
    queries = tmp_path / "q.parquet"
    pq.write_table(pa.table({"id": ["q1", "q2"], "text": QUERIES[:2]}), queries)
    search_file(index_dir, queries, tmp_path / "hits.parquet", k=5, doc_score="sum2")
    hits = pq.read_table(tmp_path / "hits.parquet").to_pylist()
    assert len(hits) == 10 and {h["doc_id"] for h in hits} <= set(docs)


def test_evaluate_scores_documents_against_qrels_naming_documents(chunked, tmp_path):
    _, vectors, index_dir, docs = chunked
    index = open_index(index_dir)
    query_vectors = query_encoder(index)(QUERIES)
    relevant = [brute_force(vectors, q, "best")[i][0] for i, q in enumerate(query_vectors)]  # ranks 1, 2, 3, 4
    queries, qrels = tmp_path / "q.parquet", tmp_path / "qrels.parquet"
    pq.write_table(pa.table({"id": [f"q{i}" for i in range(4)], "text": QUERIES}), queries)
    pq.write_table(pa.table({"query_id": [f"q{i}" for i in range(4)], "doc_id": relevant,
                             "relevance": [1] * 4}), qrels)
    for doc_score in ("best", "sum3"):
        report = evaluate(index_dir, queries, qrels, [10], doc_score=doc_score)
        run = {f"q{i}": dict(brute_force(vectors, q, doc_score)[:10]) for i, q in enumerate(query_vectors)}
        want = retrieval_metrics(run, {f"q{i}": {d: 1} for i, d in enumerate(relevant)}, [10])
        assert report["index"] == pytest.approx(want) and report["exact"] == pytest.approx(want)
        assert report["doc_score"] == doc_score
    assert evaluate(index_dir, queries, qrels, [10])["index"]["mrr_at_10"] == pytest.approx((1 + 1/2 + 1/3 + 1/4) / 4)
    chunk_qrels = tmp_path / "chunk_qrels.parquet"    # qrels naming chunks: not documents of the index
    pq.write_table(pa.table({"query_id": ["q0"], "doc_id": [relevant[0] + "#0"], "relevance": [1]}), chunk_qrels)
    with pytest.raises(BadInput, match="not in the indexed corpus"):
        evaluate(index_dir, queries, chunk_qrels, [10])
    result = run_cli("evaluate", index_dir, "--queries", queries, "--qrels", qrels, "--doc-score", "max")
    assert result.exit_code == 2 and "'max' is not one of 'best', 'sum2', 'sum3', 'chunks'" in result.output


def test_an_approximate_index_is_compared_with_exact_search_by_document(chunked):
    _, vectors, _, _ = chunked
    out = vectors.parent / "hnsw.index"
    build_index(vectors, out, IndexConfig(factory="HNSW8"))
    index = open_index(out)
    found = search_texts(index, QUERIES, 3)
    for query, hits in zip(query_encoder(index)(QUERIES), found):
        assert len({h.id for h in hits}) == 3 and all(h.id in dict(brute_force(vectors, query, "best")) for h in hits)


def test_a_pipeline_evaluation_names_its_document_score():
    from embedpipe.errors import ConfigError
    from embedpipe.retrieval.evaluate import EvaluateJob, evaluation_config

    with pytest.raises(ConfigError, match="doc_score must be one of best, sum2, sum3, chunks, got 'max'"):
        EvaluateJob("i", "q", "r", doc_score="max")
    assert "doc_score" not in evaluation_config(EvaluateJob("i", "q", "r"))      # earlier reports stay current
    assert evaluation_config(EvaluateJob("i", "q", "r", doc_score="sum2"))["doc_score"] == "sum2"
