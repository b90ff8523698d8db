"""Labeled parquet (classify's train and test files) and unlabeled parquet (predict's input), past the
shared column rules (test_columns.py): label types, nulls and blanks named by row, unreadable files."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.errors import BadInput
from embedpipe.formats.labeled import read_labeled

TEXTS = ["a small dog", "a red car", "a big cat"]
LABELS = ["animal", "thing", "animal"]


def write(path, columns: dict):
    pq.write_table(pa.table(columns), path)
    return path


@pytest.mark.parametrize("labels", [
    pa.array(LABELS), pa.array(LABELS, pa.large_string()), pa.array(LABELS, pa.string_view()),
    pa.array(LABELS).dictionary_encode(), pa.array([0, 1, 0], pa.int8()), pa.array([True, False, True]),
], ids=["string", "large_string", "string_view", "dictionary", "int8", "bool"])
def test_label_types(labels, tmp_path):
    data = read_labeled(str(write(tmp_path / "t.parquet", {"text": TEXTS, "label": labels})), "text", "label")
    assert data.texts == TEXTS and data.labels == labels.to_pylist()
    assert data.ids is None and len(data.fingerprint) == 64


def test_pandas_categorical_text_and_labels(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"text": pd.Categorical(TEXTS), "label": pd.Categorical(LABELS)}).to_parquet(path)
    data = read_labeled(str(path), "text", "label")
    assert data.texts == TEXTS and data.labels == LABELS


def test_float_labels_are_refused(tmp_path):
    path = write(tmp_path / "t.parquet", {"text": TEXTS, "label": [0.5, 1.0, 0.5]})
    with pytest.raises(BadInput, match="label column 'label' holds double; labels must be strings, integers or"):
        read_labeled(str(path), "text", "label")


@pytest.mark.parametrize("columns, message", [
    ({"text": TEXTS, "label": ["a", None, None]}, r"2 row\(s\) have a null label in 'label' \(first at row 1\)"),
    ({"text": ["a", " ", None], "label": LABELS}, r"2 row\(s\) have a null or blank text \(first at row 1\)"),
    ({"text": pa.array([b"ok", b"ok", b"\xff"]).view(pa.string()), "label": LABELS},
     r"1 row\(s\) hold text that is not valid UTF-8 \(first at row 2\)"),
], ids=["null label", "blank text", "invalid utf8"])
def test_bad_rows_are_named(columns, message, tmp_path):
    path = write(tmp_path / "t.parquet", columns)
    with pytest.raises(BadInput, match=message):
        read_labeled(str(path), "text", "label")


def test_predict_reads_texts_and_ids_without_labels(tmp_path):
    path = tmp_path / "p.parquet"
    pd.DataFrame({"id": pd.Categorical(["x", "y", "z"]), "body": TEXTS, "label": [None] * 3}).to_parquet(path)
    data = read_labeled(str(path), "body", None)
    assert data.texts == TEXTS and data.labels is None and data.ids == ["x", "y", "z"]


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(BadInput, match=r"nope\.parquet does not exist$"):
        read_labeled(str(tmp_path / "nope.parquet"), "text", "label")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(BadInput, match=r"junk\.parquet is not a readable parquet file \("):
        read_labeled(str(tmp_path / "junk.parquet"), "text", "label")
