"""classify --samples-per-label (MTEB mode) writes each probe's result as MTEB's result JSON, loaded
here by mteb's own TaskResult."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import run_cli

WORDS = {"animal": "cat dog bird fish".split(), "sky": "sun moon star fire".split()}


def labeled(path, repeat: int):
    texts, labels = [], []
    for label, words in WORDS.items():
        for i in range(repeat):
            texts.append(" ".join(words[(i + j) % 4] for j in range(3)))
            labels.append(label)
    pq.write_table(pa.table({"text": texts, "label": labels}), path)
    return path


def test_mteb_mode_writes_mteb_results(tiny_model_dir, tmp_path):
    train, test = labeled(tmp_path / "tiny_topics.parquet", 8), labeled(tmp_path / "test.parquet", 4)
    result = run_cli("classify", train, "--test", test, "--model", tiny_model_dir, "--pooling", "mean",
                     "--head", "linear", "--samples-per-label", "3", "--seeds", "2", "--out", tmp_path / "r", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    row = report["results"][0]
    path = tmp_path / "r" / "mteb" / (row["key"].replace("/", "_") + ".json")
    written = json.loads(path.read_text())
    entry = written["scores"]["test"][0]
    assert written["task_name"] == "tiny_topics" and entry["main_score"] == row["accuracy"]
    assert [e["accuracy"] for e in entry["scores_per_experiment"]] == row["accuracies"] and len(row["accuracies"]) == 2
    import mteb  # the dev extra declares it: a missing mteb fails here instead of skipping
    loaded = mteb.TaskResult.from_disk(path)
    assert loaded.get_score() == pytest.approx(row["accuracy"]) and loaded.scores["test"][0]["f1"] == row["macro_f1"]
