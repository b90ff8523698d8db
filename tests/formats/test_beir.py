"""BEIR queries and qrels past the shared column rules (test_columns.py): relevance grades are
integers, and every bad row or file is one line naming it."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.errors import BadInput
from embedpipe.formats.beir import read_qrels, read_queries


def write(path, columns: dict):
    pq.write_table(pa.table(columns), path)
    return path


def qrels(path, relevance):
    n = len(relevance)
    return write(path, {"query_id": ["q1"] * n, "doc_id": [f"d{i}" for i in range(n)], "relevance": relevance})


@pytest.mark.parametrize("relevance", [
    pa.array([0, 1, 2], pa.int64()), pa.array([0, 1, 2], pa.int8()), pa.array([0, 1, 2], pa.uint32()),
    pa.array([0.0, 1.0, 2.0]), pa.array([0.0, 1.0, 2.0], pa.float32()),
], ids=["int64", "int8", "uint32", "whole doubles", "whole floats"])
def test_integer_relevance(relevance, tmp_path):
    judged = read_qrels(qrels(tmp_path / "qrels.parquet", relevance))
    assert judged == {"q1": {"d0": 0, "d1": 1, "d2": 2}}
    assert all(type(grade) is int for grade in judged["q1"].values())


@pytest.mark.parametrize("relevance, message", [
    (pa.array([1.0, 0.5, 2.0]), "relevance at row 1 is 0.5, not a whole number"),
    (pa.array([1.0, 2.0, float("nan")]), "relevance at row 2 is nan, not a whole number"),
    (pa.array([1.0, float("inf"), 2.0]), "relevance at row 1 is inf, not a whole number"),
    (pa.array(["high", "low", "high"]), "relevance column holds string (row 0 is 'high')"),
    (pa.array(["1", "2", "0"]), "relevance column holds string (row 0 is '1')"),
    (pa.array([True, False, True]), "relevance column holds bool (row 0 is True)"),
    (pa.array([1, None, 2]), "relevance is null at row 1"),
], ids=["half", "nan", "inf", "words", "digits as strings", "bool", "null"])
def test_relevance_that_is_not_an_integer_is_one_line_naming_the_row(relevance, message, tmp_path):
    path = qrels(tmp_path / "qrels.parquet", relevance)
    with pytest.raises(BadInput) as caught:
        read_qrels(path)
    assert str(caught.value).startswith(f"qrels file {path}: {message}")
    assert "\n" not in str(caught.value)


def test_qrels_without_rows(tmp_path):
    path = write(tmp_path / "qrels.parquet", {"query_id": pa.array([], pa.string()),
                                              "doc_id": pa.array([], pa.string()),
                                              "relevance": pa.array([], pa.int32())})
    with pytest.raises(BadInput, match="has no rows"):
        read_qrels(path)


def test_queries_keep_their_order_and_id_type(tmp_path):
    path = write(tmp_path / "q.parquet", {"id": [30, 10, 20], "text": ["c", "a", "b"]})
    assert read_queries(path) == ([30, 10, 20], ["c", "a", "b"])


@pytest.mark.parametrize("columns, message", [
    ({"id": ["q1", "q2", "q3"], "text": ["a dog", " ", None]}, r"2 query text\(s\) in .* are empty \(ids 'q2', 'q3'\)"),
    ({"id": ["q1", "q2", "q1"], "text": ["a", "b", "c"]}, "query ids in .* are not unique"),
    ({"id": [1, 2], "text": pa.array([b"\xff", b"ok"]).view(pa.string())},
     r"1 query text\(s\) in .* are not valid UTF-8 \(ids 1\)"),
], ids=["empty texts", "repeated ids", "invalid utf8"])
def test_bad_queries(columns, message, tmp_path):
    with pytest.raises(BadInput, match=message):
        read_queries(write(tmp_path / "q.parquet", columns))


@pytest.mark.parametrize("read, what", [(read_queries, "queries"), (read_qrels, "qrels")])
def test_missing_and_unreadable_files(read, what, tmp_path):
    with pytest.raises(BadInput, match=rf"^{what} file .*nope\.parquet does not exist$"):
        read(tmp_path / "nope.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(BadInput, match=rf"^{what} file .*junk\.parquet is not a readable parquet file \("):
        read(tmp_path / "junk.parquet")
