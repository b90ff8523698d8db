"""Round 3, class 12: merging classify reports is a command (`embedpipe classify-merge`) held to the
CLI's contract: reports on other test rows are refused (never paired statistics over unpaired rows,
even when the labels happen to align), OUT may not be or lie in an input, and a missing or damaged
report is one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import assert_one_line_error, run_cli, snapshot

WORDS = ["cat", "dog", "sun", "moon", "tree", "river", "fire", "water"]


@pytest.fixture(scope="module")
def reports(tiny_model_dir, tmp_path_factory):
    """Two reports on the same split (cls, mean), and a copy of the first as a report on another split
    would be (its fingerprint and split config changed: a third classify run costs more than it shows)."""
    root = tmp_path_factory.mktemp("reports")
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, 5)) for _ in range(90)]
    pq.write_table(pa.table({"text": texts, "label": ["a", "b", "c"] * 30}), root / "train.parquet")
    made = {}
    for name, extra in {"cls": ["--pooling", "cls"], "mean": ["--pooling", "mean"]}.items():
        result = run_cli("classify", root / "train.parquet", "--model", tiny_model_dir, "--head", "linear",
                         *extra, "--out", root / name)
        assert result.exit_code == 0, result.output
        made[name] = root / name
    other = Path(shutil.copytree(made["cls"], root / "other"))
    report = json.loads((other / "report.json").read_text())
    report["dataset"]["test_fingerprint"] = "f" * 64
    report["config"]["test_fraction"] = 0.3
    (other / "report.json").write_text(json.dumps(report))
    made["other"] = other
    return made


def copy(reports, tmp_path, *names) -> list[Path]:
    return [Path(shutil.copytree(reports[n], tmp_path / n)) for n in names]


def test_reports_on_the_same_rows_merge(reports, tmp_path):
    a, b = copy(reports, tmp_path, "cls", "mean")
    result = run_cli("classify-merge", tmp_path / "all", a, b)
    assert result.exit_code == 0, result.output
    merged = json.loads((tmp_path / "all" / "report.json").read_text())
    assert {r["pooling"] for r in merged["results"]} == {"cls", "mean"}
    assert all("vs_best" in r for r in merged["results"])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []   # no staging left


def test_reports_on_other_test_rows_are_refused(reports, tmp_path):
    a, other = copy(reports, tmp_path, "cls", "other")
    before = snapshot(tmp_path)
    assert_one_line_error(run_cli("classify-merge", tmp_path / "all", a, other), "other test rows")
    assert snapshot(tmp_path) == before


def test_other_rows_whose_labels_happen_to_align_are_refused(reports, tmp_path):
    a, b = copy(reports, tmp_path, "cls", "mean")
    report = json.loads((b / "report.json").read_text())
    report["dataset"]["test_fingerprint"] = "0" * 64              # same labels, other texts
    (b / "report.json").write_text(json.dumps(report))
    assert_one_line_error(run_cli("classify-merge", tmp_path / "all", a, b), "other test rows")


def test_reports_without_a_fingerprint_pair_by_their_split(reports, tmp_path):
    a, b, other = copy(reports, tmp_path, "cls", "mean", "other")
    for directory in (a, b, other):
        report = json.loads((directory / "report.json").read_text())
        del report["dataset"]["test_fingerprint"]
        (directory / "report.json").write_text(json.dumps(report))
    assert run_cli("classify-merge", tmp_path / "all", a, b).exit_code == 0
    assert_one_line_error(run_cli("classify-merge", tmp_path / "x", a, other), "other test rows")


@pytest.mark.parametrize("out", ["first", "inside first", "holds both", "second"])
def test_out_that_is_or_holds_or_lies_in_an_input_is_refused(reports, tmp_path, out):
    a, b = copy(reports, tmp_path, "cls", "mean")
    target = {"first": a, "inside first": a / "merged", "holds both": tmp_path, "second": b}[out]
    before = snapshot(tmp_path)
    assert_one_line_error(run_cli("classify-merge", target, a, b), "report")
    assert snapshot(tmp_path) == before


def test_damaged_or_missing_reports_are_one_line(reports, tmp_path):
    a, b = copy(reports, tmp_path, "cls", "mean")
    assert_one_line_error(run_cli("classify-merge", tmp_path / "all", a), "at least two")
    assert_one_line_error(run_cli("classify-merge", tmp_path / "all", a, a), "given twice")
    assert_one_line_error(run_cli("classify-merge", tmp_path / "all", a, tmp_path / "nope"), "does not exist")
    assert run_cli("classify-merge", tmp_path / "all").exit_code == 2                   # no reports: usage
    (b / "predictions.parquet").unlink()
    assert_one_line_error(run_cli("classify-merge", tmp_path / "all", a, b), "predictions.parquet is missing")
    shutil.copy2(a / "predictions.parquet", b / "predictions.parquet")
    (b / "report.json").write_text("{not json")
    assert_one_line_error(run_cli("classify-merge", tmp_path / "all", a, b), "cannot be read as JSON")
    (b / "report.json").write_text(json.dumps({"results": []}))
    assert_one_line_error(run_cli("classify-merge", tmp_path / "all", a, b), "is not a classify report")
    assert not (tmp_path / "all").exists()


def test_an_existing_out_needs_overwrite(reports, tmp_path):
    a, b = copy(reports, tmp_path, "cls", "mean")
    assert run_cli("classify-merge", tmp_path / "all", a, b).exit_code == 0
    assert_one_line_error(run_cli("classify-merge", tmp_path / "all", a, b), "--overwrite")
    assert run_cli("classify-merge", tmp_path / "all", a, b, "--overwrite").exit_code == 0
