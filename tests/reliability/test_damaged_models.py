"""Damaged model files (weights cut short, a garbled safetensors header, config.json not JSON) and a
damaged ONNX export in the cache: through the CLI exactly one `Error:` line and exit 1, through the
library an EmbedpipeError; nothing is published and what was there before stays byte-identical (the
export cache too)."""

import shutil
from pathlib import Path

import pytest

from embedpipe.encode import encode_corpus
from embedpipe.encode.encoder import EncoderSpec, TextEncoder, prepare
from embedpipe.errors import EmbedpipeError
from tests.helpers import TEXTS, assert_one_line_error, names_under, run_cli, snapshot, write_corpus
from tests.reliability.support import job


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
