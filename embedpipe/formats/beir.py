"""Retrieval evaluation files: queries, qrels and search results, as parquet or as BEIR ships them.

    queries  id, text                       one row per query; ids unique, texts non-blank
    qrels    query_id, doc_id, relevance    graded relevance judgments (integers)
    results  query_id, rank, doc_id, score  what `search --queries` writes (higher score = better)

A BEIR dataset folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``) and ``qrels/SPLIT.tsv`` (``query-id``, ``corpus-id``, ``score``, a header line).
Those names are taken when the default ones are absent; other names are given as ``columns``.

    >>> ids, texts = read_queries("queries.parquet")      # doctest: +SKIP
    >>> read_qrels("qrels.parquet")["q1"]                  # doctest: +SKIP
    {'d1': 1, 'd3': 2}
    >>> queries, qrels = beir_files("scifact", "test")    # doctest: +SKIP

Columns follow the rules every reader shares (columns.py): ids are integers or strings, never null;
texts are strings (string_view and dictionary-encoded too).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import pyarrow as pa

from ..errors import BadInput
from ..storage.filesystem import resolve_filesystem
from .columns import Column, check_ids_present, first_null, invalid_utf8_rows
from .readers import format_of, reader_for
from .readers.files import open_stream, text_lines
from .table import read_table

RESULT_COLUMNS = ("query_id", "rank", "doc_id", "score")
QUERY_NAMES = ("id", "text")
QREL_NAMES = ("query_id", "doc_id", "relevance")
BEIR_QUERY_NAMES = ("_id", "text")
BEIR_QREL_NAMES = ("query-id", "corpus-id", "score")


def query_columns(names=QUERY_NAMES) -> list[Column]:
    return [Column(names[0], "id", "queries_columns"), Column(names[1], "text", "queries_columns")]


def qrel_columns(names=QREL_NAMES) -> list[Column]:
    return [Column(names[0], "id", "qrels_columns"), Column(names[1], "id", "qrels_columns"),
            Column(names[2], "relevance", "qrels_columns")]


def column_names(value, default: tuple[str, ...], field: str) -> tuple[str, ...]:
    """``"qid,text"`` or ``("qid", "text")`` -> a tuple of as many names as ``default`` has."""
    if value is None:
        return default
    names = tuple(n.strip() for n in (value.split(",") if isinstance(value, str) else value))
    if len(names) != len(default) or not all(names) or len(set(names)) != len(names):
        raise BadInput(f"{field} takes {len(default)} distinct column names like {','.join(default)}, got {value!r}",
                       fields=(field,))
    return names


def with_beir_names(location: str, names: tuple[str, ...], default: tuple[str, ...],
                    beir: tuple[str, ...]) -> tuple[str, ...]:
    """BEIR's names when the defaults were asked for and the file has BEIR's instead."""
    if names != default:
        return names
    filesystem, path = resolve_filesystem(location)
    try:
        present = set(reader_for(format_of(path) or "parquet").inspect(filesystem, path).schema.names)
    except BadInput:
        return names  # the reader says what is wrong with the file
    return beir if not set(names) <= present and set(beir) <= present else names


def beir_files(folder: str | os.PathLike, split: str) -> tuple[str, str]:
    """(queries, qrels) of a BEIR dataset folder: queries.jsonl and qrels/SPLIT.tsv."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInput(f"BEIR folder {folder} does not exist")
    queries = next((folder / n for n in ("queries.jsonl", "queries.jsonl.gz") if (folder / n).is_file()), None)
    if queries is None:
        raise BadInput(f"BEIR folder {folder} has no queries.jsonl")
    qrels = folder / "qrels" / f"{split}.tsv"
    if not qrels.is_file():
        have = sorted(p.stem for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
        raise BadInput(f"BEIR folder {folder} has no qrels for split={split} ({qrels} does not exist; "
                       f"splits here: {', '.join(have) or 'none'})", fields=("split",))
    return str(queries), str(qrels)


def examples(values: list, limit: int = 3) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (", ..." if len(values) > limit else "")


def read_queries(path: str | os.PathLike, columns=None) -> tuple[list, list[str]]:
    """(ids, texts) from a queries file (parquet, or BEIR's queries.jsonl); null ids, invalid UTF-8,
    empty texts and repeated ids are errors. ``columns``: the (id, text) column names."""
    where = f"queries file {path}"
    names = column_names(columns, QUERY_NAMES, "queries_columns")
    id_name, text_name = with_beir_names(str(path), names, QUERY_NAMES, BEIR_QUERY_NAMES)
    table = read_table(str(path), where, query_columns((id_name, text_name)))
    check_ids_present(table.column(id_name), where, id_name)
    ids = table.column(id_name).to_pylist()
    bad = invalid_utf8_rows(table.column(text_name))
    if bad:
        raise BadInput(f"{len(bad)} query text(s) in {path} are not valid UTF-8 "
                       f"(ids {examples([ids[i] for i in bad])})")
    texts = table.column(text_name).to_pylist()
    empty = [i for i, t in zip(ids, texts) if t is None or not t.strip()]
    if empty:
        raise BadInput(f"{len(empty)} query text(s) in {path} are empty (ids {examples(empty)})")
    if len(set(map(str, ids))) != len(ids):
        raise BadInput(f"query ids in {path} are not unique")
    return ids, texts


def read_qrels(path: str | os.PathLike, columns=None) -> dict[str, dict[str, int]]:
    """{query_id: {doc_id: relevance}} from a qrels file: parquet, or BEIR's tab-separated
    qrels/SPLIT.tsv (ids compared as strings). ``columns``: the (query id, doc id, relevance) names."""
    where = f"qrels file {path}"
    names = column_names(columns, QREL_NAMES, "qrels_columns")
    if str(path).endswith(".tsv"):
        query_ids, doc_ids, relevance = read_qrels_tsv(str(path), where, names if columns else BEIR_QREL_NAMES)
    else:
        names = with_beir_names(str(path), names, QREL_NAMES, BEIR_QREL_NAMES)
        table = read_table(str(path), where, qrel_columns(names))
        for column in names[:2]:
            check_ids_present(table.column(column), where, column)
        relevance = integer_relevance(table.column(names[2]), where)
        query_ids, doc_ids = table.column(names[0]).to_pylist(), table.column(names[1]).to_pylist()
    qrels: dict[str, dict[str, int]] = {}
    for query_id, doc_id, grade in zip(query_ids, doc_ids, relevance):
        qrels.setdefault(str(query_id), {})[str(doc_id)] = grade
    if not qrels:
        raise BadInput(f"{where} has no rows")
    return qrels


def read_qrels_tsv(path: str, where: str, names: tuple[str, ...]) -> tuple[list[str], list[str], list[int]]:
    """The three columns of a BEIR qrels TSV (a header line, then one judgment a line); a line with
    too few fields, an empty id or a grade that is not an integer is an error naming its line."""
    filesystem, inside = resolve_filesystem(path)
    if filesystem.get_file_info(inside).type.name == "NotFound":
        raise BadInput(f"{where} does not exist")
    query_ids, doc_ids, grades = [], [], []
    with open_stream(filesystem, inside) as stream:
        lines = csv.reader(text_lines(stream, where), delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(lines, None) or []
        missing = [n for n in names if n not in header]
        if missing:
            raise BadInput(f"{where} line 1: no column {missing[0]!r} in the header ({', '.join(header) or 'empty'}); "
                           f"BEIR qrels start with the line {chr(9).join(BEIR_QREL_NAMES)!r}, or name the columns "
                           "with qrels_columns", fields=("qrels_columns",))
        at = [header.index(n) for n in names]
        for row in lines:
            if not any(field.strip() for field in row):
                continue
            line = f"{where} line {lines.line_num}"
            if len(row) <= max(at):
                raise BadInput(f"{line}: {len(row)} tab-separated field(s), the header has {len(header)}")
            query_id, doc_id, grade = (row[i].strip() for i in at)
            if not query_id or not doc_id:
                raise BadInput(f"{line}: an empty {names[0] if not query_id else names[1]}")
            try:
                value = int(grade) if grade.lstrip("-").isdigit() else float(grade)
            except ValueError:
                value = None
            if value is None or not math.isfinite(value) or value != int(value):
                raise BadInput(f"{line}: {names[2]} {grade!r} is not a whole number; graded relevance is an "
                               "integer (0, 1, 2, ...)")
            query_ids.append(query_id)
            doc_ids.append(doc_id)
            grades.append(int(value))
    return query_ids, doc_ids, grades


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
