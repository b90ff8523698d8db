"""Retrieval evaluation files as BEIR lays them out (parquet): queries, qrels, and search results.

    queries  id, text                       one row per query; ids unique, texts non-blank
    qrels    query_id, doc_id, relevance    graded relevance judgments (integers)
    results  query_id, rank, doc_id, score  what `search --queries` writes (higher score = better)

    >>> ids, texts = read_queries("queries.parquet")      # doctest: +SKIP
    >>> read_qrels("qrels.parquet")["q1"]                  # doctest: +SKIP
    {'d1': 1, 'd3': 2}

Columns follow the rules every reader shares (columns.py): ids are integers or strings, never null;
texts are strings (string_view and dictionary-encoded too).
"""

from __future__ import annotations

import math
import os

import pyarrow as pa

from ..errors import BadInput
from .columns import Column, check_ids_present, first_null, invalid_utf8_rows
from .parquet import read_table

RESULT_COLUMNS = ("query_id", "rank", "doc_id", "score")
QUERY_COLUMNS = [Column("id", "id"), Column("text", "text")]
QREL_COLUMNS = [Column("query_id", "id"), Column("doc_id", "id"), Column("relevance", "relevance")]


def examples(values: list, limit: int = 3) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (", ..." if len(values) > limit else "")


def read_queries(path: str | os.PathLike) -> tuple[list, list[str]]:
    """(ids, texts) from a BEIR queries parquet; null ids, invalid UTF-8, empty texts and repeated ids
    are errors."""
    where = f"queries file {path}"
    table = read_table(str(path), where, QUERY_COLUMNS)
    check_ids_present(table.column("id"), where, "id")
    ids = table.column("id").to_pylist()
    bad = invalid_utf8_rows(table.column("text"))
    if bad:
        raise BadInput(f"{len(bad)} query text(s) in {path} are not valid UTF-8 "
                       f"(ids {examples([ids[i] for i in bad])})")
    texts = table.column("text").to_pylist()
    empty = [i for i, t in zip(ids, texts) if t is None or not t.strip()]
    if empty:
        raise BadInput(f"{len(empty)} query text(s) in {path} are empty (ids {examples(empty)})")
    if len(set(map(str, ids))) != len(ids):
        raise BadInput(f"query ids in {path} are not unique")
    return ids, texts


def read_qrels(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """{query_id: {doc_id: relevance}} from a BEIR qrels parquet (ids compared as strings)."""
    where = f"qrels file {path}"
    table = read_table(str(path), where, QREL_COLUMNS)
    for column in ("query_id", "doc_id"):
        check_ids_present(table.column(column), where, column)
    qrels: dict[str, dict[str, int]] = {}
    relevance = integer_relevance(table.column("relevance"), where)
    for query_id, doc_id, grade in zip(table.column("query_id").to_pylist(), table.column("doc_id").to_pylist(),
                                       relevance):
        qrels.setdefault(str(query_id), {})[str(doc_id)] = grade
    if not qrels:
        raise BadInput(f"{where} has no rows")
    return qrels


def integer_relevance(column: pa.ChunkedArray, where: str) -> list[int]:
    """Relevance grades as ints: an integer column, or floats that are whole numbers (pandas turns an
    int column that once held a NaN into floats). Graded relevance is an integer and pytrec_eval takes
    only ints, so 0.5 or a word is an error naming its row, not a grade silently cut to 0."""
    row = first_null(column)
    if row is not None:
        raise BadInput(f"{where}: relevance is null at row {row}; every row needs query_id, doc_id and relevance")
    values = column.to_pylist()
    if pa.types.is_integer(column.type):
        return values
    if pa.types.is_floating(column.type):
        row = next((i for i, v in enumerate(values) if not (math.isfinite(v) and v.is_integer())), None)
        if row is None:
            return [int(v) for v in values]
        raise BadInput(f"{where}: relevance at row {row} is {values[row]!r}, not a whole number; "
                       "graded relevance is an integer (0, 1, 2, ...)")
    shown = f" (row 0 is {values[0]!r})" if values else ""
    raise BadInput(f"{where}: relevance column holds {column.type}{shown}; "
                   "graded relevance is an integer (0, 1, 2, ...)")


def results_table(query_ids: list, hits: list[list], id_type: pa.DataType) -> pa.Table:
    """One results table from each query's hits (objects with rank, id, score)."""
    return pa.table({
        "query_id": [q for q, hs in zip(query_ids, hits) for _ in hs],
        "rank": pa.array([h.rank for hs in hits for h in hs], pa.int32()),
        "doc_id": pa.array([h.id for hs in hits for h in hs], id_type),
        "score": pa.array([h.score for hs in hits for h in hs], pa.float32()),
    })
