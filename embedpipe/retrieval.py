"""Text queries against an index directory: search one text, a queries file, or evaluate with qrels.

Queries are encoded with the encoder recorded in index.json (model, pooling, normalization,
max length), so they land in the same space as the corpus.

    >>> hits = search_texts(open_index("corpus.index"), ["a small dog"], k=3)[0]
    >>> [(h.rank, h.id, round(h.score, 3)) for h in hits]
    [(1, 'noun02085374', 0.71), (2, 'noun02084071', 0.64), (3, 'noun02110958', 0.6)]
    >>> evaluate("corpus.index", "queries.parquet", "qrels.parquet")["index"]["ndcg_at_10"]

Files follow BEIR: queries ``id, text``; qrels ``query_id, doc_id, relevance``; results
``query_id, rank, doc_id, score`` (higher score = better; negated squared distance for l2).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import EmbedpipeError
from .index import LoadedIndex, is_exact, open_index
from .metrics import MAIN_SCORE, retrieval_metrics
from .progress import Progress
from .tuning import ExactTopK
from .vectors import file_sha256, open_vectors, write_json_atomic

log = logging.getLogger("embedpipe.retrieval")

Encode = Callable[[list[str]], np.ndarray]


@dataclass
class Hit:
    rank: int
    id: object
    score: float
    text: str | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def query_encoder(index: LoadedIndex) -> Encode:
    """The encoder that made the indexed vectors (imported here: onnxruntime loads only when needed)."""
    from .encoder import TextEncoder

    manifest = index.info.get("manifest") or {}
    return TextEncoder.from_manifest(manifest).encode


def _read_table(path: str | os.PathLike, what: str, columns: list[str]) -> pa.Table:
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as e:
        raise EmbedpipeError(f"cannot read {what} file {path}: {e}") from None
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise EmbedpipeError(f"{what} file {path} lacks column(s) {', '.join(missing)} "
                             f"(it has: {', '.join(schema.names) or 'none'})")
    return pq.read_table(path, columns=columns)


def _examples(values: list, limit: int = 3) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (", ..." if len(values) > limit else "")


def read_queries(path: str | os.PathLike) -> tuple[list, list[str]]:
    """(ids, texts) from a BEIR queries parquet; empty texts and repeated ids are errors."""
    table = _read_table(path, "queries", ["id", "text"])
    ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
    empty = [i for i, t in zip(ids, texts) if not isinstance(t, str) or not t.strip()]
    if empty:
        raise EmbedpipeError(f"{len(empty)} query text(s) in {path} are empty (ids {_examples(empty)})")
    if len(set(map(str, ids))) != len(ids):
        raise EmbedpipeError(f"query ids in {path} are not unique")
    return ids, texts


def read_qrels(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """{query_id: {doc_id: relevance}} from a BEIR qrels parquet (ids compared as strings)."""
    table = _read_table(path, "qrels", ["query_id", "doc_id", "relevance"])
    qrels: dict[str, dict[str, int]] = {}
    for query_id, doc_id, relevance in zip(*(table.column(c).to_pylist() for c in table.column_names)):
        if query_id is None or doc_id is None or relevance is None:
            raise EmbedpipeError(f"qrels file {path} has empty cells; every row needs query_id, doc_id, relevance")
        qrels.setdefault(str(query_id), {})[str(doc_id)] = int(relevance)
    if not qrels:
        raise EmbedpipeError(f"qrels file {path} has no rows")
    return qrels


def corpus_texts(corpus: str | os.PathLike, ids: set[str]) -> dict[str, str]:
    """Texts of the given ids (as strings), streamed from a corpus parquet with id and text."""
    try:
        pf = pq.ParquetFile(corpus)
    except (OSError, pa.ArrowException) as e:
        raise EmbedpipeError(f"cannot read corpus file {corpus}: {e}") from None
    if "id" not in pf.schema_arrow.names or "text" not in pf.schema_arrow.names:
        raise EmbedpipeError(f"corpus file {corpus} needs columns id and text")
    found = {}
    for batch in pf.iter_batches(columns=["id", "text"]):
        for doc_id, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
            if str(doc_id) in ids:
                found[str(doc_id)] = text
    return found


def search_texts(index: LoadedIndex, texts: list[str], k: int = 10, encode: Encode | None = None) -> list[list[Hit]]:
    """Top-k hits for each text."""
    encode = encode or query_encoder(index)
    scores, hit_ids = index_search(index, encode(list(texts)), k)
    return [[Hit(rank + 1, doc_id, float(score)) for rank, (doc_id, score) in enumerate(zip(ids, s))]
            for s, ids in zip(scores, hit_ids)]


def search_file(index_dir: str | os.PathLike, queries: str | os.PathLike, out: str | os.PathLike, k: int = 10,
                *, overwrite: bool = False, batch_rows: int = 1024) -> dict:
    """Search every query of a queries parquet; write results parquet atomically; returns a summary."""
    out = Path(out)
    if out.exists() and (out.is_dir() or not overwrite):
        raise EmbedpipeError(f"output {out} already exists; pass --overwrite to replace it"
                             if not out.is_dir() else f"output {out} is a directory")
    index = open_index(index_dir)
    ids, texts = read_queries(queries)
    encode = query_encoder(index)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    writer = None
    try:
        with Progress(len(ids), "queries searched", unit="queries") as progress:
            for start in range(0, len(ids), batch_rows):
                batch_ids = ids[start:start + batch_rows]
                hits = search_texts(index, texts[start:start + batch_rows], k, encode)
                table = pa.table({
                    "query_id": [q for q, hs in zip(batch_ids, hits) for _ in hs],
                    "rank": pa.array([h.rank for hs in hits for h in hs], pa.int32()),
                    "doc_id": pa.array([h.id for hs in hits for h in hs], index.ids.type),
                    "score": pa.array([h.score for hs in hits for h in hs], pa.float32()),
                })
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                progress.update(len(batch_ids))
        if writer is None:
            raise EmbedpipeError(f"{queries} holds no queries")
        writer.close()
        writer = None
        os.replace(tmp, out)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return {"queries": len(ids), "k": k, "out": str(out)}


def _run(query_ids: list[str], scores: np.ndarray, hit_ids: list[list]) -> dict[str, dict[str, float]]:
    """BEIR/pytrec_eval 'run': {query_id: {doc_id: score}}."""
    return {q: {str(d): float(v) for d, v in zip(ids, s)} for q, s, ids in zip(query_ids, scores, hit_ids)}


def index_search(index: LoadedIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list]]:
    """(scores, hit ids) of the index, dropping the -1 rows an approximate index may return."""
    scores, rows = index.search(queries, k)
    return [s[r >= 0] for s, r in zip(scores, rows)], [index.ids_of(r) for r in rows]


def exact_search(index: LoadedIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list]]:
    """(scores, hit ids) of exact search over the vectors the index was built from (streamed;
    the index itself when it is Flat)."""
    if is_exact(index.index):
        return index_search(index, queries, k)
    source = index.info.get("vectors")
    try:
        vectors = open_vectors(source)
    except EmbedpipeError as e:
        raise EmbedpipeError(f"exact search needs the vectors the index was built from ({e}); "
                             "pass --no-exact to skip it") from None
    if vectors.rows != index.index.ntotal or vectors.dim != index.dim:
        raise EmbedpipeError(f"{source} no longer matches the index ({vectors.rows} x {vectors.dim} vs "
                             f"{index.index.ntotal} x {index.dim}); pass --no-exact or rebuild the index")
    exact = ExactTopK(queries, min(k, vectors.rows), index.metric)
    ids, start = [], 0
    with Progress(vectors.rows, "exact search", unit="vectors") as progress:
        for batch_ids, batch in vectors.iter_batches():
            exact.add(batch, start)
            ids.extend(batch_ids.to_pylist())
            start += len(batch)
            progress.update(len(batch))
    distances, rows = exact.result()
    scores = distances if index.metric == "ip" else -distances
    return [s[r >= 0] for s, r in zip(scores, rows)], [[ids[i] for i in r if i >= 0] for r in rows]


def evaluate(index_dir: str | os.PathLike, queries: str | os.PathLike, qrels: str | os.PathLike,
             k_values: list[int] = (10, 100), *, exact: bool = True, batch_rows: int = 1024) -> dict:
    """Retrieval metrics of the index, and of exact search over the same vectors, on BEIR files."""
    k_values = sorted(set(k_values))
    index = open_index(index_dir)
    query_ids, texts = read_queries(queries)
    judged = read_qrels(qrels)
    by_id = {str(q): t for q, t in zip(query_ids, texts)}
    unknown_queries = [q for q in judged if q not in by_id]
    if unknown_queries:
        raise EmbedpipeError(f"{len(unknown_queries)} query id(s) in {qrels} are not in {queries} "
                             f"({_examples(unknown_queries)})")
    corpus_ids = set(map(str, index.ids.to_pylist()))
    unknown_docs = sorted({d for docs in judged.values() for d in docs if d not in corpus_ids})
    if unknown_docs:
        raise EmbedpipeError(f"{len(unknown_docs)} doc id(s) in {qrels} are not in the indexed corpus "
                             f"({_examples(unknown_docs)})")
    evaluated = [q for q in map(str, query_ids) if q in judged]
    if len(evaluated) < len(query_ids):
        log.info("%d of %d queries have no relevance judgments and are not evaluated",
                 len(query_ids) - len(evaluated), len(query_ids))

    encode = query_encoder(index)
    vectors = np.empty((len(evaluated), index.dim), dtype=np.float32)
    with Progress(len(evaluated), "queries encoded", unit="queries") as progress:
        for start in range(0, len(evaluated), batch_rows):
            chunk = evaluated[start:start + batch_rows]
            vectors[start:start + len(chunk)] = encode([by_id[q] for q in chunk])
            progress.update(len(chunk))
    k = max(k_values)
    report = {"index": retrieval_metrics(_run(evaluated, *index_search(index, vectors, k)), judged, k_values)}
    if exact:
        report["exact"] = retrieval_metrics(_run(evaluated, *exact_search(index, vectors, k)), judged, k_values)
    return {**report, "main_score": MAIN_SCORE, "queries": len(evaluated), "k_values": k_values,
            "factory": index.info["factory"], "search_params": index.info.get("search_params", ""),
            "index_dir": str(index.path)}


@dataclass
class EvaluateJob:
    """An evaluation whose report is a file: what `embedpipe run` does for a spec's `evaluate` section."""

    index: str                     # index directory (an `embedpipe index` output)
    queries: str                   # queries parquet: id, text
    qrels: str                     # qrels parquet: query_id, doc_id, relevance
    k_values: list[int] = field(default_factory=lambda: [10, 100])  # metric cut-offs
    exact: bool = True             # also evaluate exact search over the same vectors
    out: str = "evaluation.json"   # the report written (atomically)

    def check(self) -> "EvaluateJob":
        if not self.k_values or min(self.k_values) < 1:
            raise EmbedpipeError(f"k_values must be positive cut-offs like [10, 100], got {self.k_values}")
        return self


def evaluation_inputs(job: EvaluateJob) -> dict:
    """What an evaluation report depends on: the index (its index.json) and the two files, by sha256."""
    info = Path(job.index) / "index.json"
    missing = [p for p in (info, Path(job.queries), Path(job.qrels)) if not p.is_file()]
    if missing:
        raise EmbedpipeError(f"cannot evaluate: {missing[0]} does not exist")
    return {"index_json_sha256": file_sha256(info), "queries_sha256": file_sha256(job.queries),
            "qrels_sha256": file_sha256(job.qrels)}


def evaluation_config(job: EvaluateJob) -> dict:
    return {"index": str(job.index), "queries": str(job.queries), "qrels": str(job.qrels),
            "k_values": sorted(set(job.k_values)), "exact": job.exact}


def run_evaluate(job: EvaluateJob) -> dict:
    """Evaluate and write the report (metrics + the config and input checksums) to ``job.out``."""
    job.check()
    inputs = evaluation_inputs(job)
    report = evaluate(job.index, job.queries, job.qrels, job.k_values, exact=job.exact)
    report = {**report, "config": evaluation_config(job), "inputs": inputs}
    out = Path(job.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, report)
    return report


def read_evaluation(path: str | os.PathLike) -> dict | None:
    """A report written by run_evaluate, or None when there is none (or it is not one)."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) and "inputs" in report and "main_score" in report else None
