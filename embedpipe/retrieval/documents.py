"""Search by document over an index of chunks (vectors encoded with ``encode --chunk-tokens``).

Each row of such an index is one chunk, id "<doc id>#<n>" (encode/chunking.py). A search asks the
index for more chunks than documents wanted, groups them by document and scores each document:

    best      its best chunk's score (the default: MaxP, as in Dai & Callan's passage-level BERT ranking)
    sum2      the sum of its two best chunks' scores found (a document with one chunk: that one)
    sum3      the sum of its three best
    chunks    no grouping: the chunks themselves are the hits

Under ``best`` the top-k documents are exact whenever the chunks fetched name k documents (a
document's best chunk outranks all its others), and the fetch grows until they do; under ``sum*``
a document's chunks below the fetched depth are left out of its sum.

An index written with spans.arrow (formats/index_spans.py) gives each hit's document id as the corpus
typed it (an int64 stays int64) and its best chunk's span from the index directory itself, reading
only the hits' rows; an older one gives document ids as strings and reads spans from the vectors.

    >>> scores, docs, best = by_document([np.array([0.9, 0.8, 0.5])], [["a#2", "b#0", "a#0"]], 2, "sum2")
    >>> docs, [[round(float(x), 2) for x in s] for s in scores], best
    ([['a', 'b']], [[1.4, 0.8]], [['a#2', 'b#0']])
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import checks
from ..encode.chunking import chunking_of
from ..errors import EmbedpipeError
from ..formats.vectors import open_vectors
from ..index.spans import read_shard_columns

log = logging.getLogger(__name__)

DOC_SCORES = ("best", "sum2", "sum3", "chunks")
NAME_BATCH_ROWS = 65_536   # ids compared at a time by not_indexed
FETCH = 8          # chunks fetched per document wanted, at first (then 4x more while too few documents)


def check_doc_score(doc_score: str) -> str:
    return checks.one_of("doc_score", doc_score, DOC_SCORES)


def is_chunked(index) -> bool:
    """Whether a loaded index holds chunks (its vectors' manifest records chunk_tokens)."""
    return chunking_of(index.info.get("manifest")) is not None


def doc_of(chunk_id) -> str:
    """The document id of a chunk id: everything before the last "#" (``doc_of("a#b#3") == "a#b"``)."""
    return str(chunk_id).rpartition("#")[0]


def not_indexed(index, names: set[str], documents: bool) -> list[str]:
    """Those of ``names`` (ids as strings; over chunks with ``documents``, document ids) that no row of
    the index holds, sorted. The index's ids are read one batch at a time (memory-mapped ids.arrow:
    never all in RAM) and compared in Arrow; only the matches become Python strings."""
    missing = set(names)
    wanted = pa.array(sorted(missing), pa.string())
    for batch in index.ids.batches():
        for start in range(0, len(batch), NAME_BATCH_ROWS):
            found = _names_of(batch.slice(start, NAME_BATCH_ROWS), documents)
            missing.difference_update(found.filter(pc.is_in(found, value_set=wanted)).to_pylist())
        if not missing:
            break
    return sorted(missing)


def _names_of(ids: pa.Array, documents: bool) -> pa.Array:
    """``str(id)`` (``doc_of(id)`` with ``documents``) of each id, as Arrow strings."""
    if pa.types.is_integer(ids.type) or pa.types.is_large_string(ids.type):
        ids = ids.cast(pa.string())            # integers print as Python prints them
    elif not pa.types.is_string(ids.type):     # other id types: as Python writes them, this batch only
        ids = pa.array([str(i) for i in ids.to_pylist()], pa.string())
    if not documents:
        return ids
    doc = pc.struct_field(pc.extract_regex(ids, r"^(?P<doc>.*)#[^#]*$"), [0])   # before the last "#"
    return pc.fill_null(doc, "")              # no "#": doc_of gives ""


def documents_wanted(doc_score: str, chunked: bool) -> bool:
    return chunked and check_doc_score(doc_score) != "chunks"


def by_document(scores: list[np.ndarray], ids: list[list], k: int, doc_score: str, docs: list[list] | None = None
                ) -> tuple[list[np.ndarray], list[list], list[list]]:
    """Each query's chunk hits (best first) -> its top-k documents: (scores, document ids, the best
    chunk of each document). ``docs``: each hit's document id as typed (spans.arrow), else
    ``doc_of`` its chunk id."""
    take = {"best": 1, "sum2": 2, "sum3": 3}[doc_score]
    out_scores, out_docs, out_best = [], [], []
    for row_scores, row_ids, row_docs in zip(scores, ids, docs or [None] * len(ids)):
        found: dict = {}
        for score, chunk, doc in zip(row_scores.tolist(), row_ids, row_docs or map(doc_of, row_ids)):
            entry = found.setdefault(doc, [chunk, 0.0, 0])
            if entry[2] < take:
                entry[1] += score
                entry[2] += 1
        ranked = sorted(found.items(), key=lambda item: -item[1][1])[:k]
        out_scores.append(np.array([entry[1] for _, entry in ranked], dtype=np.float32))
        out_docs.append([doc for doc, _ in ranked])
        out_best.append([entry[0] for _, entry in ranked])
    return out_scores, out_docs, out_best


def search_documents(search, queries: np.ndarray, k: int, total: int, doc_score: str):
    """``search(queries, depth) -> (scores, chunk ids[, typed document ids])`` asked deep enough that
    every query finds k documents (or every chunk was fetched) -> ``by_document``'s (scores, document
    ids, best chunks)."""
    depth = min(total, k * FETCH)
    while True:
        scores, ids, *docs = search(queries, depth)
        if depth >= total or all(len({doc_of(c) for c in row}) >= k for row in ids):
            return by_document(scores, ids, k, doc_score, *docs)
        depth = min(total, depth * 4)


def chunk_spans(index, chunk_ids: set[str]) -> dict[str, tuple[int, int]]:
    """The character spans (start, end) of the given chunks, read from the vector directory the
    index was built from (only its id, start and end columns, of every shard: for an index written
    before spans.arrow); {} when that directory is gone."""
    try:
        vectors = open_vectors(index.info.get("vectors"))
    except (EmbedpipeError, TypeError) as e:
        log.warning("showing whole documents: the chunks' spans are read from the vectors the index was "
                    "built from, which cannot be opened (%s)", e)
        return {}
    wanted = pa.array(sorted(map(str, chunk_ids)), pa.string())
    spans = {}
    for table in read_shard_columns(vectors, ["id", "start", "end"]):
        table = table.filter(pc.is_in(table.column("id"), value_set=wanted))
        for chunk, start, end in zip(*(table.column(c).to_pylist() for c in ("id", "start", "end"))):
            spans[chunk] = (start, end)
    return spans


def show_texts(index, hits: list, read_texts) -> None:
    """Set each hit's ``text`` from the corpus: the document's text, or over an index of chunks the
    best chunk's span of it (the hit's ``span``: set by the search from spans.arrow, else read from
    the vectors here). ``read_texts(ids) -> {id: text}`` reads the corpus (ids as strings)."""
    if not is_chunked(index):
        texts = read_texts({str(h.id) for h in hits})
        for hit in hits:
            hit.text = texts.get(str(hit.id), "")
        return
    chunks = [hit.chunk or str(hit.id) for hit in hits]     # doc_score "chunks": the hit is the chunk
    texts = read_texts({doc_of(c) for c in chunks})
    unknown = {c for hit, c in zip(hits, chunks) if hit.span is None}
    spans = chunk_spans(index, unknown) if unknown else {}
    for hit, chunk in zip(hits, chunks):
        text = texts.get(doc_of(chunk), "")
        hit.span = hit.span or spans.get(chunk)
        hit.text = text[hit.span[0]:hit.span[1]] if hit.span else text
