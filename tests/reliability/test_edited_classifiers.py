"""`predict` with a saved classifier whose classifier.json or head weights were edited: through the
CLI exactly one `Error:` line and exit 1, through the library an EmbedpipeError, nothing written; the
untouched classifier (the control) predicts."""

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.classify import predict_file
from embedpipe.errors import EmbedpipeError
from tests.helpers import assert_one_line_error, run_cli, snapshot


@pytest.fixture(scope="module")
def saved_classifier(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("clf")
    labels = ["animal", "sky"] * 10
    texts = [("cat dog bird " if label == "animal" else "sun moon star ") + str(i) for i, label in enumerate(labels)]
    pq.write_table(pa.table({"id": list(range(20)), "text": texts, "label": labels}), root / "train.parquet")
    result = run_cli("classify", root / "train.parquet", "--model", tiny_model_dir, "--pooling", "mean",
                     "--head", "linear", "--out", root / "report", "--save-model", root / "clf")
    assert result.exit_code == 0, result.output
    return root / "clf", root / "train.parquet"


def edit_json(change):
    def edit(clf: Path):
        meta = json.loads((clf / "classifier.json").read_text())
        (clf / "classifier.json").write_text(json.dumps(change(meta)))
    edit.__name__ = change.__name__
    return edit


def meta_is_a_list(meta):
    return [meta]


def classes_is_a_string(meta):
    return {**meta, "classes": "animal,sky"}


def one_class_too_many(meta):
    return {**meta, "classes": meta["classes"] + ["place"]}


def a_class_twice(meta):
    return {**meta, "classes": [meta["classes"][0]] * len(meta["classes"])}


def classes_are_objects(meta):
    return {**meta, "classes": [{"name": c} for c in meta["classes"]]}


def no_encoder(meta):
    return {k: v for k, v in meta.items() if k != "encoder"}


def encoder_is_a_string(meta):
    return {**meta, "encoder": "mean"}


def unknown_pooling(meta):
    return {**meta, "encoder": {**meta["encoder"], "pooling": "median"}}


def max_length_is_text(meta):
    return {**meta, "encoder": {**meta["encoder"], "max_length": "long"}}


def content_hash_is_a_number(meta):
    return {**meta, "model": {**meta["model"], "content_hash": 12345}}


def unknown_head(meta):
    return {**meta, "kind": "forest"}


def bigger_model_dim(meta):
    """The head takes 32-dim vectors; a max_length change keeps the model, so make the head disagree instead."""
    return {**meta, "kind": "mlp"}


def json_cut_short(clf: Path):
    text = (clf / "classifier.json").read_text()
    (clf / "classifier.json").write_text(text[: len(text) // 2])


def weights_of_another_shape(clf: Path):
    from safetensors.numpy import load_file, save_file

    weights = load_file(clf / "head.safetensors")
    save_file({k: v[..., :5].copy() if k == "weight" else v for k, v in weights.items()}, clf / "head.safetensors")


def weights_missing_a_tensor(clf: Path):
    from safetensors.numpy import load_file, save_file

    weights = load_file(clf / "head.safetensors")
    save_file({k: v for k, v in weights.items() if k != "bias"}, clf / "head.safetensors")


EDITS = [edit_json(f) for f in (meta_is_a_list, classes_is_a_string, one_class_too_many, a_class_twice,
                                classes_are_objects, no_encoder, encoder_is_a_string, unknown_pooling,
                                max_length_is_text, content_hash_is_a_number, unknown_head, bigger_model_dim)]
EDITS += [json_cut_short, weights_of_another_shape, weights_missing_a_tensor]


@pytest.mark.parametrize("edit", EDITS, ids=[e.__name__ for e in EDITS])
def test_predict_with_an_edited_classifier_is_one_line(saved_classifier, tmp_path, edit):
    clf = Path(shutil.copytree(saved_classifier[0], tmp_path / "clf"))
    edit(clf)
    data = saved_classifier[1]
    before = snapshot(tmp_path)
    assert_one_line_error(run_cli("predict", clf, data, "--out", tmp_path / "preds.parquet"))
    with pytest.raises(EmbedpipeError):
        predict_file(clf, str(data), tmp_path / "preds.parquet")
    assert snapshot(tmp_path) == before


def test_predict_with_the_untouched_classifier_works(saved_classifier, tmp_path):
    """The control: the copies above differ from a working classifier only by their edit."""
    original, data = saved_classifier
    clf = Path(shutil.copytree(original, tmp_path / "clf"))
    for model, out in ((clf, tmp_path / "copy.parquet"), (original, tmp_path / "original.parquet")):
        result = run_cli("predict", model, data, "--out", out)
        assert result.exit_code == 0, result.output
    copied = pq.read_table(tmp_path / "copy.parquet").to_pydict()
    assert copied == pq.read_table(tmp_path / "original.parquet").to_pydict()   # the copy is the classifier
    assert copied["id"] == list(range(20)) and set(copied["label"]) <= {"animal", "sky"}
