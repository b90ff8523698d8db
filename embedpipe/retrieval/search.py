"""Text queries against an index directory: one text, or every query of a queries file.

Queries are encoded with the encoder recorded in index.json (model, pooling, normalization,
max length), so they land in the same space as the corpus, with the query prompt recorded there (the
model's own, as sentence-transformers' encode_query applies it) unless another is asked for.

    >>> hits = search_texts(open_index("corpus.index"), ["a small dog"], k=3)[0]   # doctest: +SKIP
    >>> [(h.rank, h.id, round(h.score, 3)) for h in hits]                          # doctest: +SKIP
    [(1, 'noun02085374', 0.71), (2, 'noun02084071', 0.64), (3, 'noun02110958', 0.6)]
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import checks
from ..errors import BadInput
from ..formats.beir import read_queries, results_table
from ..formats.corpus import open_corpus
from ..fsio import atomic_path, check_output, check_output_file
from ..index.load import LoadedIndex, open_index
from ..progress import Progress
from .documents import check_doc_score, documents_wanted, is_chunked, search_documents

log = logging.getLogger("embedpipe.retrieval")

Encode = Callable[[list[str]], np.ndarray]


@dataclass
class Hit:
    rank: int
    id: object
    score: float
    text: str | None = None
    chunk: str | None = None     # an index over chunks: the document's best chunk, id "<doc>#<n>"
    span: tuple[int, int] | None = None   # and its characters in the document (spans.arrow, or search --corpus)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def query_encoder(index: LoadedIndex, prompt_name: str | None = None, prompt: str | None = None,
                  device: str = "auto") -> Encode:
    """The encoder that made the indexed vectors, for queries: with the recorded query prompt, or the
    model's prompt ``prompt_name``, or the text ``prompt`` ("" for none), on ``device`` (auto, cpu,
    cuda, cuda:N). Imported here: onnxruntime (or torch) loads only when needed."""
    from ..encode.codec import query_vectors
    from ..encode.encoder import TextEncoder

    manifest = index.info.get("manifest") or {}
    encode = TextEncoder.from_manifest(manifest, query=True, prompt_name=prompt_name, prompt=prompt,
                                       device=device).encode
    return lambda texts: query_vectors(manifest, encode(texts))   # truncated as the vectors were


def corpus_texts(corpus: str | os.PathLike, ids: set[str], *, text_column: str = "text", id_column: str = "id",
                 title_column: str | None = None, file_format: str | None = None) -> dict[str, str]:
    """Texts of the given ids (compared as strings), streamed from anything ``encode`` reads."""
    found = {}
    source = open_corpus(str(corpus), text_column=text_column, id_column=id_column, title_column=title_column,
                         file_format=file_format)
    for batch in source.iter_batches(65_536):
        for doc_id, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
            if str(doc_id) in ids:
                found[str(doc_id)] = text
    return found


def corpus_columns(index: LoadedIndex) -> dict[str, str | None]:
    """The text, id and title columns the indexed vectors were encoded from, and the corpus format
    (as their manifest recorded): a corpus given to ``search --corpus`` is read the same way."""
    source = (index.info.get("manifest") or {}).get("source") or {}
    return {"text_column": source.get("text_column") or "text", "id_column": source.get("id_column") or "id",
            "title_column": source.get("title_column"), "file_format": source.get("format")}


def search_texts(index: LoadedIndex, texts: list[str], k: int = 10, encode: Encode | None = None,
                 doc_score: str = "best") -> list[list[Hit]]:
    """Top-k hits for each text; over an index of chunks, documents ranked by ``doc_score``
    (retrieval/documents.py), each with its best chunk."""
    encode = encode or query_encoder(index)
    scores, hit_ids, chunks, spans = document_search(index, encode(list(texts)), k, doc_score)
    none = [None] * len(scores)
    return [[Hit(rank + 1, doc_id, float(score), chunk=best[rank] if best else None,
                 span=where[rank] if where else None)
             for rank, (doc_id, score) in enumerate(zip(ids, s))]
            for s, ids, best, where in zip(scores, hit_ids, chunks or none, spans or none)]


def search_file(index_dir: str | os.PathLike, queries: str | os.PathLike, out: str | os.PathLike, k: int = 10,
                *, overwrite: bool = False, batch_rows: int = 1024, prompt_name: str | None = None,
                prompt: str | None = None, mmap: bool = True, device: str = "auto", doc_score: str = "best") -> dict:
    """Search every query of a queries parquet; write results parquet atomically; returns a summary.
    The index is memory-mapped unless ``mmap`` is False (index/load.py); queries are encoded on ``device``;
    over chunks, ``doc_score`` ranks documents (retrieval/documents.py)."""
    checks.at_least("k", k, 1)
    check_doc_score(doc_score)
    checks.at_least("batch_rows", batch_rows, 1)
    checks.boolean("overwrite", overwrite)
    out = check_output(out, {"index": index_dir, "queries": queries})
    check_output_file(out, overwrite)
    index = open_index(index_dir, mmap=mmap)
    ids, texts = read_queries(queries)
    if not ids:
        raise BadInput(f"{queries} holds no queries")
    encode = query_encoder(index, prompt_name, prompt, device)
    documents = documents_wanted(doc_score, is_chunked(index))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, Progress(len(ids), "queries searched", unit="queries") as progress:
        writer = None
        try:
            for start in range(0, len(ids), batch_rows):
                batch_ids = ids[start:start + batch_rows]
                hits = search_texts(index, texts[start:start + batch_rows], k, encode, doc_score)
                table = results_table(batch_ids, hits, doc_id_type(index) if documents else index.ids.type)
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                progress.update(len(batch_ids))
        finally:
            if writer is not None:
                writer.close()
    return {"queries": len(ids), "k": k, "out": str(out)}


def index_search(index: LoadedIndex, queries: np.ndarray, k: int, doc_score: str = "best"
                 ) -> tuple[np.ndarray, list[list]]:
    """(scores, hit ids) of the index, dropping the -1 rows an approximate index may return; over
    an index of chunks, documents ranked by ``doc_score``."""
    return document_search(index, queries, k, doc_score)[:2]


def document_search(index: LoadedIndex, queries: np.ndarray, k: int, doc_score: str = "best"):
    """``index_search``, each document's best chunk (None when hits are not documents) and the span of
    each hit's chunk (None for an index without spans.arrow: one over whole texts, or an older one)."""
    documents = documents_wanted(doc_score, is_chunked(index))
    fetched: dict[str, tuple[int, int]] = {}   # chunk id -> span, of the rows the last fetch found

    def rows(vectors: np.ndarray, depth: int):
        scores, found = index.search(vectors, depth)
        hits = [s[r >= 0] for s, r in zip(scores, found)], index.ids_of_each(found)
        if index.spans is None:
            return hits
        docs, spans = index.spans.take_each(found)   # only the fetched rows are read
        fetched.clear()
        fetched.update((c, span) for row_ids, row_spans in zip(hits[1], spans) for c, span in zip(row_ids, row_spans))
        return (*hits, docs) if documents else hits

    if documents:
        scores, hit_ids, best = search_documents(rows, queries, k, index.index.ntotal, doc_score)
    else:
        (scores, hit_ids), best = rows(queries, k), None
    spans = [[fetched[c] for c in row] for row in best or hit_ids] if index.spans is not None else None
    return scores, hit_ids, best, spans


def doc_id_type(index: LoadedIndex) -> pa.DataType:
    """The type of the document ids an index of chunks answers with: the corpus's, kept in spans.arrow;
    strings for an index written before it (parsed from the chunk ids)."""
    return index.spans.doc_type if index.spans is not None else pa.string()


