"""Round 3, class 1: non-finite numbers never pass silently. A model whose weights (or a Dense
module's weights or bias) hold NaN or inf is refused when it makes vectors; vector shards holding
NaN or inf are refused where they are read (index, append, tuning queries, evaluate), and nothing
already published changes; float16 overflow is refused; a NaN cosine fails the int8 quality floor."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from safetensors.numpy import load_file, save_file

from embedpipe.errors import BadInput
from embedpipe.formats.vectors import check_finite, vector_array
from embedpipe.model.quantize import QUALITY_FLOOR, above_floor, quality_warning
from tests.helpers import TEXTS, assert_one_line_error, run_cli, snapshot, write_corpus
from tests.index.clustered import clustered_unit_vectors, write_vectors
from tests.reliability.support import add_shard


def poison_safetensors(path: Path, name_part: str, value: float, row: int | None = None) -> None:
    """Set one tensor (the first whose name contains ``name_part``) to ``value``, or one of its rows."""
    tensors = load_file(str(path))
    name = next(n for n in tensors if name_part in n)
    tensor = tensors[name].copy()
    if row is None:
        tensor[...] = value
    else:
        tensor[row] = value
    tensors[name] = tensor
    save_file(tensors, str(path), metadata={"format": "pt"})


def encode(corpus, model, out, *extra):
    return run_cli("encode", corpus, "--model", model, "--runner", "local", "--out", out, *extra)


@pytest.mark.parametrize("tensor, value, row", [
    ("word_embeddings", np.nan, 5),        # one token's embedding: only texts holding it go NaN
    ("LayerNorm.weight", np.inf, None),    # every vector
    ("LayerNorm.bias", -np.inf, None),
])
def test_a_model_with_non_finite_weights_is_refused_when_it_encodes(tiny_model_dir, tmp_path, tensor, value, row):
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    poison_safetensors(model / "model.safetensors", tensor, value, row)
    vocab = (model / "vocab.txt").read_text().split("\n")
    texts = [*TEXTS, f"a text with {vocab[5]} in it"]
    corpus = write_corpus(tmp_path / "c.parquet", texts)
    before = snapshot(tmp_path)
    assert_one_line_error(encode(corpus, model, tmp_path / "v"), "NaN or inf", "weights")
    assert snapshot(tmp_path) == before                                   # nothing published or staged


@pytest.mark.parametrize("name, value", [("linear.weight", np.inf), ("linear.bias", np.nan)])
def test_a_dense_module_with_non_finite_weights_is_refused(tiny_st_model, tmp_path, name, value):
    source = tiny_st_model("bert")
    model = Path(shutil.copytree(source, tmp_path / "model"))
    dense = next(model.glob("*_Dense"), None)
    if dense is None:
        pytest.skip("the tiny bert variant has no Dense module")
    poison_safetensors(dense / "model.safetensors", name, value)
    corpus = write_corpus(tmp_path / "c.parquet")
    assert_one_line_error(encode(corpus, model, tmp_path / "v"), "NaN or inf", dense.name, name)
    assert not (tmp_path / "v").exists()


BAD_VALUES = [np.nan, np.inf, -np.inf]


@pytest.mark.parametrize("bad", BAD_VALUES)
def test_index_refuses_vectors_holding_nan_or_inf(tmp_path, bad):
    x = clustered_unit_vectors(300, 8)
    vectors = write_vectors(tmp_path / "v", x[:200])
    poisoned = x[200:].copy()
    poisoned[17, 3] = bad
    add_shard(vectors, [f"new{i}" for i in range(100)], poisoned)
    assert_one_line_error(run_cli("index", vectors, "--out", tmp_path / "i", "--factory", "Flat"),
                          "NaN or inf", "'new17'")
    assert not (tmp_path / "i").exists()


@pytest.mark.parametrize("bad", BAD_VALUES)
def test_append_never_replaces_a_good_index_with_a_poisoned_one(tmp_path, bad):
    x = clustered_unit_vectors(300, 8)
    vectors = write_vectors(tmp_path / "v", x[:200])
    result = run_cli("index", vectors, "--out", tmp_path / "i", "--factory", "Flat")
    assert result.exit_code == 0, result.output
    before = snapshot(tmp_path / "i")
    poisoned = x[200:].copy()
    poisoned[-1] = bad
    add_shard(vectors, [f"new{i}" for i in range(100)], poisoned)
    assert_one_line_error(run_cli("index", vectors, "--out", tmp_path / "i", "--append"), "NaN or inf", "'new99'")
    assert snapshot(tmp_path / "i") == before


def test_tuning_query_vectors_holding_nan_are_refused(tmp_path):
    x = clustered_unit_vectors(300, 8)
    vectors = write_vectors(tmp_path / "v", x)
    queries = x[:20].copy()
    queries[4, 0] = np.nan
    tuning = write_vectors(tmp_path / "q", x[:1])
    add_shard(tuning, [f"q{i}" for i in range(20)], queries)
    assert_one_line_error(run_cli("index", vectors, "--out", tmp_path / "i", "--factory", "HNSW8",
                                  "--tuning-queries", tuning), "NaN or inf", "'q4'")
    assert not (tmp_path / "i").exists()


def test_writers_refuse_non_finite_vectors_and_float16_overflow(tmp_path):
    from embedpipe.formats.vectors import VectorWriter

    x = np.ones((3, 4), np.float32)
    x[1, 2] = np.nan
    with pytest.raises(BadInput, match=r"1 of 3 vector\(s\) hold NaN or inf \(first id: 'b'\)"):
        with VectorWriter(tmp_path / "v", dim=4) as writer:
            writer.write(["a", "b", "c"], x)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    big = np.full((2, 4), 1e6, np.float32)       # finite as float32, inf as float16
    with pytest.raises(BadInput, match="as float16.*NaN or inf.*float32"):
        vector_array(big, "float16")
    assert vector_array(np.full((2, 4), 6e4, np.float32), "float16").type.value_type == pa.float16()
    assert check_finite(np.zeros((0, 4)), "empty") is not None


@pytest.mark.parametrize("cosine, kept", [(float("nan"), False), (None, False), (float("inf"), False),
                                          (QUALITY_FLOOR, True), (1.0, True), (0.5, False)])
def test_a_nan_cosine_never_passes_the_int8_floor(cosine, kept):
    assert above_floor(cosine) is kept
    warning = quality_warning({"cosine_mean": cosine if cosine is not None else float("nan"), "describe": "r"})
    assert (warning is None) is kept


def test_int8_export_of_a_model_with_nan_weights_is_refused(tiny_model_dir, tmp_path):
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    poison_safetensors(model / "model.safetensors", "LayerNorm.weight", np.nan)
    line = assert_one_line_error(run_cli("export", "--model", model, "--quantize", "int8", "--out", tmp_path / "e"),
                                 "NaN or inf")
    assert "int8" in line
    assert not (tmp_path / "e").exists()
