"""`embedpipe search` and `embedpipe evaluate`: real encode (tiny random BERT) -> real FAISS index ->
text queries; BEIR/MTEB metrics against hand computation; every bad input of the issue."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.encode import EncodeJob, encode_corpus
from embedpipe.encode.encoder import EncoderSpec
from embedpipe.errors import EmbedpipeError
from embedpipe.formats.vectors import VectorWriter, open_vectors
from embedpipe.index import IndexConfig, build_index, open_index
from embedpipe.retrieval import search_texts
from embedpipe.retrieval.evaluate import evaluate
from embedpipe.retrieval.metrics import retrieval_metrics
from tests.helpers import TEXTS, WORDS, assert_one_line_error, entries, run_cli, write_corpus


def corpus_texts(n_extra: int = 50) -> list[str]:
    """TEXTS plus distinct four-word phrases from the tiny model's vocabulary."""
    rng = np.random.default_rng(0)
    phrases = list(TEXTS)
    while len(phrases) < len(TEXTS) + n_extra:
        phrase = " ".join(rng.choice(WORDS[20:], 4))
        if phrase not in phrases:
            phrases.append(phrase)
    return phrases


@pytest.fixture(scope="module")
def encoded(tiny_model_dir, tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """(corpus parquet, vector dir, texts): 60 texts encoded with the real pipeline."""
    root = tmp_path_factory.mktemp("retrieval")
    texts = corpus_texts()
    corpus = write_corpus(root / "corpus.parquet", texts, ids=[f"d{i}" for i in range(len(texts))])
    encode_corpus(EncodeJob(str(corpus), out=str(root / "corpus.vectors"), runner="local", threads=1,
                            spec=EncoderSpec(model=str(tiny_model_dir))))
    return corpus, root / "corpus.vectors", texts


@pytest.fixture(scope="module")
def flat_index(encoded) -> Path:
    out = encoded[1].parent / "flat.index"
    assert build_index(encoded[1], out)["factory"] == "Flat"  # auto picks exact search for 60 rows
    return out


@pytest.fixture(scope="module")
def hnsw_index(encoded) -> Path:
    out = encoded[1].parent / "hnsw.index"
    build_index(encoded[1], out, IndexConfig(factory="HNSW16"))
    return out


def write_queries(path: Path, ids: list, texts: list) -> Path:
    pq.write_table(pa.table({"id": ids, "text": texts}), path)
    return path


def write_qrels(path: Path, rows: list[tuple]) -> Path:
    query_ids, doc_ids, relevance = zip(*rows)
    pq.write_table(pa.table({"query_id": list(query_ids), "doc_id": list(doc_ids),
                             "relevance": pa.array(relevance, pa.int32())}), path)
    return path


# --- metrics --------------------------------------------------------------------------------------

def dcg(gains: list[float]) -> float:
    """trec_eval's DCG: gain / log2(rank + 1), ranks from 1."""
    return sum(g / math.log2(rank + 2) for rank, g in enumerate(gains))


def test_metrics_equal_a_hand_computed_example():
    run = {
        "q1": {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6},           # relevant b (1) and d (2)
        "q2": {f"x{i}": 1.0 - i / 100 for i in range(15)},        # relevant x11 (1): rank 12
        "q3": {"p": 0.5, "q": 0.4},                               # relevant r never retrieved
    }
    qrels = {"q1": {"b": 1, "d": 2}, "q2": {"x11": 1}, "q3": {"r": 1}}
    got = retrieval_metrics(run, qrels, [10, 100])

    ndcg10_q1 = dcg([0, 1, 0, 2]) / dcg([2, 1])
    assert got["ndcg_at_10"] == pytest.approx((ndcg10_q1 + 0 + 0) / 3)
    assert got["ndcg_at_100"] == pytest.approx((ndcg10_q1 + 1 / math.log2(13) + 0) / 3)
    assert got["recall_at_10"] == pytest.approx((1 + 0 + 0) / 3)
    assert got["recall_at_100"] == pytest.approx((1 + 1 + 0) / 3)
    assert got["mrr_at_10"] == pytest.approx((1 / 2 + 0 + 0) / 3)
    assert got["mrr_at_100"] == pytest.approx((1 / 2 + 1 / 12 + 0) / 3)


def test_zero_relevance_does_not_count_as_relevant():
    got = retrieval_metrics({"q": {"a": 2.0, "b": 1.0}}, {"q": {"a": 0, "b": 1}}, [10])
    assert got["mrr_at_10"] == 0.5 and got["recall_at_10"] == 1.0
    assert got["ndcg_at_10"] == pytest.approx(1 / math.log2(3))


# --- search ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("index_fixture", ["flat_index", "hnsw_index"])
def test_search_after_encode_finds_a_row_by_its_own_text(encoded, index_fixture, request):
    index_dir = request.getfixturevalue(index_fixture)
    corpus, _, texts = encoded
    for row in (3, 17, 42):
        result = run_cli("search", str(index_dir), texts[row], "-k", "3", "--json", "--corpus", str(corpus))
        assert result.exit_code == 0, result.output
        hits = json.loads(result.stdout.strip().splitlines()[-1])["hits"]
        assert [h["rank"] for h in hits] == [1, 2, 3]
        assert hits[0]["id"] == f"d{row}" and hits[0]["text"] == texts[row]
        assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)  # cosine with itself
        assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_search_prints_rank_id_score(flat_index, encoded):
    result = run_cli("search", str(flat_index), encoded[2][8], "-k", "2")
    assert result.exit_code == 0, result.output
    first = result.stdout.strip().splitlines()[-2].split("\t")
    assert first[:2] == ["1", "d8"] and float(first[2]) == pytest.approx(1.0, abs=1e-4)


def test_batch_search_writes_a_results_parquet(flat_index, encoded, tmp_path):
    texts = encoded[2]
    queries = write_queries(tmp_path / "q.parquet", ["qa", "qb", "qc"], [texts[1], texts[20], texts[55]])
    result = run_cli("search", str(flat_index), "--queries", str(queries), "--out", str(tmp_path / "r.parquet"),
                     "-k", "5")
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "r.parquet")
    assert table.column_names == ["query_id", "rank", "doc_id", "score"]
    assert table.num_rows == 15
    rows = table.to_pylist()
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5] * 3
    assert ([(r["query_id"], r["doc_id"]) for r in rows if r["rank"] == 1]
            == [("qa", "d1"), ("qb", "d20"), ("qc", "d55")])
    assert entries(tmp_path) == {"q.parquet", "r.parquet"}  # no temporary file left

    again = run_cli("search", str(flat_index), "--queries", str(queries), "--out", str(tmp_path / "r.parquet"))
    assert_one_line_error(again, "--overwrite")
    assert pq.read_table(tmp_path / "r.parquet").equals(table)


# --- evaluate -------------------------------------------------------------------------------------

def test_evaluate_equals_hand_computation_from_the_ranking(flat_index, hnsw_index, encoded, tmp_path):
    texts = encoded[2]
    query_texts = [texts[3], texts[8], "the old dog and the small bird"]
    ranking = [[h.id for h in hits] for hits in search_texts(open_index(flat_index), query_texts, k=60)]
    queries = write_queries(tmp_path / "q.parquet", ["q1", "q2", "q3"], query_texts)
    qrels = write_qrels(tmp_path / "qrels.parquet", [
        ("q1", ranking[0][0], 1), ("q1", ranking[0][2], 2),     # ranks 1 and 3
        ("q2", ranking[1][11], 1),                              # rank 12: outside the top 10
        ("q3", ranking[2][1], 1),                               # rank 2
    ])
    expected = {
        "ndcg_at_10": (dcg([1, 0, 2]) / dcg([2, 1]) + 0 + dcg([0, 1])) / 3,
        "recall_at_10": (1 + 0 + 1) / 3,
        "mrr_at_10": (1 + 0 + 1 / 2) / 3,
        "ndcg_at_100": (dcg([1, 0, 2]) / dcg([2, 1]) + 1 / math.log2(13) + dcg([0, 1])) / 3,
        "recall_at_100": 1.0,
        "mrr_at_100": (1 + 1 / 12 + 1 / 2) / 3,
    }
    for index_dir in (flat_index, hnsw_index):
        result = run_cli("evaluate", str(index_dir), "--queries", str(queries), "--qrels", str(qrels), "--json")
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["queries"] == 3 and report["main_score"] == "ndcg_at_10"
        assert report["exact"] == pytest.approx(expected)
        if index_dir == flat_index:
            assert report["index"] == pytest.approx(expected)

    table = run_cli("evaluate", str(flat_index), "--queries", str(queries), "--qrels", str(qrels), "--k", "10")
    assert table.exit_code == 0, table.output
    assert "nDCG@10" in table.stdout and f"{expected['ndcg_at_10']:.4f}" in table.stdout


def test_queries_without_judgments_are_skipped(flat_index, encoded, tmp_path):
    texts = encoded[2]
    queries = write_queries(tmp_path / "q.parquet", ["q1", "q2"], [texts[5], texts[6]])
    qrels = write_qrels(tmp_path / "qrels.parquet", [("q1", "d5", 1)])
    result = run_cli("evaluate", str(flat_index), "--queries", str(queries), "--qrels", str(qrels), "--json")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["queries"] == 1 and report["index"]["ndcg_at_10"] == pytest.approx(1.0)


@pytest.mark.parametrize("k_text, main", [("1,1000", "ndcg_at_1"), ("5,15", "ndcg_at_5"), ("3", "ndcg_at_3"),
                                          ("100,20", "ndcg_at_20"), ("10,1000", "ndcg_at_10")])
def test_the_main_score_is_always_a_metric_the_report_holds(flat_index, good_files, k_text, main):
    queries, qrels = good_files
    result = run_cli("evaluate", flat_index, "--queries", queries, "--qrels", qrels, "--k", k_text, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["main_score"] == main and main in report["index"] and main in report["exact"]
    library = evaluate(flat_index, queries, qrels, [int(k) for k in k_text.split(",")])
    assert library["main_score"] == main and library["index"][main] == pytest.approx(report["index"][main])


# --- bad input ------------------------------------------------------------------------------------

@pytest.fixture
def good_files(encoded, tmp_path) -> tuple[Path, Path]:
    texts = encoded[2]
    return (write_queries(tmp_path / "q.parquet", ["q1", "q2"], [texts[1], texts[2]]),
            write_qrels(tmp_path / "qrels.parquet", [("q1", "d1", 1), ("q2", "d2", 1)]))


def test_qrels_naming_docs_absent_from_the_corpus(flat_index, good_files, tmp_path):
    qrels = write_qrels(tmp_path / "bad.parquet", [("q1", "d1", 1), ("q2", "nope", 1)])
    result = run_cli("evaluate", str(flat_index), "--queries", str(good_files[0]), "--qrels", str(qrels))
    assert_one_line_error(result, "not in the indexed corpus", "'nope'")


def test_qrels_naming_unknown_queries(flat_index, good_files, tmp_path):
    qrels = write_qrels(tmp_path / "bad.parquet", [("q1", "d1", 1), ("q9", "d2", 1)])
    result = run_cli("evaluate", str(flat_index), "--queries", str(good_files[0]), "--qrels", str(qrels))
    assert_one_line_error(result, "'q9'")


def test_empty_query_text_in_a_file(flat_index, good_files, tmp_path):
    queries = write_queries(tmp_path / "bad.parquet", ["q1", "q2"], ["a dog", "  "])
    result = run_cli("evaluate", str(flat_index), "--queries", str(queries), "--qrels", str(good_files[1]))
    assert_one_line_error(result, "empty", "'q2'")
    result = run_cli("search", str(flat_index), "--queries", str(queries), "--out", str(tmp_path / "r.parquet"))
    assert_one_line_error(result, "empty")
    assert not (tmp_path / "r.parquet").exists()


def test_empty_query_text_on_the_command_line(flat_index):
    assert_one_line_error(run_cli("search", str(flat_index), "  "), "query text is empty")


@pytest.mark.parametrize("which", ["queries", "qrels"])
def test_missing_columns(flat_index, good_files, tmp_path, which):
    pq.write_table(pa.table({"qid": ["q1"], "body": ["x"]}), tmp_path / "bad.parquet")
    files = {"queries": good_files[0], "qrels": good_files[1], which: tmp_path / "bad.parquet"}
    result = run_cli("evaluate", str(flat_index), "--queries", str(files["queries"]), "--qrels", str(files["qrels"]))
    assert_one_line_error(result, "has no id column", "(columns: qid, body)", which)


def test_search_an_index_dir_without_index_json(tmp_path):
    (tmp_path / "i").mkdir()
    (tmp_path / "i" / "index.faiss").write_bytes(b"")
    assert_one_line_error(run_cli("search", str(tmp_path / "i"), "a dog"), "no index.json")


def test_index_whose_vectors_differ_in_dimension_from_the_encoder(encoded, tmp_path):
    """An index built from vectors that claim this encoder but have another width."""
    manifest = open_vectors(encoded[1]).manifest
    with VectorWriter(tmp_path / "v", dim=manifest["dim"] + 3) as writer:
        writer.write([f"d{i}" for i in range(20)], np.random.default_rng(0).normal(size=(20, manifest["dim"] + 3)))
        writer.publish({k: v for k, v in manifest.items() if k not in ("dim", "dtype", "rows", "shards")})
    build_index(tmp_path / "v", tmp_path / "i")
    result = run_cli("search", str(tmp_path / "i"), "a small dog")
    assert_one_line_error(result, f"dimension {manifest['dim'] + 3}")


def test_search_needs_one_query_source(flat_index, tmp_path):
    assert run_cli("search", str(flat_index)).exit_code != 0
    result = run_cli("search", str(flat_index), "--queries", str(tmp_path / "q.parquet"))
    assert result.exit_code != 0 and "--out" in result.output


def test_exact_search_needs_the_source_vectors(encoded, good_files, tmp_path):
    import shutil

    vectors = tmp_path / "copy.vectors"
    shutil.copytree(encoded[1], vectors)
    build_index(vectors, tmp_path / "i", IndexConfig(factory="HNSW16"))
    shutil.rmtree(vectors)
    args = ["evaluate", str(tmp_path / "i"), "--queries", str(good_files[0]), "--qrels", str(good_files[1])]
    assert_one_line_error(run_cli(*args), "needed for --exact, the comparison with exhaustive search", "--no-exact")
    result = run_cli(*args, "--no-exact", "--json")
    assert result.exit_code == 0, result.output
    assert "exact" not in json.loads(result.stdout.strip().splitlines()[-1])


def test_bad_cutoffs(flat_index, good_files):
    result = run_cli("evaluate", str(flat_index), "--queries", str(good_files[0]), "--qrels", str(good_files[1]),
                    "--k", "ten")
    assert result.exit_code != 0 and "Traceback" not in result.output and "10,100" in result.output


def test_library_errors_are_embedpipe_errors(flat_index):
    with pytest.raises(EmbedpipeError, match="k must be at least 1"):
        open_index(flat_index).search(np.zeros((1, open_index(flat_index).dim), np.float32), 0)


def test_index_tunes_on_a_queries_parquet_encoded_like_the_corpus(encoded, tmp_path):
    _, vectors, texts = encoded
    queries = write_queries(tmp_path / "q.parquet", [f"q{i}" for i in range(20)], texts[:20])
    info = build_index(vectors, tmp_path / "i", IndexConfig(factory="HNSW8", tuning_vectors=str(queries)))
    assert info["tuning"]["on"] == str(queries) and info["tuning"]["queries"] == 20
    assert info["recall_at_10"] >= 0.95


def test_tuning_queries_parquet_with_an_empty_text(encoded, tmp_path):
    _, vectors, texts = encoded
    queries = write_queries(tmp_path / "q.parquet", ["a", "b"], [texts[0], " "])
    with pytest.raises(EmbedpipeError, match=r"1 query text\(s\) in .* are empty"):
        build_index(vectors, tmp_path / "i", IndexConfig(factory="HNSW8", tuning_vectors=str(queries)))
    assert not (tmp_path / "i").exists()
