"""An index over chunks: its rows' document ids and spans, read from the vector directory in index row
order (for spans.arrow, formats/index_spans.py), and the refusal to mix chunked and whole-text vectors.

    >>> spans = spans_in_index_order(vectors, ids)      # doctest: +SKIP
    >>> spans.column_names                              # doctest: +SKIP
    ['doc_id', 'start', 'end']

The rows of an index are not in the vector directory's order (held-out tuning vectors are added last,
a parallel build merges parts, an append adds new shards), so the chunks' spans are matched to the
index's ids by id, over the id, doc_id, start and end columns only (no vectors read), all in RAM for
the moment it takes (~0.3 s and ~90 MiB at 200k chunks).
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..encode.chunking import chunking_of
from ..errors import EmbedpipeError
from ..formats.index_spans import SPAN_COLUMNS
from ..formats.vectors import VectorSet


def read_shard_columns(vectors: VectorSet, columns: list[str], shards: Iterable[dict] | None = None
                       ) -> Iterable[pa.Table]:
    """``columns`` of each shard of ``vectors`` (``shards``: these of its manifest's), one shard at a time."""
    for shard in vectors.manifest["shards"] if shards is None else shards:
        with vectors.store.filesystem.open_input_file(vectors.store.path(shard["file"])) as f:
            yield pq.read_table(f, columns=columns)


def spans_in_index_order(vectors: VectorSet, ids: pa.Array) -> pa.Table | None:
    """doc_id, start and end of each row of an index whose rows hold ``ids``, read from ``vectors``;
    None when the vectors are not chunks."""
    if chunking_of(vectors.manifest) is None:
        return None
    try:
        chunks = pa.concat_tables(read_shard_columns(vectors, ["id", *SPAN_COLUMNS]))
    except (OSError, KeyError, pa.ArrowException) as e:
        raise EmbedpipeError(f"{vectors.path}: cannot read the chunks' doc_id, start and end columns ({e})") from None
    try:   # a hash table of the chunk ids, looked up once per index row (lighter than an Arrow join)
        at = pc.index_in(ids, value_set=chunks.column("id"))
    except pa.ArrowException as e:
        raise EmbedpipeError(f"{vectors.path}: the chunks cannot be matched to the index's ids ({e})") from None
    if at.null_count or chunks.num_rows != len(ids):   # the index's ids are unique: then one to one
        raise EmbedpipeError(f"{vectors.path} holds {chunks.num_rows} chunk rows that do not match the index's "
                             f"{len(ids)} ids one to one (a chunk id missing or repeated); re-encode the vectors")
    return chunks.select(list(SPAN_COLUMNS)).take(at)


def check_same_chunking(info: dict, vectors: VectorSet) -> None:
    """Refuse to append to an index vectors cut otherwise: chunks to an index of whole texts, whole texts
    to one of chunks, or chunks of another window (a document's chunks would not be comparable)."""
    held, added = chunking_of(info.get("manifest")), chunking_of(vectors.manifest)
    if held == added:
        return
    def what(chunking):
        return ("whole texts" if chunking is None
                else f"chunks of {chunking['chunk_tokens']} tokens (overlap {chunking['chunk_overlap']})")
    raise EmbedpipeError(f"{vectors.path} holds {what(added)}, the index {what(held)}; encode them alike or "
                         "rebuild the index without append", fields=("append",))
