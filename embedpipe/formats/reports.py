"""The evaluation report: what `embedpipe run` writes for a spec's evaluate stage, and reads back
to tell whether it is up to date.

    report.json  metrics of the index (and of exact search), main_score, the config it ran with,
                 and the sha256 of index.json, queries and qrels (``inputs``)
"""

from __future__ import annotations

import os

from ..fsio import read_json


def read_evaluation(path: str | os.PathLike) -> dict | None:
    """A report written by run_evaluate, or None when there is none (or it is not one)."""
    report = read_json(path)
    return report if report is not None and "inputs" in report and "main_score" in report else None
