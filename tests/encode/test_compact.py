"""Compact vectors through encode: codes identical to sentence-transformers' quantize_embeddings,
ranges learned once and kept, truncate_dim (Matryoshka), appends, and the refusals."""

import json
import logging
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from sentence_transformers.util.quantization import quantize_embeddings

from embedpipe.encode import EncodeJob, encode_corpus
from embedpipe.encode.codec import truncate
from embedpipe.encode.encoder import EncoderSpec
from embedpipe.errors import BadInput, ConfigError, EmbedpipeError
from embedpipe.formats.codes import as_ranges, dequantize, quantize, ranges_of
from embedpipe.formats.vectors import open_vectors
from tests.helpers import TEXTS, encode_with_each_runner, write_corpus


def job(model_dir, corpus, out, **kwargs):
    return EncodeJob(str(corpus), out=str(out), runner="local", spec=EncoderSpec(model=str(model_dir)), **kwargs)


@pytest.mark.parametrize("precision", ["int8", "uint8", "binary", "ubinary"])
def test_codes_are_sentence_transformers_codes(precision):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 64)).astype(np.float32)
    ranges = ranges_of(vectors[:100])   # the rest reach outside the ranges: both clip
    ours = quantize(vectors, precision, ranges)
    theirs = quantize_embeddings(vectors, precision, ranges=ranges)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


def test_dequantized_codes_stay_within_one_step():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(200, 16)).astype(np.float32)
    ranges = ranges_of(vectors)
    for dtype in ("int8", "uint8"):
        back = dequantize(quantize(vectors, dtype, ranges), dtype, 16, ranges)
        assert np.abs(back - vectors).max() <= ((ranges[1] - ranges[0]) / 255).max() * 0.5 + 1e-6
    bits = dequantize(quantize(vectors, "binary"), "binary", 16)
    np.testing.assert_array_equal(np.sign(bits), np.where(vectors > 0, 1, -1))
    np.testing.assert_allclose(np.linalg.norm(bits, axis=1), 1, atol=1e-6)


def _floats(model_dir, corpus, tmp_path):
    return open_vectors(encode_corpus(job(model_dir, corpus, tmp_path / "floats")).out).read_all()[1]


def test_int8_output_records_its_ranges_and_holds_their_codes(tiny_model_dir, corpus, tmp_path):
    floats = _floats(tiny_model_dir, corpus, tmp_path)
    out = encode_corpus(job(tiny_model_dir, corpus, tmp_path / "i8", dtype="int8")).out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dtype"] == "int8" and manifest["compact"]["calibration"] == {"from": "corpus sample",
                                                                                    "rows": len(TEXTS)}
    ranges = as_ranges([manifest["compact"]["ranges"]["min"], manifest["compact"]["ranges"]["max"]])
    np.testing.assert_allclose(ranges, ranges_of(floats), atol=1e-6)
    vectors = open_vectors(out)
    codes = np.concatenate([c for _, c in vectors.iter_batches(codes=True)])
    assert codes.dtype == np.int8
    # the same floats can differ in the last bit between runs of a batch; a code may move one step then
    assert np.abs(codes.astype(int) - quantize_embeddings(floats, "int8", ranges=ranges).astype(int)).max() <= 1
    step = ((ranges[1] - ranges[0]) / 255).max()
    assert np.abs(vectors.read_all()[1] - floats).max() <= 1.5 * step


def test_binary_truncated_is_sign_bits_of_the_renormalized_prefix(tiny_model_dir, corpus, tmp_path, caplog):
    floats = _floats(tiny_model_dir, corpus, tmp_path)
    with caplog.at_level(logging.WARNING, logger="embedpipe.encode"):
        out = encode_corpus(job(tiny_model_dir, corpus, tmp_path / "b", dtype="ubinary", truncate_dim=16)).out
    assert sum("declares no Matryoshka dimensions" in r.message for r in caplog.records) == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dim"] == 16 and manifest["encoder"]["truncate_dim"] == 16
    shard = pq.read_table(out / manifest["shards"][0]["file"])
    assert shard.schema.field("vector").type.list_size == 2   # 16 bits in 2 bytes
    codes = np.concatenate([c for _, c in open_vectors(out).iter_batches(codes=True)])
    prefix = truncate(floats, 16, True)
    np.testing.assert_allclose(np.linalg.norm(prefix, axis=1), 1, atol=1e-5)
    stable = (np.abs(prefix) > 1e-5).all(axis=1)    # a sign is only well defined away from 0
    np.testing.assert_array_equal(codes[stable], quantize_embeddings(prefix, "ubinary")[stable])


def test_an_append_codes_new_rows_with_the_recorded_ranges(tiny_model_dir, tmp_path):
    corpus = write_corpus(tmp_path / "c.parquet", TEXTS[:6])
    out = encode_corpus(job(tiny_model_dir, corpus, tmp_path / "i8", dtype="uint8")).out
    first = json.loads((out / "manifest.json").read_text())["compact"]
    write_corpus(corpus, TEXTS)
    result = encode_corpus(job(tiny_model_dir, corpus, tmp_path / "i8", dtype="uint8"))
    assert result.manifest["last_run"]["encoded_rows"] == 4 and result.manifest["compact"] == first
    floats = _floats(tiny_model_dir, corpus, tmp_path)
    ranges = as_ranges([first["ranges"]["min"], first["ranges"]["max"]])
    codes = np.concatenate([c for _, c in open_vectors(out).iter_batches(codes=True)])
    assert np.abs(codes[6:].astype(int) - quantize(floats[6:], "uint8", ranges).astype(int)).max() <= 1


def test_float_vectors_are_not_appended_to_an_int8_output(tiny_model_dir, corpus, tmp_path):
    out = encode_corpus(job(tiny_model_dir, corpus, tmp_path / "i8", dtype="int8")).out
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(BadInput, match="dtype int8 -> float32"):
        encode_corpus(job(tiny_model_dir, corpus, out))
    assert (out / "manifest.json").read_bytes() == before


def test_ranges_come_from_an_output_of_the_same_encoder_only(tiny_model_dir, tiny_distilbert_dir, corpus, tmp_path):
    theirs = encode_corpus(job(tiny_distilbert_dir, corpus, tmp_path / "other", dtype="int8")).out
    with pytest.raises(BadInput, match="learned from another encoder"):
        encode_corpus(job(tiny_model_dir, corpus, tmp_path / "mine", dtype="int8", ranges=str(theirs)))
    assert not (tmp_path / "mine").exists()
    ours = encode_corpus(job(tiny_model_dir, corpus, tmp_path / "a", dtype="int8")).out
    again = encode_corpus(job(tiny_model_dir, corpus, tmp_path / "b", dtype="uint8", ranges=str(ours))).manifest
    assert again["compact"]["ranges"] == json.loads((ours / "manifest.json").read_text())["compact"]["ranges"]
    assert again["compact"]["calibration"]["from"].endswith("manifest.json")


@pytest.mark.parametrize("ranges, message", [
    (np.zeros((2, 31), np.float32), "for dimension 31; these vectors have 32"),
    (np.zeros((3, 32), np.float32), r"shape \(3, 32\)"),
    (np.array([[1.0] * 32, [0.0] * 32], np.float32), "minimum above its maximum"),
    (np.full((2, 32), np.nan, np.float32), "NaN"),
    (None, "not a .npy file"),
])
def test_bad_ranges_files_are_refused(tiny_model_dir, corpus, tmp_path, ranges, message):
    if ranges is None:   # not a .npy at all: the corpus itself
        (tmp_path / "r.npy").write_bytes(corpus.read_bytes())
    else:
        np.save(tmp_path / "r.npy", ranges)
    with pytest.raises(BadInput, match=message):
        encode_corpus(job(tiny_model_dir, corpus, tmp_path / "v", dtype="int8", ranges=str(tmp_path / "r.npy")))
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"dtype": "binary", "truncate_dim": 12}, "not a multiple of 8"),
    ({"dtype": "int8", "truncate_dim": 64}, "more than model"),
    ({"dtype": "binary", "ranges": "r.npy"}, "apply to int8 and uint8"),
])
def test_impossible_precisions_are_refused(tiny_model_dir, corpus, tmp_path, kwargs, message):
    np.save(tmp_path / "r.npy", np.zeros((2, 32), np.float32))
    if "ranges" in kwargs:
        kwargs = {**kwargs, "ranges": str(tmp_path / kwargs["ranges"])}
    with pytest.raises(EmbedpipeError, match=message):
        encode_corpus(job(tiny_model_dir, corpus, tmp_path / "v", **kwargs))
    assert not (tmp_path / "v").exists()


def test_rescoring_vectors_go_beside_bits_only_and_stay_what_they_were(tiny_model_dir, corpus, tmp_path):
    with pytest.raises(ConfigError, match="rescore_dtype"):
        job(tiny_model_dir, corpus, tmp_path / "v", dtype="int8", rescore_dtype="float16")
    encode_corpus(job(tiny_model_dir, corpus, tmp_path / "v", dtype="binary", rescore_dtype="float16"))
    with pytest.raises(BadInput, match="rescore_dtype float16 -> int8"):
        encode_corpus(job(tiny_model_dir, corpus, tmp_path / "v", dtype="binary", rescore_dtype="int8"))


def test_matryoshka_dimensions_the_model_declares_are_enforced(tiny_model_dir, corpus, tmp_path, caplog):
    model = shutil.copytree(tiny_model_dir, tmp_path / "matryoshka-model")
    (model / "README.md").write_text('loss: MatryoshkaLoss\n```json\n{"loss": "MultipleNegativesRankingLoss", '
                                     '"matryoshka_dims": [32, 16, 8]}\n```\n')
    with pytest.raises(BadInput, match=r"not one of the Matryoshka dimensions .* \(32, 16, 8\)"):
        encode_corpus(job(model, corpus, tmp_path / "v24", truncate_dim=24))
    with caplog.at_level(logging.WARNING, logger="embedpipe.encode"):
        manifest = encode_corpus(job(model, corpus, tmp_path / "v16", truncate_dim=16)).manifest
    assert manifest["dim"] == 16 and not [r for r in caplog.records if "Matryoshka" in r.message]


@pytest.mark.slow
def test_ray_actors_write_the_codes_the_local_runner_writes(tiny_model_dir, corpus, tmp_path, ray_cluster):
    runs = encode_with_each_runner(corpus, tiny_model_dir, tmp_path, dtype="binary", truncate_dim=16)
    # the same codes (read back as +-1/sqrt(dim)); a sign within float noise of 0 may flip between batchings
    assert (runs["local"][1] != runs["ray"][1]).mean() < 0.02
    assert runs["local"][1].shape == (len(TEXTS), 16)
