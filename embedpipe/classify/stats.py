"""How sure is "A beats B"? Paired comparisons of methods scored on the same test rows, and the
verdict sentences report.md opens with.

    >>> correct_a = np.array([1, 1, 1, 0, 1, 1, 0, 1.0]); correct_b = np.array([1, 0, 1, 0, 0, 1, 0, 0.0])
    >>> c = compare(correct_a, correct_b, first_a=correct_a, first_b=correct_b)
    >>> round(c["difference"], 3), c["a_only"], c["b_only"], round(c["p_value"], 3)
    (0.375, 3, 0, 0.25)

- ``difference``: accuracy(A) - accuracy(B), in [-1, 1]; per-row correctness may be a mean over
  seeds (a fraction), so the difference is exactly the difference of the reported mean accuracies.
- ``ci_low`` / ``ci_high``: the paired bootstrap 95% percentile interval of that difference:
  ``BOOTSTRAP`` resamples of the test rows (the same rows for both methods), seed 0.
- ``p_value``: McNemar's exact test (two-sided binomial on the rows exactly one method gets right),
  on each method's first run (seed 0), since the test needs right / wrong per row.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP = 2000
LEVEL = 0.95


def bootstrap_rows(n: int, resamples: int = BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """(resamples, n) row numbers drawn with replacement; shared by every comparison of a report."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n), dtype=np.int32)


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: P(a split at least this uneven | no difference)."""
    from scipy.stats import binomtest

    n = a_only + b_only
    return 1.0 if n == 0 else float(binomtest(min(a_only, b_only), n, 0.5).pvalue)


def compare(correct_a: np.ndarray, correct_b: np.ndarray, *, first_a: np.ndarray, first_b: np.ndarray,
            rows: np.ndarray | None = None) -> dict:
    """A against B on the same test rows (see the module doc). ``correct_*``: per-row correctness
    averaged over seeds; ``first_*``: the first run's per-row right (1) / wrong (0)."""
    rows = bootstrap_rows(len(correct_a)) if rows is None else rows
    diff = np.asarray(correct_a, dtype=np.float64) - np.asarray(correct_b, dtype=np.float64)
    resampled = diff[rows].mean(axis=1)
    tail = (1 - LEVEL) / 2
    a_only = int(np.sum((first_a > 0.5) & (first_b < 0.5)))
    b_only = int(np.sum((first_b > 0.5) & (first_a < 0.5)))
    return {"difference": float(diff.mean()), "ci_low": float(np.quantile(resampled, tail)),
            "ci_high": float(np.quantile(resampled, 1 - tail)), "a_only": a_only, "b_only": b_only,
            "p_value": mcnemar_exact(a_only, b_only)}


def points(x: float) -> str:
    return f"{100 * x:.1f}"


def p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def ci_text(c: dict) -> str:
    return f"95% CI {points(c['ci_low'])} to {points(c['ci_high'])}, {p_text(c['p_value'])}"


def significant(c: dict) -> bool:
    """The interval excludes 0 and McNemar agrees at 5%."""
    return (c["ci_low"] > 0 or c["ci_high"] < 0) and c["p_value"] < 0.05


def beats(name_a: str, name_b: str, c: dict) -> str:
    """'A beats B by 14.2 points (95% CI 12.9 to 15.5, p < 0.001)', or says the difference is not clear."""
    if c["difference"] < 0:
        name_a, name_b = name_b, name_a
        c = {**c, "difference": -c["difference"], "ci_low": -c["ci_high"], "ci_high": -c["ci_low"]}
    if significant(c):
        return f"{name_a} beats {name_b} by {points(c['difference'])} points ({ci_text(c)})"
    return (f"{name_a} and {name_b} are not clearly different: {points(c['difference'])} points "
            f"({ci_text(c)})")
