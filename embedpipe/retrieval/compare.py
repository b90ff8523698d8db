"""Several indexes of one corpus side by side on the same queries: what each byte saved costs.

    >>> rows = compare_indexes(["f32.index", "int8.index"], "q.parquet", "qrels.parquet")  # doctest: +SKIP
    >>> [(r["dtype"], r["dim"], r["ndcg_at_10"], r["ram_bytes_per_vector"]) for r in rows]  # doctest: +SKIP

Per index: nDCG@10 and recall@10 (BEIR / MTEB metrics), the precision and dimension it holds, bytes per
vector held in RAM at search and read from disk to rescore (index.json), and queries/s of one batch of
every query (encoding excluded). Queries are encoded once per encoder and cut to each index's
truncate_dim. ``plot_quality`` draws nDCG@10 against bytes per vector.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..encode.codec import query_vectors
from ..errors import BadInput
from ..formats.beir import read_qrels, read_queries
from ..formats.vectors import identity_of
from ..fsio import atomic_path
from ..index.load import open_index
from .metrics import retrieval_metrics
from .search import index_search

COMPARE_K = (10,)


def _encoder_key(manifest: dict) -> str:
    identity = {k: v for k, v in (manifest.get("encoder") or {}).items() if k != "truncate_dim"}
    return repr(sorted(identity_of({**manifest, "encoder": identity}).items()))


def compare_indexes(index_dirs: list[str | os.PathLike], queries: str | os.PathLike, qrels: str | os.PathLike,
                    *, queries_columns=None, qrels_columns=None, batch_rows: int = 1024) -> list[dict]:
    """One row per index (in the order given): quality, bytes and speed on the same judged queries."""
    from ..encode.encoder import TextEncoder

    if not index_dirs:
        raise BadInput("give at least one index directory to compare")
    query_ids, texts = read_queries(queries, queries_columns)
    judged = read_qrels(qrels, qrels_columns)
    chosen = [(str(q), t) for q, t in zip(query_ids, texts) if str(q) in judged]
    if not chosen:
        raise BadInput(f"no query in {queries} has relevance judgments in {qrels}")
    encoded: dict[str, np.ndarray] = {}
    rows = []
    for path in index_dirs:
        index = open_index(path, mmap=True)
        manifest = index.info.get("manifest") or {}
        key = _encoder_key(manifest)
        if key not in encoded:
            encoder = TextEncoder.from_manifest(manifest, query=True)
            encoded[key] = np.concatenate([encoder.encode([t for _, t in chosen[s:s + batch_rows]])
                                           for s in range(0, len(chosen), batch_rows)])
        vectors = query_vectors(manifest, encoded[key])
        started = time.perf_counter()
        scores, hits = index_search(index, vectors, max(COMPARE_K))
        seconds = time.perf_counter() - started
        run = {q: {str(d): float(s) for d, s in zip(h, sc)} for (q, _), sc, h in zip(chosen, scores, hits)}
        metrics = retrieval_metrics(run, judged, list(COMPARE_K))
        info, n = index.info, max(int(index.info["n"]), 1)
        rows.append({"index": str(path), "dtype": (info.get("compact") or {}).get("dtype") or manifest.get("dtype")
                     or "float32", "dim": int(info["dim"]), "factory": info["factory"],
                     "rescored": bool((info.get("compact") or {}).get("rescore")),
                     "ndcg_at_10": round(metrics["ndcg_at_10"], 4), "recall_at_10": round(metrics["recall_at_10"], 4),
                     "ram_bytes_per_vector": round(int(info.get("memory_bytes", 0)) / n, 1),
                     "disk_bytes_per_vector": round(int(info.get("disk_bytes", 0)) / n, 1),
                     "queries_per_second": round(len(chosen) / max(seconds, 1e-9), 1), "queries": len(chosen)})
    first = rows[0]
    for row in rows:
        row["ndcg_vs_first"] = round(row["ndcg_at_10"] / first["ndcg_at_10"], 4) if first["ndcg_at_10"] else None
        row["ram_vs_first"] = round(first["ram_bytes_per_vector"] / max(row["ram_bytes_per_vector"], 1e-9), 1)
    return rows


def plot_quality(rows: list[dict], path: str | os.PathLike) -> Path:
    """nDCG@10 against bytes per vector in RAM (log scale), one labeled point per index; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        label = f"{row['dtype']} {row['dim']}d{' +rescore' if row['rescored'] else ''}"
        ax.scatter(row["ram_bytes_per_vector"], row["ndcg_at_10"])
        ax.annotate(label, (row["ram_bytes_per_vector"], row["ndcg_at_10"]), fontsize=7,
                    textcoords="offset points", xytext=(4, 2))
    ax.set_xscale("log")
    ax.set_xlabel("bytes per vector in RAM at search (log scale)")
    ax.set_ylabel("nDCG@10")
    ax.set_title("Retrieval quality against bytes per vector")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path
