"""Every method against the best, and the verdict report.md opens with, written from those numbers.

    >>> add_statistics(report, {key: [predictions per run]}, y_test)     # doctest: +SKIP
    >>> report["verdict"][0]                                             # doctest: +SKIP
    'Best: mlp probe on mean pooling (layer 6), accuracy 71.2% (± 0.3 over 3 seeds).'

Each result gets ``vs_best`` (see stats.py: the best's accuracy minus this one's, its paired
bootstrap 95% CI, McNemar's exact p). The verdict compares, when the report has them: the best
pooling against [CLS] (best frozen probe of each at the last layer), the best layer against the
last one, the attention head against the best fixed pooling, fine-tuning against the best frozen
probe, and the fine-tuning heads among themselves; every sentence's numbers are in
``report["comparisons"]`` too, so report.md and report.json cannot disagree.
"""

from __future__ import annotations

import numpy as np

from .stats import beats, bootstrap_rows, compare, significant


def describe(r: dict, last: int | None = None) -> str:
    """'mlp probe on mean (layer 4)', 'attention head', 'fine-tuned cls + pooler head'."""
    if r["method"] == "finetune":
        return f"fine-tuned {r['pooling']} + {r['head']} head"
    if r["head"] == "attention":
        return "the attention-pooling head"
    layer = "" if last is not None and r["layer"] == last else f" (layer {r['layer']})"
    name = "[CLS]" if r["pooling"] == "cls" else f"{r['pooling']} pooling"
    return f"{r['head']} probe on {name}{layer}"


def _correctness(runs: list[np.ndarray], y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    right = np.stack([np.asarray(p) == y for p in runs]).astype(np.float64)
    return right.mean(axis=0), right[0]


def add_statistics(report: dict, predictions: dict[str, list[np.ndarray]], y_test: np.ndarray) -> None:
    """Fill ``vs_best`` of every result, ``comparisons`` and ``verdict`` (a list of sentences)."""
    results = report["results"]
    correct = {key: _correctness(runs, y_test) for key, runs in predictions.items()}
    rows = bootstrap_rows(len(y_test))
    best = max(results, key=lambda r: r["accuracy"])

    def versus(a: dict, b: dict) -> dict:
        return compare(correct[a["key"]][0], correct[b["key"]][0], first_a=correct[a["key"]][1],
                       first_b=correct[b["key"]][1], rows=rows)

    for r in results:
        r["vs_best"] = None if r is best else versus(best, r)
    last = report["model"].get("layers")
    comparisons, verdict = [], []
    seeds = f" (± {100 * best['accuracy_std']:.1f} over {best['runs']} seeds)" if best["runs"] > 1 else ""
    verdict.append(f"Best: {describe(best, last)}, accuracy {100 * best['accuracy']:.1f}%{seeds}.")

    def sentence(kind: str, a: dict, b: dict, text_a: str, text_b: str) -> None:
        c = versus(a, b)
        comparisons.append({"kind": kind, "a": a["key"], "b": b["key"], **c})
        text = beats(text_a, text_b, c)
        verdict.append(text[0].upper() + text[1:] + ".")

    frozen = [r for r in results if r["method"] == "probe" and r["head"] != "attention"]
    at_last = [r for r in frozen if r["layer"] == last]
    by_pooling = {}
    for r in at_last:
        if r["pooling"] not in by_pooling or r["accuracy"] > by_pooling[r["pooling"]]["accuracy"]:
            by_pooling[r["pooling"]] = r
    if "cls" in by_pooling and len(by_pooling) > 1:
        top = max(by_pooling.values(), key=lambda r: r["accuracy"])
        other = top if top["pooling"] != "cls" else max((r for p, r in by_pooling.items() if p != "cls"),
                                                        key=lambda r: r["accuracy"])
        sentence("pooling", other, by_pooling["cls"], f"{other['pooling']} pooling ({describe(other, last)})",
                 f"[CLS] ({describe(by_pooling['cls'], last)})")
    if frozen and len({r["layer"] for r in frozen}) > 1:
        top = max(frozen, key=lambda r: r["accuracy"])
        same = [r for r in frozen if (r["pooling"], r["head"]) == (top["pooling"], top["head"]) and r["layer"] == last]
        if same and top["layer"] != last:
            sentence("layer", top, same[0], f"layer {top['layer']}", f"the last layer ({last}) for "
                     f"{top['head']} on {top['pooling']}")
        elif same:
            lower = [r for r in frozen if (r["pooling"], r["head"]) == (top["pooling"], top["head"])
                     and r["layer"] != last]
            if lower:
                runner = max(lower, key=lambda r: r["accuracy"])
                sentence("layer", top, runner, f"the last layer ({last}) for {top['head']} on {top['pooling']}",
                         f"the best earlier layer ({runner['layer']})")
    attention = [r for r in results if r["head"] == "attention"]
    if attention and at_last:
        fixed = max(at_last, key=lambda r: r["accuracy"])
        sentence("attention", attention[0], fixed, "the attention-pooling head", f"the best fixed pooling "
                 f"({describe(fixed, last)})")
    tuned = [r for r in results if r["method"] == "finetune"]
    probes = [r for r in results if r["method"] == "probe"]
    if tuned and probes:
        top_tuned = max(tuned, key=lambda r: r["accuracy"])
        top_probe = max(probes, key=lambda r: r["accuracy"])
        limit = report["config"].get("finetune_train_limit")
        trained = f" (fine-tuned on {top_tuned['train_rows']} training rows" + (
            f", probes on {top_probe['train_rows']})" if limit else ")")
        sentence("finetune", top_tuned, top_probe, f"{describe(top_tuned)}{trained}",
                 f"the best frozen probe ({describe(top_probe, last)})")
    if len(tuned) > 1:
        top_tuned = max(tuned, key=lambda r: r["accuracy"])
        low = min(reversed(tuned), key=lambda r: r["accuracy"])
        if low is not top_tuned:
            sentence("finetune_heads", top_tuned, low, f"among fine-tuned heads, {describe(top_tuned)}",
                     describe(low))
    tied = [r for r in results if r["vs_best"] is not None and not significant(r["vs_best"])]
    if len(results) > 1:
        verdict.append(f"{len(tied)} of the other {len(results) - 1} method(s) are not clearly worse than the best "
                       "(bootstrap 95% CI of the difference includes 0, or McNemar p >= 0.05)"
                       + (": " + ", ".join(describe(r, last) for r in tied[:6]) + (", ..." if len(tied) > 6 else "")
                          if tied else "") + ".")
    report["comparisons"] = comparisons
    report["verdict"] = verdict


def prediction_table(predictions: dict[str, list[np.ndarray]], y_test: np.ndarray, classes: list):
    """predictions.parquet: per test row its true class and every method's prediction per run
    (columns KEY for the first run, KEY#SEED for the others), class indices into ``classes``."""
    import pyarrow as pa

    columns = {"row": pa.array(np.arange(len(y_test))), "label": pa.array(np.asarray(y_test, dtype=np.int64))}
    for key, runs in predictions.items():
        for seed, predicted in enumerate(runs):
            columns[key if seed == 0 else f"{key}#{seed}"] = pa.array(np.asarray(predicted, dtype=np.int64))
    return pa.table(columns, metadata={"classes": "\n".join(map(str, classes))})
