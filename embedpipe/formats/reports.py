"""The evaluation report: what `embedpipe run` writes for a spec's evaluate stage, and reads back
to tell whether it is up to date.

    report.json  metrics of the index (and of exact search), main_score, the config it ran with,
                 and the sha256 of index.json, queries and qrels (``inputs``)

and the shapes other tools read: MTEB's result JSON (``mteb_result``), a TREC run file (``trec_run_lines``).
"""

from __future__ import annotations

import math
import os
import time

from ..errors import BadInput
from ..fsio import read_json


def read_evaluation(path: str | os.PathLike) -> dict | None:
    """A report written by run_evaluate, or None when there is none (or it is not one)."""
    report = read_json(path)
    return report if report is not None and "inputs" in report and "main_score" in report else None


# --- what the field compares: MTEB result JSON, TREC run files -------------------------------------

def mteb_result(task_name: str, split: str, scores: dict[str, float], main_score: str, *,
                evaluation_time: float | None = None, dataset_revision: str = "local",
                languages: list[str] | tuple[str, ...] = (), hf_subset: str = "default") -> dict:
    """One task's scores as MTEB writes them (its ``TaskResult``; loads with
    ``mteb.TaskResult.from_dict``): ``main_score`` is a value, the named metric's.

    >>> result = mteb_result("SciFact", "test", {"ndcg_at_10": 0.5, "mrr_at_10": 0.4}, "ndcg_at_10")
    >>> result["scores"]["test"][0]["main_score"], result["task_name"]
    (0.5, 'SciFact')
    """
    if main_score not in scores:
        raise KeyError(f"main score {main_score!r} is not among the scores ({', '.join(scores)})")
    entry = {**scores, "main_score": scores[main_score], "hf_subset": hf_subset, "languages": list(languages)}
    return {"dataset_revision": dataset_revision, "task_name": task_name, "mteb_version": None,
            "scores": {split: [entry]}, "evaluation_time": evaluation_time, "kg_co2_emissions": None,
            "date": time.time()}


def ranking(doc_scores: dict[str, float]) -> list[str]:
    """Doc ids best first: by score, ties by doc id, both descending. trec_eval re-sorts a run file
    so, whatever order its lines come in; the ranks written here, pytrec_eval and MTEB's metrics
    (retrieval/metrics.py) all follow it.

    >>> ranking({"d1": 0.5, "d3": 0.5, "d2": 0.9})
    ['d2', 'd3', 'd1']
    """
    return [doc for doc, _ in sorted(doc_scores.items(), key=lambda item: (item[1], item[0]), reverse=True)]


def trec_run_lines(run: dict[str, dict[str, float]], tag: str = "embedpipe") -> list[str]:
    """A run as TREC run file lines, ``QID Q0 DOCID RANK SCORE TAG``, each query's documents in the
    order every metric ranks them (score, then doc id, descending). Ids must have no whitespace.

    >>> trec_run_lines({"q1": {"d2": 0.5, "d1": 0.5, "d3": 0.9}})
    ['q1 Q0 d3 1 0.900000 embedpipe', 'q1 Q0 d2 2 0.500000 embedpipe', 'q1 Q0 d1 3 0.500000 embedpipe']
    """
    trec_field("tag", tag)
    lines = []
    for query_id, doc_scores in run.items():
        trec_field("query id", query_id)
        for rank, doc_id in enumerate(ranking(doc_scores), start=1):
            trec_field("document id", doc_id)
            score = doc_scores[doc_id]
            if not math.isfinite(score):
                raise BadInput(f"the score of document {doc_id!r} for query {query_id!r} is {score}; "
                               "a TREC run holds finite scores")
            lines.append(f"{query_id} Q0 {doc_id} {rank} {score:.6f} {tag}")
    return lines


def trec_field(what: str, value) -> str:
    """A value that is one field of a whitespace-separated TREC line: a non-empty string holding no
    whitespace (a space, a tab, a line break: any would shift or split the line).

    >>> trec_field("tag", "my run")
    Traceback (most recent call last):
    embedpipe.errors.BadInput: tag 'my run' cannot be written to a TREC run file: its fields are whitespace-separated
    """
    value = str(value)
    if not value or any(c.isspace() for c in value) or not value.isprintable():
        raise BadInput(f"{what} {value!r} cannot be written to a TREC run file: its fields are whitespace-separated")
    return value


def trec_tag(name: str) -> str:
    """A run tag from a name (an index directory's): whitespace runs become '_', 'embedpipe' when empty.

    >>> trec_tag("my index v2"), trec_tag("")
    ('my_index_v2', 'embedpipe')
    """
    return "_".join("".join(c if c.isprintable() else " " for c in name).split()) or "embedpipe"


def mteb_classification_results(report: dict, languages=("eng-Latn",)) -> dict[str, dict]:
    """{file name: MTEB result} for each probe of a classify report run in MTEB mode
    (``samples_per_label``): accuracy as main_score, macro-F1 as f1, and each experiment's accuracy,
    as MTEB's classification tasks report them. Other rows (no sampling) have no MTEB counterpart."""
    train = str((report.get("dataset") or {}).get("train_path") or "classification")
    task = train.rstrip("/").rsplit("/", 1)[-1].split(".")[0]
    results = {}
    for row in report.get("results") or []:
        if not row.get("samples_per_label"):
            continue
        scores = {"accuracy": row["accuracy"], "f1": row["macro_f1"],
                  "scores_per_experiment": [{"accuracy": a} for a in row.get("accuracies") or []]}
        results[row["key"].replace("/", "_") + ".json"] = mteb_result(
            task, "test", scores, "accuracy", evaluation_time=row.get("train_seconds"), languages=languages)
    return results
