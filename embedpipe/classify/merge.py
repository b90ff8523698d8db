"""Merge ``classify`` reports made on the same test rows (e.g. one process per fine-tuning head, run
side by side) into one report directory, every method compared with the best and the verdict
recomputed over all of them from their predictions.

    >>> merge_reports("all.classify", ["heads-a.classify", "heads-b.classify"])["best"]["key"]  # doctest: +SKIP

Paired statistics (bootstrap, McNemar) pair the reports' test rows one by one, so every report must
be on the same rows: the same test fingerprint (the test texts and labels, recorded since reports
carry one), or for older reports the same data record, split config and label column. A result whose
key appears in several reports is taken from the first. The output is published whole, never over
one of its inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import BadInput
from ..fsio import check_output, check_output_dir, staged_dir
from .report import PREDICTIONS, REPORT, write_report_files
from .verdict import add_statistics, prediction_table

# What decides the test rows of a report without a test fingerprint (made before it was recorded).
SPLIT_CONFIG = ("train", "test", "test_fraction", "split_seed", "text_column", "label_column", "max_test_rows")
SPLIT_DATA = ("train_path", "test_source", "test_rows", "classes")


def merge_reports(out: str | Path, report_dirs: list[str | Path], *, overwrite: bool = False) -> dict:
    """Merge the classify reports in ``report_dirs`` into the report directory ``out``; returns the
    merged report.json."""
    dirs = [Path(d) for d in report_dirs]
    if len(dirs) < 2:
        raise BadInput(f"give at least two classify report directories to merge (got {len(dirs)})")
    if len({d.resolve() for d in dirs}) < len(dirs):
        raise BadInput("a report directory is given twice; give each once")
    out = check_output(out, {f"report {d}": d for d in dirs})
    out = check_output_dir(out, overwrite, REPORT)
    reports = [_read_report(d) for d in dirs]
    tables = [_read_predictions(d, report) for d, report in zip(dirs, reports)]
    y = _same_test_rows(dirs, reports, tables)
    results, predictions = [], {}
    for directory, report, table in zip(dirs, reports, tables):
        for r in report["results"]:
            if r["key"] in predictions:
                continue
            results.append(r)
            predictions[r["key"]] = [_column(directory, table, r["key"] if s == 0 else f"{r['key']}#{s}")
                                     for s in range(int(r.get("runs", 1)))]
    merged = dict(reports[0])
    merged["results"] = results
    merged["config"] = {**reports[0]["config"],
                        "finetune_heads": sorted({r["head"] for r in results if r["method"] == "finetune"})}
    merged["notes"] = list(reports[0].get("notes") or []) + [
        f"merged from {len(dirs)} classify runs on the same test rows: " + ", ".join(map(str, dirs))]
    best = max(results, key=lambda r: r["accuracy"])
    merged["best"] = {k: best.get(k) for k in ("key", "method", "pooling", "layer", "head", "accuracy")}
    add_statistics(merged, predictions, y)
    with staged_dir(out) as staging:
        write_report_files(staging, merged, prediction_table(predictions, y, merged["dataset"]["classes"]))
    return merged


def _read_report(directory: Path) -> dict:
    path = directory / REPORT
    if not directory.is_dir():
        raise BadInput(f"{directory} is not a classify report directory (it does not exist)")
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise BadInput(f"{directory} is not a classify report directory (no {REPORT})") from None
    except (OSError, ValueError) as e:
        raise BadInput(f"{path} cannot be read as JSON ({e})") from None
    ok = (isinstance(report, dict) and isinstance(report.get("results"), list) and report["results"]
          and all(isinstance(r, dict) and {"key", "accuracy", "method"} <= set(r) for r in report["results"])
          and isinstance(report.get("dataset"), dict) and isinstance(report.get("config"), dict))
    if not ok:
        raise BadInput(f"{path} is not a classify report (results, dataset and config expected)")
    return report


def _read_predictions(directory: Path, report: dict) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = directory / PREDICTIONS
    try:
        table = pq.read_table(path).to_pydict()
    except FileNotFoundError:
        raise BadInput(f"{directory}: {PREDICTIONS} is missing; the report's predictions are what is merged") \
            from None
    except (OSError, pa.ArrowException) as e:
        raise BadInput(f"cannot read {path} ({e})") from None
    if "label" not in table:
        raise BadInput(f"{path} has no 'label' column")
    return table


def _column(directory: Path, table: dict, name: str) -> np.ndarray:
    if name not in table:
        raise BadInput(f"{directory / PREDICTIONS} has no predictions of {name!r}, which report.json lists")
    return np.asarray(table[name])


def _same_test_rows(dirs: list[Path], reports: list[dict], tables: list[dict]) -> np.ndarray:
    """The test labels every report shares; an error naming the first report on other rows."""
    first = reports[0]
    y = np.asarray(tables[0]["label"])
    for directory, report, table in zip(dirs[1:], reports[1:], tables[1:]):
        fingerprints = (first["dataset"].get("test_fingerprint"), report["dataset"].get("test_fingerprint"))
        if None not in fingerprints:
            same = fingerprints[0] == fingerprints[1] and first["dataset"].get("classes") == \
                report["dataset"].get("classes")
        else:   # a report made before fingerprints: the split's record must agree
            same = all(first["dataset"].get(k) == report["dataset"].get(k) for k in SPLIT_DATA) and \
                all(first["config"].get(k) == report["config"].get(k) for k in SPLIT_CONFIG)
        labels = np.asarray(table["label"])
        if not same or labels.shape != y.shape or not np.array_equal(labels, y):
            raise BadInput(f"{directory} was made on other test rows than {dirs[0]}; paired statistics need "
                           "the same rows: merge reports of one train/test split only")
    return y
