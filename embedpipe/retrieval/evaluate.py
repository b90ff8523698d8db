"""Retrieval quality of an index on BEIR-style queries and qrels, next to exact search.

    >>> report = evaluate("corpus.index", "queries.parquet", "qrels.parquet", [10, 100])   # doctest: +SKIP
    >>> report["main_score"], report["index"]["ndcg_at_10"], report["exact"]["ndcg_at_10"]  # doctest: +SKIP
    ('ndcg_at_10', 0.7353, 0.7361)

``run_evaluate`` writes the report (with the config and the inputs' checksums) for a pipeline.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from .. import checks
from ..encode.devices import check_device
from ..errors import BadInput, ConfigError, CorruptArtifact, EmbedpipeError
from ..formats.beir import examples, read_qrels, read_queries
from ..formats.index_dir import INFO_FILE
from ..formats.vectors import VectorSet, open_vectors, read_ids
from ..fsio import check_output, check_output_file, file_sha256, write_json_atomic
from ..index.factory import is_exact
from ..index.load import LoadedIndex, open_index
from ..index.params import ExactTopK
from ..progress import Progress
from .documents import DOC_SCORES, check_doc_score, documents_wanted, is_chunked, not_indexed, search_documents
from .metrics import MAIN_SCORE, retrieval_metrics
from .search import index_search, query_encoder

log = logging.getLogger("embedpipe.retrieval")


K_VALUES = (10, 100)  # the metric cut-offs by default: nDCG@10 (BEIR's main score) and Recall@100

def _run(query_ids: list[str], scores: np.ndarray, hit_ids: list[list]) -> dict[str, dict[str, float]]:
    """BEIR/pytrec_eval 'run': {query_id: {doc_id: score}}."""
    return {q: {str(d): float(v) for d, v in zip(ids, s)} for q, s, ids in zip(query_ids, scores, hit_ids)}


def exact_search(index: LoadedIndex, queries: np.ndarray, k: int, doc_score: str = "best"
                 ) -> tuple[np.ndarray, list[list]]:
    """(scores, hit ids) of exact search over the vectors the index was built from (streamed;
    the index itself when it is Flat); over chunks, documents ranked by ``doc_score``."""
    if documents_wanted(doc_score, is_chunked(index)):
        return search_documents(lambda q, depth: exact_search(index, q, depth, "chunks"), queries, k,
                                index.index.ntotal, doc_score)[:2]
    if index.info.get("compact") and index.index.store is not None:
        scores, rows = index.index.exhaustive(queries, k)   # over the vectors it rescores with (compact.py)
        return [s[r >= 0] for s, r in zip(scores, rows)], index.ids_of_each(rows)
    if not index.info.get("compact") and is_exact(index.index):
        return index_search(index, queries, k, doc_score)
    source = index.info.get("vectors")
    try:
        vectors = open_vectors(source)
    except EmbedpipeError as e:
        # Every standalone "exact" here is shown as a flag by the CLI, so the prose says "exhaustive".
        raise EmbedpipeError(f"the vectors the index was built from are needed for exact=true, the comparison "
                             f"with exhaustive search ({e}); pass exact=false to skip it", fields=("exact",)) from None
    if vectors.rows != index.index.ntotal or vectors.dim != index.dim:
        raise EmbedpipeError(f"{source} no longer matches the index ({vectors.rows} x {vectors.dim} vs "
                             f"{index.index.ntotal} x {index.dim}); pass exact=false or rebuild the index",
                             fields=("exact",))
    exact = ExactTopK(queries, min(k, vectors.rows), index.metric)
    start = 0
    with Progress(vectors.rows, "exact search", unit="vectors") as progress:
        for _, batch in vectors.iter_batches():
            exact.add(batch, start)
            start += len(batch)
            progress.update(len(batch))
    distances, rows = exact.result()
    scores = distances if index.metric == "ip" else -distances
    return [s[r >= 0] for s, r in zip(scores, rows)], _vector_ids(vectors, rows)


def _vector_ids(vectors: VectorSet, rows: np.ndarray) -> list[list]:
    """The ids of exact search's hits, ``rows`` of the vector directory (whose order need not be the
    index's), read from the id column of the shards holding them, one shard at a time: never every
    id at once."""
    wanted, found, start = np.unique(rows[rows >= 0]), {}, 0
    for shard in vectors.manifest["shards"]:
        count = int(shard["rows"])
        inside = wanted[(wanted >= start) & (wanted < start + count)]
        if len(inside):
            column = read_ids(vectors.store, [shard], verify=False)[0]
            if len(column) != count:
                raise CorruptArtifact(f"vector shard {vectors.store.describe(shard['file'])} holds {len(column)} "
                                      f"rows, the manifest says {count}")
            found.update(zip(inside.tolist(), column.take(pa.array(inside - start)).to_pylist()))
        start += count
    return [[found[r] for r in row.tolist() if r >= 0] for row in rows]


def main_score(k_values) -> str:
    """The metric a report leads with: ``ndcg_at_10`` (BEIR's and MTEB's headline number) when 10 is
    among ``k_values``; otherwise nDCG at the cut-off nearest to 10 (the smaller on a tie), which
    the report does hold. Never a metric that was not computed.

    >>> main_score([10, 100]), main_score([1, 1000]), main_score([5, 15]), main_score([100])
    ('ndcg_at_10', 'ndcg_at_1', 'ndcg_at_5', 'ndcg_at_100')
    """
    if 10 in k_values:
        return MAIN_SCORE
    return f"ndcg_at_{min(k_values, key=lambda k: (abs(k - 10), k))}"


def evaluate(index_dir: str | os.PathLike, queries: str | os.PathLike, qrels: str | os.PathLike,
             k_values: list[int] = K_VALUES, *, exact: bool = True, batch_rows: int = 1024,
             queries_columns=None, qrels_columns=None, prompt_name: str | None = None,
             prompt: str | None = None, device: str = "auto", doc_score: str = "best") -> dict:
    """Retrieval metrics of the index, and of exact search over the same vectors, on BEIR files.
    Queries get the query prompt recorded with the vectors, or ``prompt_name`` / ``prompt`` when given.
    Over an index of chunks, documents are scored by ``doc_score`` (retrieval/documents.py) and the
    qrels name documents."""
    return evaluate_with_run(index_dir, queries, qrels, k_values, exact=exact, batch_rows=batch_rows,
                             queries_columns=queries_columns, qrels_columns=qrels_columns,
                             prompt_name=prompt_name, prompt=prompt, device=device, doc_score=doc_score)[0]


def evaluate_with_run(index_dir: str | os.PathLike, queries: str | os.PathLike, qrels: str | os.PathLike,
                      k_values: list[int] = K_VALUES, *, exact: bool = True, batch_rows: int = 1024,
                      queries_columns=None, qrels_columns=None, prompt_name: str | None = None,
                      prompt: str | None = None, device: str = "auto", doc_score: str = "best"
                      ) -> tuple[dict, dict[str, dict[str, float]]]:
    """``evaluate``'s report, and the index's run that it scored: {query id: {doc id: score}} (for
    a TREC run file). ``queries_columns`` / ``qrels_columns``: the files' column names; queries are
    encoded on ``device``."""
    k_values = sorted(set(k_values))
    check_doc_score(doc_score)
    index = open_index(index_dir, mmap=True)  # bounded memory: lists, codes and any exact store stay on disk
    documents = documents_wanted(doc_score, is_chunked(index))
    query_ids, texts = read_queries(queries, queries_columns)
    judged = read_qrels(qrels, qrels_columns)
    by_id = {str(q): t for q, t in zip(query_ids, texts)}
    unknown_queries = [q for q in judged if q not in by_id]
    if unknown_queries:
        raise BadInput(f"{len(unknown_queries)} query id(s) in {qrels} are not in {queries} "
                             f"({examples(unknown_queries)})")
    unknown_docs = not_indexed(index, {d for docs in judged.values() for d in docs}, documents)
    if unknown_docs:
        raise BadInput(f"{len(unknown_docs)} doc id(s) in {qrels} are not in the indexed corpus "
                             f"({examples(unknown_docs)})")
    evaluated = [q for q in map(str, query_ids) if q in judged]
    if len(evaluated) < len(query_ids):
        log.info("%d of %d queries have no relevance judgments and are not evaluated",
                 len(query_ids) - len(evaluated), len(query_ids))

    encode = query_encoder(index, prompt_name, prompt, device)
    vectors = np.empty((len(evaluated), index.dim), dtype=np.float32)
    with Progress(len(evaluated), "queries encoded", unit="queries") as progress:
        for start in range(0, len(evaluated), batch_rows):
            chunk = evaluated[start:start + batch_rows]
            vectors[start:start + len(chunk)] = encode([by_id[q] for q in chunk])
            progress.update(len(chunk))
    k = max(k_values)
    run = _run(evaluated, *index_search(index, vectors, k, doc_score))
    report = {"index": retrieval_metrics(run, judged, k_values)}
    if exact:
        report["exact"] = retrieval_metrics(_run(evaluated, *exact_search(index, vectors, k, doc_score)), judged,
                                            k_values)
    if documents:
        report["doc_score"] = doc_score
    return {**report, "main_score": main_score(k_values), "queries": len(evaluated), "k_values": k_values,
            "factory": index.info["factory"], "search_params": index.info.get("search_params", ""),
            "index_dir": str(index.path)}, run


@dataclass
class EvaluateJob:
    """An evaluation whose report is a file: what `embedpipe run` does for a spec's `evaluate` section."""

    index: str                     # index directory (an `embedpipe index` output)
    queries: str                   # queries parquet: id, text
    qrels: str                     # qrels parquet: query_id, doc_id, relevance
    k_values: list[int] = field(default_factory=lambda: list(K_VALUES))  # metric cut-offs
    exact: bool = True             # also evaluate exact search over the same vectors
    out: str = "evaluation.json"   # the report written (atomically)
    device: str = "auto"           # where the queries are encoded: auto, cpu, cuda, cuda:N (not in the report's config)
    doc_score: str = checks.choice("best", DOC_SCORES)  # an index of chunks: how documents are scored (documents.py)

    def __post_init__(self):
        checks.path("index", self.index)
        checks.path("queries", self.queries)
        checks.path("qrels", self.qrels)
        if (not isinstance(self.k_values, (list, tuple)) or not self.k_values
                or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in self.k_values)):
            raise ConfigError("k_values", f"must be a list of positive cut-offs like [10, 100], got {self.k_values!r}")
        checks.boolean("exact", self.exact)
        checks.path("out", self.out)
        check_device(self.device)
        checks.declared_choices(self)

    def check(self) -> EvaluateJob:
        """Kept for callers of the earlier API: the job checked itself when it was built."""
        return self


def evaluation_inputs(job: EvaluateJob) -> dict:
    """What an evaluation report depends on: the index (its index.json) and the two files, by sha256."""
    info = Path(job.index) / INFO_FILE
    missing = [p for p in (info, Path(job.queries), Path(job.qrels)) if not p.is_file()]
    if missing:
        raise BadInput(f"cannot evaluate: {missing[0]} does not exist")
    return {"index_json_sha256": file_sha256(info), "queries_sha256": file_sha256(job.queries),
            "qrels_sha256": file_sha256(job.qrels)}


def evaluation_config(job: EvaluateJob) -> dict:
    return {"index": str(job.index), "queries": str(job.queries), "qrels": str(job.qrels),
            "k_values": sorted(set(job.k_values)), "exact": job.exact,
            **({"doc_score": job.doc_score} if job.doc_score != "best" else {})}


def run_evaluate(job: EvaluateJob) -> dict:
    """Evaluate and write the report (metrics + the config and input checksums) to ``job.out``."""
    out = check_output(job.out, {"index": job.index, "queries": job.queries, "qrels": job.qrels})
    check_output_file(out, overwrite=True)  # the report is ours to replace, a directory is not
    inputs = evaluation_inputs(job)
    report = evaluate(job.index, job.queries, job.qrels, job.k_values, exact=job.exact, device=job.device,
                      doc_score=job.doc_score)
    report = {**report, "config": evaluation_config(job), "inputs": inputs}
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, report)
    return report


