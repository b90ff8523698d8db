"""spans.arrow: over an index of chunks, each row's document id (typed) and character span, memory-mapped.

An index built from chunked vectors (``encode --chunk-tokens``) holds one row per chunk, id
"<doc id>#<n>". Search shows a hit's best chunk as a span of its document, and answers with the
document id as the corpus typed it (an int64 id stays int64): spans.arrow keeps both, in index row
order, as an uncompressed Arrow IPC file of three columns, ``doc_id`` (the vectors' type), ``start``
and ``end`` (characters, end exclusive; the vectors' integer type). Memory-mapped like ids.arrow
(formats/index_ids.py), a search reads only its hits' rows. index.json names it (``spans_file``);
an index over whole texts, or one written before spans.arrow, has none (search then reads the spans
from the vector directory the index was built from, retrieval/documents.py).

Opening checks the schema, the row count index.json gives and every batch's buffer sizes, so a
truncated or swapped file is one ``CorruptArtifact`` line; a string document id's offsets are checked
when it is read.

    >>> spans = open_spans(Path("corpus.index"), info)          # doctest: +SKIP
    >>> spans.take(np.array([[3, 7]]))                          # doctest: +SKIP
    ([[12, 40]], [[(0, 611), (540, 1190)]])
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import CorruptArtifact
from .index_ids import IndexIds, mapped_column, read_mapped_table, write_mapped_table

SPANS_FILE = "spans.arrow"
SPANS_KEY = "spans_file"          # index.json's name for it
SPAN_COLUMNS = ("doc_id", "start", "end")


def write_spans_file(path: Path, spans: pa.Table) -> None:
    """``spans`` (doc_id, start, end, in index row order) as spans.arrow (the caller stages and publishes it)."""
    write_mapped_table(path, spans.select(list(SPAN_COLUMNS)))


class IndexSpans:
    """Each index row's document id and span; ``take_each`` reads only the rows asked for."""

    def __init__(self, docs: IndexIds, starts: IndexIds, ends: IndexIds):
        self.docs, self.starts, self.ends = docs, starts, ends

    @property
    def doc_type(self) -> pa.DataType:
        return self.docs.type

    def named_in(self, directory: Path) -> None:
        """Name the file as in ``directory`` in errors (``IndexIds.named_in``)."""
        for column in (self.docs, self.starts, self.ends):
            column.named_in(directory)

    def take_each(self, rows: np.ndarray) -> tuple[list[list], list[list[tuple[int, int]]]]:
        """(document ids, spans) of each row of a (queries, k) matrix of index rows (-1 skipped)."""
        rows = np.asarray(rows, dtype=np.int64)
        counts = (rows >= 0).sum(axis=1).tolist()
        docs, spans = iter(self.docs.take(rows)), iter(zip(self.starts.take(rows), self.ends.take(rows)))
        return ([[next(docs) for _ in range(c)] for c in counts], [[next(spans) for _ in range(c)] for c in counts])


def open_spans(path: Path, info: dict) -> IndexSpans | None:
    """The spans file index.json names in the index directory ``path``, memory-mapped and checked; None
    when it names none (an index over whole texts, or one written before spans.arrow)."""
    name = info.get(SPANS_KEY)
    if not name:
        return None
    if name != SPANS_FILE:
        raise CorruptArtifact(f"{path / 'index.json'} names the spans file {name!r}; expected {SPANS_FILE!r}")
    where = path / SPANS_FILE
    schema, batches = read_mapped_table(where)
    if tuple(schema.names) != SPAN_COLUMNS or not all(pa.types.is_integer(schema.field(c).type)
                                                      for c in ("start", "end")):
        raise CorruptArtifact(f"{where} must hold the columns doc_id, start, end (start and end integers); "
                              f"it has {schema}; rebuild the index")
    docs, starts, ends = (mapped_column(where, [batch.column(i) for batch in batches], schema.field(i).type)
                          for i in range(3))
    n = int(info["n"])
    if len(docs) != n:
        raise CorruptArtifact(f"{where} holds {len(docs)} rows, index.json says {n}: truncated or replaced; "
                              "rebuild the index")
    return IndexSpans(docs, starts, ends)
