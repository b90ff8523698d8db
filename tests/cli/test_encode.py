"""`embedpipe encode` and `export` through click: results, and one clear line for every bad input."""

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.encode.encoder import EncoderSpec, TextEncoder
from embedpipe.encode.pooling import POOLINGS
from tests.helpers import TEXTS, assert_one_line_error, write_corpus
from tests.helpers import run_cli as run


@pytest.mark.slow
def test_encode_with_the_ray_runner(tiny_model_dir, corpus, tmp_path, ray_cluster):
    out = tmp_path / "v"
    result = run("encode", corpus, "--model", tiny_model_dir, "--out", out, "--runner", "ray", "--pooling", "cls",
                 "--workers", "2", "--batch-size", "4")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["rows"] == 10 and summary["dim"] == 32
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["runner"] == "ray" and manifest["pooling"] == "cls"


def test_export_writes_an_onnx_model(tiny_model_dir, tmp_path):
    result = run("export", "--model", tiny_model_dir, "--out", tmp_path / "exp")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == str(tmp_path / "exp" / "model.onnx")
    # The directory written is a whole export: every pooling, BERT's pooler included, encodes from it
    # exactly as from the export `encode` makes for itself.
    for pooling in ("mean", "pooler"):
        cached = TextEncoder.load(EncoderSpec(model=str(tiny_model_dir), pooling=pooling))
        written = TextEncoder(tmp_path / "exp", pooling, cached.normalize, cached.max_length, prompt=cached.prompt)
        np.testing.assert_array_equal(written.encode(TEXTS), cached.encode(TEXTS))


def test_an_int8_export_says_which_recipe_it_kept(tiny_model_dir, tmp_path):
    result = run("export", "--model", tiny_model_dir, "--out", tmp_path / "int8", "--quantize", "int8")
    assert result.exit_code == 0, result.output
    recipe = json.loads((tmp_path / "int8" / "export.json").read_text())["quantize_recipe"]
    said = [line for line in result.output.splitlines() if line.startswith("int8 for ")]
    assert len(said) == 1 and recipe["describe"] in said[0] and f"{recipe['cosine_mean']:.4f}" in said[0]
    assert result.output.splitlines()[-1].endswith("model_quantized.onnx")


def test_help_lists_every_pooling():
    result = run("encode", "--help")
    for name in POOLINGS:
        assert name in result.output


@pytest.fixture
def base_args(tiny_model_dir, tmp_path):
    return ["--model", tiny_model_dir, "--runner", "local", "--out", tmp_path / "out"]


def test_missing_corpus(base_args, tmp_path):
    assert_one_line_error(run("encode", tmp_path / "nope.parquet", *base_args), "nope.parquet does not exist")
    assert not (tmp_path / "out").exists()


def test_file_that_is_not_parquet(base_args, tmp_path):
    (tmp_path / "bad.parquet").write_text("id,text\n1,hello\n")
    assert_one_line_error(run("encode", tmp_path / "bad.parquet", *base_args), "not a readable parquet file")


def test_truncated_parquet(base_args, corpus, tmp_path):
    data = corpus.read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    assert_one_line_error(run("encode", tmp_path / "cut.parquet", *base_args), "not a readable parquet file")


def test_directory_without_corpus_files(base_args, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run("encode", tmp_path / "empty", *base_args),
                          "holds no corpus files (.parquet, .jsonl, .csv, .arrow)")


def test_missing_text_column(base_args, corpus):
    assert_one_line_error(run("encode", corpus, *base_args, "--text-column", "body"),
                          "no text column 'body'", "columns: id, text", "--text-column")


def test_missing_id_column(base_args, tmp_path):
    pq.write_table(pa.table({"text": ["a", "b"]}), tmp_path / "c.parquet")
    assert_one_line_error(run("encode", tmp_path / "c.parquet", *base_args), "no id column 'id'", "--id-column")


def test_text_column_that_is_not_strings(base_args, tmp_path):
    pq.write_table(pa.table({"id": [1, 2], "text": [3, 4]}), tmp_path / "c.parquet")
    assert_one_line_error(run("encode", tmp_path / "c.parquet", *base_args), "holds int64, not strings")


def test_unknown_pooling_lists_choices(base_args, corpus):
    result = run("encode", corpus, *base_args, "--pooling", "avg")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "'avg' is not one of 'model', 'cls', 'mean', 'max'" in result.output


def test_model_path_that_does_not_exist(corpus, tmp_path):
    result = run("encode", corpus, "--runner", "local", "--model", tmp_path / "no-model", "--out", tmp_path / "out")
    assert_one_line_error(result, "model path", "does not exist")


def test_model_directory_without_tokenizer(corpus, tiny_model_dir, tmp_path):
    model = tmp_path / "no-tokenizer"
    model.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / name, model / name)
    result = run("encode", corpus, "--runner", "local", "--model", model, "--out", tmp_path / "out")
    assert_one_line_error(result, "has no tokenizer")


def test_null_text_is_refused_and_nothing_is_published(base_args, tmp_path):
    corpus = write_corpus(tmp_path / "c.parquet", ["fine", None], ids=["a", "b"])
    assert_one_line_error(run("encode", corpus, *base_args), "null or blank text", "'b'", "--empty-text skip")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.parquet"]


def test_pooler_on_a_model_without_one(corpus, tmp_path):
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizerFast

    model = tmp_path / "distil"
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat"]))
    DistilBertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt")).save_pretrained(model)
    DistilBertModel(DistilBertConfig(vocab_size=7, dim=16, n_layers=1, n_heads=2, hidden_dim=20,
                                     max_position_embeddings=32)).save_pretrained(model)
    result = run("encode", corpus, "--runner", "local", "--model", model, "--pooling", "pooler",
                 "--out", tmp_path / "out")
    assert_one_line_error(result, "needs a model with a pooler layer")


def corrupt_parquet(path):
    """A parquet file whose footer reads fine but whose data pages are garbage."""
    pq.write_table(pa.table({"id": list(range(2000)), "text": [f"text number {i} " * 5 for i in range(2000)]}),
                   path, compression="zstd")
    data = bytearray(path.read_bytes())
    for i in range(4, len(data) // 2):
        data[i] ^= 0x5A
    path.write_bytes(data)
    return path


def test_corrupt_data_pages(base_args, tmp_path):
    corpus = corrupt_parquet(tmp_path / "c.parquet")
    assert_one_line_error(run("encode", corpus, *base_args), "corrupt parquet data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.parquet"]


def corrupt_text_pages(path):
    """A parquet file whose id column reads fine but whose text column's data pages are garbage."""
    pq.write_table(pa.table({"id": list(range(2000)), "text": [f"text number {i} " * 5 for i in range(2000)]}),
                   path, compression="zstd")
    column = pq.read_metadata(path).row_group(0).column(1)
    start = (column.dictionary_page_offset or column.data_page_offset) + 32
    data = bytearray(path.read_bytes())
    for i in range(start, start + column.total_compressed_size // 2):
        data[i] ^= 0x5A
    path.write_bytes(data)
    return path


@pytest.mark.slow
def test_corrupt_data_pages_on_ray(tiny_model_dir, tmp_path, ray_cluster):
    corpus = corrupt_text_pages(tmp_path / "c.parquet")
    result = run("encode", corpus, "--model", tiny_model_dir, "--out", tmp_path / "out", "--runner", "ray",
                 "--empty-text", "skip")
    assert_one_line_error(result, "encoding failed on Ray")
    assert "kept dying" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.parquet"]


def test_hub_model_while_offline(corpus, tmp_path):
    """Tests run with HF_HUB_OFFLINE=1: a hub id not in the cache is one line saying so and how to allow it."""
    result = run("encode", corpus, "--runner", "local", "--model", "no-such-org/no-such-model", "--out", tmp_path / "o")
    assert_one_line_error(result, "model 'no-such-org/no-such-model' is not in the Hugging Face cache",
                          "HF_HUB_OFFLINE=1 forbids downloading it", "unset HF_HUB_OFFLINE")
    assert not (tmp_path / "o").exists()


def test_a_hub_model_in_the_cache_is_used_while_offline(tiny_st_model, corpus, tmp_path, monkeypatch):
    """A hub id resolves through the Hugging Face cache (here one laid out by hand, as a download leaves
    it) with HF_HUB_OFFLINE=1: nothing is fetched, and the model's own pooling and modules apply."""
    import shutil

    import huggingface_hub.constants

    from embedpipe.formats.vectors import open_vectors

    cache = tmp_path / "hub"
    repo = cache / "models--tiny-org--tiny-distilbert"
    commit = "0" * 40
    shutil.copytree(tiny_st_model("distilbert"), repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    result = run("encode", corpus, "--runner", "local", "--model", "tiny-org/tiny-distilbert", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    manifest = open_vectors(tmp_path / "o").manifest
    assert manifest["encoder"]["model"] == "tiny-org/tiny-distilbert" and manifest["model_pooling"] == "mean"
