"""Merge `embedpipe classify` reports made on the same test rows (e.g. one process per fine-tuning head,
run side by side on a busy machine) into one report directory, with every method's comparison
against the best and the verdict recomputed over all of their methods (from their predictions.parquet).

    python scripts/merge_classify_reports.py OUT_DIR REPORT_DIR REPORT_DIR ...

A result whose key (method/pooling/layer/head) appears in several reports is taken from the first;
the test labels of every report must be the same rows.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from embedpipe.classify.report import write_report_files
from embedpipe.classify.verdict import add_statistics, prediction_table

out, dirs = Path(sys.argv[1]), [Path(d) for d in sys.argv[2:]]
reports = [json.loads((d / "report.json").read_text()) for d in dirs]
tables = [pq.read_table(d / "predictions.parquet").to_pydict() for d in dirs]
y = np.array(tables[0]["label"])
assert all(np.array_equal(np.array(t["label"]), y) for t in tables)
results, predictions = [], {}
for report, table in zip(reports, tables):
    for r in report["results"]:
        if r["key"] in predictions:
            continue
        results.append(r)
        predictions[r["key"]] = [np.array(table[r["key"] if s == 0 else f"{r['key']}#{s}"])
                                 for s in range(r["runs"])]
merged = dict(reports[0])
merged["results"] = results
merged["config"] = {**reports[0]["config"],
                    "finetune_heads": sorted({r["head"] for r in results if r["method"] == "finetune"})}
merged["notes"] = reports[0]["notes"] + [f"merged from {len(dirs)} classify runs on the same test rows: "
                                         + ", ".join(map(str, dirs))]
best = max(results, key=lambda r: r["accuracy"])
merged["best"] = {k: best[k] for k in ("key", "method", "pooling", "layer", "head", "accuracy")}
add_statistics(merged, predictions, y)
out.mkdir(parents=True, exist_ok=True)
write_report_files(out, merged, prediction_table(predictions, y, merged["dataset"]["classes"]))
print("\n".join(merged["verdict"]))
