"""Retrieval evaluation files as BEIR lays them out (parquet): queries, qrels, and search results.

    queries  id, text                       one row per query; ids unique, texts non-blank
    qrels    query_id, doc_id, relevance    graded relevance judgments
    results  query_id, rank, doc_id, score  what `search --queries` writes (higher score = better)

    >>> ids, texts = read_queries("queries.parquet")      # doctest: +SKIP
    >>> read_qrels("qrels.parquet")["q1"]                  # doctest: +SKIP
    {'d1': 1, 'd3': 2}
"""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import BadInput

RESULT_COLUMNS = ("query_id", "rank", "doc_id", "score")


def _read_table(path: str | os.PathLike, what: str, columns: list[str]) -> pa.Table:
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as e:
        raise BadInput(f"cannot read {what} file {path}: {e}") from None
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise BadInput(f"{what} file {path} lacks column(s) {', '.join(missing)} "
                             f"(it has: {', '.join(schema.names) or 'none'})")
    return pq.read_table(path, columns=columns)


def examples(values: list, limit: int = 3) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (", ..." if len(values) > limit else "")


def read_queries(path: str | os.PathLike) -> tuple[list, list[str]]:
    """(ids, texts) from a BEIR queries parquet; empty texts and repeated ids are errors."""
    table = _read_table(path, "queries", ["id", "text"])
    ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
    empty = [i for i, t in zip(ids, texts) if not isinstance(t, str) or not t.strip()]
    if empty:
        raise BadInput(f"{len(empty)} query text(s) in {path} are empty (ids {examples(empty)})")
    if len(set(map(str, ids))) != len(ids):
        raise BadInput(f"query ids in {path} are not unique")
    return ids, texts


def read_qrels(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """{query_id: {doc_id: relevance}} from a BEIR qrels parquet (ids compared as strings)."""
    table = _read_table(path, "qrels", ["query_id", "doc_id", "relevance"])
    qrels: dict[str, dict[str, int]] = {}
    for query_id, doc_id, relevance in zip(*(table.column(c).to_pylist() for c in table.column_names)):
        if query_id is None or doc_id is None or relevance is None:
            raise BadInput(f"qrels file {path} has empty cells; every row needs query_id, doc_id, relevance")
        qrels.setdefault(str(query_id), {})[str(doc_id)] = int(relevance)
    if not qrels:
        raise BadInput(f"qrels file {path} has no rows")
    return qrels


def results_table(query_ids: list, hits: list[list], id_type: pa.DataType) -> pa.Table:
    """One results table from each query's hits (objects with rank, id, score)."""
    return pa.table({
        "query_id": [q for q, hs in zip(query_ids, hits) for _ in hs],
        "rank": pa.array([h.rank for hs in hits for h in hs], pa.int32()),
        "doc_id": pa.array([h.id for hs in hits for h in hs], id_type),
        "score": pa.array([h.score for hs in hits for h in hs], pa.float32()),
    })
