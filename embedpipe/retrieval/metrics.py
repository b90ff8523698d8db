"""Retrieval metrics computed the way BEIR and MTEB compute them, so numbers compare with theirs.

nDCG@k and Recall@k come from pytrec_eval (trec_eval's ndcg_cut / recall: linear gains, log2
discount), averaged over the evaluated queries as BEIR does; MRR@k is MTEB's: 1/rank of the first
relevant document (relevance > 0) in the top k, 0 when none, averaged.

Every metric ranks a query's documents the way trec_eval does: by score, then ties by doc id, both
descending (``ranking``, defined with the TREC run file it also orders: formats/reports.py). Tied
scores are common (duplicates in a corpus, quantized indexes), and any other order -- say the order
FAISS returned them in -- makes the same scores give MRR 1.0 or 0.0.

    >>> run = {"q1": {"d2": 0.9, "d1": 0.8, "d3": 0.7}}      # query -> doc -> score (higher = better)
    >>> qrels = {"q1": {"d1": 1, "d3": 2}}                   # query -> doc -> relevance
    >>> retrieval_metrics(run, qrels, [10])
    {'ndcg_at_10': 0.6199..., 'recall_at_10': 1.0, 'mrr_at_10': 0.5}
"""

from __future__ import annotations

import pytrec_eval

from ..errors import EmbedpipeError
from ..formats.reports import ranking

MAIN_SCORE = "ndcg_at_10"


def mrr_at_k(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]], k: int) -> list[float]:
    """Per-query reciprocal rank of the first relevant document within the top k."""
    ranks = []
    for query_id, doc_scores in run.items():
        relevant = {doc for doc, rel in qrels.get(query_id, {}).items() if rel > 0}
        top = ranking(doc_scores)[:k]
        ranks.append(next((1.0 / (rank + 1) for rank, doc in enumerate(top) if doc in relevant), 0.0))
    return ranks


def retrieval_metrics(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]],
                      k_values: list[int]) -> dict[str, float]:
    """{'ndcg_at_K', 'recall_at_K', 'mrr_at_K'} for every K, averaged over the queries of ``run``."""
    if not run:
        raise EmbedpipeError("no query has both results and relevance judgments; nothing to evaluate")
    if any(k < 1 for k in k_values):
        raise EmbedpipeError(f"cut-offs must be positive, got {k_values}")
    cuts = ",".join(str(k) for k in k_values)
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {f"ndcg_cut.{cuts}", f"recall.{cuts}"})
    per_query = evaluator.evaluate(run)
    if not per_query:
        raise EmbedpipeError("none of the queries in the run appear in the qrels; nothing to evaluate")
    metrics: dict[str, float] = {}
    for k in k_values:
        metrics[f"ndcg_at_{k}"] = sum(q[f"ndcg_cut_{k}"] for q in per_query.values()) / len(per_query)
        metrics[f"recall_at_{k}"] = sum(q[f"recall_{k}"] for q in per_query.values()) / len(per_query)
        ranks = mrr_at_k(run, qrels, k)
        metrics[f"mrr_at_{k}"] = sum(ranks) / len(ranks)
    return metrics
