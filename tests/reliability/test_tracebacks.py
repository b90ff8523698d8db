"""Inputs that used to end in a traceback end in one line: through the CLI exactly one `Error:` line
and exit 1, through the library an EmbedpipeError; nothing is published and what was there before
stays byte-identical (the export cache too)."""

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.classify import predict_file
from embedpipe.encode import EncodeJob, encode_corpus
from embedpipe.encode.encoder import EncoderSpec, TextEncoder, prepare
from embedpipe.errors import EmbedpipeError
from embedpipe.pipeline.schema import load_spec
from tests.helpers import TEXTS, assert_one_line_error, names_under, run_cli, snapshot, write_corpus
from tests.reliability.support import job

# --- --max-length beyond the model's positions (the tiny BERT has 64) --------------------------------


@pytest.mark.parametrize("runner", ["local", "ray"])
@pytest.mark.parametrize("max_length", [65, 512, 100_000])
def test_max_length_beyond_the_models_positions_is_refused_before_any_runner(tiny_model_dir, tmp_path, runner,
                                                                             max_length):
    corpus = write_corpus(tmp_path / "c.parquet")
    before = snapshot(tmp_path)
    line = assert_one_line_error(run_cli("encode", corpus, "--model", tiny_model_dir, "--runner", runner,
                                         "--max-length", max_length, "--out", tmp_path / "v"),
                                 f"--max-length {max_length}", "64 tokens", "--max-length 64 or less")
    assert "Ray" not in line
    with pytest.raises(EmbedpipeError, match=f"max_length {max_length} is more than"):
        encode_corpus(job(tiny_model_dir, corpus, tmp_path / "v", runner=runner,
                          spec=EncoderSpec(model=str(tiny_model_dir), max_length=max_length)))
    with pytest.raises(EmbedpipeError, match="positions for \\(64 tokens\\)"):
        TextEncoder.load(EncoderSpec(model=str(tiny_model_dir), max_length=max_length))
    assert snapshot(tmp_path) == before


def test_max_length_at_the_models_limit_encodes_long_texts(tiny_model_dir, tmp_path):
    corpus = write_corpus(tmp_path / "c.parquet", ["word " * 500, "a cat"])
    result = encode_corpus(job(tiny_model_dir, corpus, tmp_path / "v",
                               spec=EncoderSpec(model=str(tiny_model_dir), max_length=64)))
    assert result.manifest["rows"] == 2 and result.manifest["truncated_rows"] == 1


# --- damaged model weights ------------------------------------------------------------------------------


def truncate_weights(model: Path):
    data = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(data[: len(data) // 2])


def garble_weights_header(model: Path):
    data = bytearray((model / "model.safetensors").read_bytes())
    data[8:40] = b"\x00" * 32                       # the JSON header: no longer JSON
    (model / "model.safetensors").write_bytes(bytes(data))


def huge_header_length(model: Path):
    data = bytearray((model / "model.safetensors").read_bytes())
    data[:8] = (2**62).to_bytes(8, "little")        # a header longer than the file
    (model / "model.safetensors").write_bytes(bytes(data))


def empty_weights(model: Path):
    (model / "model.safetensors").write_bytes(b"")


def config_not_json(model: Path):
    (model / "config.json").write_text('{"model_type": "bert", ')


@pytest.mark.parametrize("damage", [truncate_weights, garble_weights_header, huge_header_length, empty_weights,
                                    config_not_json])
def test_damaged_model_files_are_one_line(tiny_model_dir, tmp_path, export_cache, damage):
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    damage(model)
    corpus = write_corpus(tmp_path / "c.parquet")
    exports = lambda: {n for n in names_under(export_cache) if not n.startswith("hashes")}  # noqa: E731 (memos may grow)
    before, cache_before = snapshot(tmp_path), exports()
    line = assert_one_line_error(run_cli("encode", corpus, "--model", model, "--runner", "local",
                                         "--out", tmp_path / "v"), "model")
    assert str(model) in line or "model" in line
    with pytest.raises(EmbedpipeError):
        encode_corpus(job(model, corpus, tmp_path / "v"))
    assert snapshot(tmp_path) == before and exports() == cache_before


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("EMBEDPIPE_CACHE", str(cache))
    return cache


@pytest.mark.parametrize("damage", ["flipped", "truncated", "empty"])
def test_a_damaged_onnx_export_is_one_line_for_encode_and_search(tiny_model_dir, tmp_path, own_cache, damage):
    """The cache is this test's own: the session's stays intact for the other tests."""
    corpus = write_corpus(tmp_path / "c.parquet")
    assert run_cli("encode", corpus, "--model", tiny_model_dir, "--runner", "local", "--out", tmp_path / "v",
                   "--rows-per-shard", 4).exit_code == 0
    assert run_cli("index", tmp_path / "v", "--out", tmp_path / "idx", "--factory", "Flat").exit_code == 0
    onnx = prepare(EncoderSpec(model=str(tiny_model_dir)))[0].onnx_path
    data = bytearray(onnx.read_bytes())
    if damage == "flipped":
        data[100:400] = b"\x07" * 300
    onnx.write_bytes(bytes(data[: len(data) // 2]) if damage == "truncated" else b"" if damage == "empty"
                     else bytes(data))
    write_corpus(corpus, TEXTS + ["one more text"])              # the corpus grew: encode has work to do
    before = snapshot(tmp_path / "v")
    assert_one_line_error(run_cli("encode", corpus, "--model", tiny_model_dir, "--runner", "local",
                                  "--out", tmp_path / "v"), "cannot load the encoder", "delete the directory")
    assert snapshot(tmp_path / "v") == before and not (tmp_path / ".v.partial").exists()
    assert_one_line_error(run_cli("search", tmp_path / "idx", "a cat"), "cannot load the encoder")
    with pytest.raises(EmbedpipeError, match="cannot load the encoder"):
        TextEncoder.load(EncoderSpec(model=str(tiny_model_dir)))


# --- a saved classifier whose files were edited ------------------------------------------------------------


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
    clf = Path(shutil.copytree(saved_classifier[0], tmp_path / "clf"))
    assert run_cli("predict", clf, saved_classifier[1], "--out", tmp_path / "preds.parquet").exit_code == 0


# --- a pipeline spec that is not a text file ---------------------------------------------------------------

SPEC_TEXT = "encode:\n  corpus: c.parquet\n"
BINARY_SPECS = {
    "random bytes": bytes(range(256)) * 4,
    "a parquet file": None,                                      # written in the test
    "latin-1 text": "encode:\n  corpus: café.parquet\n".encode("latin-1"),
    "a control character": b"encode:\n  corpus: a\x07b.parquet\n",
    "NUL in the middle": SPEC_TEXT.encode() + b"\x00" + SPEC_TEXT.encode(),
    "gzip": b"\x1f\x8b\x08\x00" + bytes(60),
}


@pytest.mark.parametrize("case", list(BINARY_SPECS))
def test_a_spec_that_is_not_text_is_one_line(case, tmp_path):
    spec = tmp_path / "spec.yaml"
    if BINARY_SPECS[case] is None:
        write_corpus(spec)
    else:
        spec.write_bytes(BINARY_SPECS[case])
    before = snapshot(tmp_path)
    for extra in ([], ["--dry-run"]):
        assert_one_line_error(run_cli("run", spec, *extra), "spec.yaml")
    with pytest.raises(EmbedpipeError, match="spec.yaml"):
        load_spec(spec)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_a_spec_with_a_byte_order_mark_is_text(encoding, tmp_path):
    """Accepted, not refused: Windows editors write these, and the text is unambiguous."""
    write_corpus(tmp_path / "c.parquet")
    (tmp_path / "spec.yaml").write_bytes(f"output_dir: out\n{SPEC_TEXT}".encode(encoding))
    spec = load_spec(tmp_path / "spec.yaml")
    assert spec is not None


# --- NaN and null ids in a float column (what pandas writes for an int column with gaps) ---------------------


@pytest.mark.parametrize("write", ["pandas-gap", "float32-nan", "float64-nan-late"])
def test_float_ids_are_refused_naming_the_first_row_without_an_id(tiny_model_dir, tmp_path, write):
    path = tmp_path / "c.parquet"
    if write == "pandas-gap":
        pd.DataFrame({"id": [1, 2, None, 4], "text": ["a", "b", "c", "d"]}).to_parquet(path)
        row, what = 2, "null"
    elif write == "float32-nan":
        pq.write_table(pa.table({"id": pa.array([1.0, float("nan"), 3.0], pa.float32()), "text": ["a", "b", "c"]}),
                       path)
        row, what = 1, "NaN"
    else:
        ids = [float(i) for i in range(50)] + [float("nan")]
        pq.write_table(pa.table({"id": ids, "text": [f"t{i}" for i in range(51)]}), path)
        row, what = 50, "NaN"
    before = snapshot(tmp_path)
    assert_one_line_error(run_cli("encode", path, "--model", tiny_model_dir, "--runner", "local", "--out",
                                  tmp_path / "v"), "id column 'id' holds", f"row {row} is {what}")
    with pytest.raises(EmbedpipeError, match=f"row {row} is {what}"):
        encode_corpus(EncodeJob(str(path), out=str(tmp_path / "v"), spec=EncoderSpec(model=str(tiny_model_dir)),
                                runner="local"))
    assert snapshot(tmp_path) == before
    assert os.listdir(tmp_path) == ["c.parquet"]
