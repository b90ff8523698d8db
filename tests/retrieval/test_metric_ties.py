"""Tied scores: every metric ranks documents as trec_eval does (score, then doc id, both descending),
checked against pytrec_eval itself on random runs full of ties."""

from __future__ import annotations

import math
import random

import pytest
import pytrec_eval

from embedpipe.retrieval.metrics import mrr_at_k, ranking, retrieval_metrics


def tied_runs(seed: int, count: int = 150) -> list[tuple[dict, dict]]:
    """(run, qrels) of one query each: few distinct scores, so most documents tie with others; ids
    with upper and lower case and digits, so the tie order is more than alphabetical."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        docs = rng.sample([f"{c}{i}" for c in "aBc" for i in range(12)], rng.randint(1, 20))
        run = {"q": {d: rng.choice([0.1, 0.5, 0.5, 0.9]) for d in docs}}
        judged = rng.sample(docs, rng.randint(0, min(3, len(docs))))
        qrels = {"q": {d: rng.randint(0, 2) for d in judged} or {"elsewhere": 1}}
        pairs.append((run, qrels))
    return pairs


def test_mrr_equals_pytrec_eval_recip_rank_on_runs_with_ties():
    for run, qrels in tied_runs(seed=1):
        expected = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run)["q"]["recip_rank"]
        # No cut-off beyond the run's length: MRR@k is then trec_eval's recip_rank exactly.
        assert mrr_at_k(run, qrels, k=100) == [pytest.approx(expected)], run


def test_cut_offs_take_the_same_tied_documents_as_trec_eval():
    """nDCG@k and P@k from pytrec_eval equal those computed by hand from ``ranking``'s top k: so MRR@k,
    which cuts at the same k, keeps the documents trec_eval keeps."""
    for run, qrels in tied_runs(seed=2):
        measures = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.1,3,5", "P.1,3,5"}).evaluate(run)["q"]
        ranked = ranking(run["q"])
        ideal = sorted((g for g in qrels["q"].values() if g > 0), reverse=True)
        for k in (1, 3, 5):
            gains = [qrels["q"].get(d, 0) for d in ranked[:k]]
            dcg = sum(g / math.log2(r + 2) for r, g in enumerate(gains))
            idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal[:k]))
            assert measures[f"ndcg_cut_{k}"] == pytest.approx(dcg / idcg if idcg else 0.0), (run, k)
            assert measures[f"P_{k}"] == pytest.approx(sum(g > 0 for g in gains) / k), (run, k)


def test_the_same_scores_give_the_same_mrr_whatever_order_the_index_returned():
    qrels = {"q": {"d1": 1}}
    first = {"q": {"d1": 0.5, "d2": 0.5}}   # the relevant document returned first
    second = {"q": {"d2": 0.5, "d1": 0.5}}  # ... or second, with the same score
    assert retrieval_metrics(first, qrels, [1]) == retrieval_metrics(second, qrels, [1])
    assert retrieval_metrics(first, qrels, [1])["mrr_at_1"] == 0.0  # "d2" > "d1": d2 ranks first, as in trec_eval
