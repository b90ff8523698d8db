"""The corpus contract past the shared column rules (test_columns.py): categorical columns decoded
wherever a corpus is read (batches, whole-corpus checks, rows to vectors, encode), ids checked
file by file, and the text and id column names carried through the manifest to `search --corpus`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.encode.encoder import BatchPlan, EncoderSpec, prepare
from embedpipe.encode.rows import RowsToVectors, WorkerConfig
from embedpipe.errors import BadInput
from embedpipe.formats.corpus import open_corpus
from embedpipe.formats.vectors import open_vectors
from tests.helpers import TEXTS, assert_one_line_error, encode_with_each_runner, run_cli

IDS = [f"doc-{i}" for i in range(len(TEXTS))]


def categorical_corpus(path, texts=TEXTS, ids=IDS):
    """A corpus as pandas writes one whose columns are categories: both dictionary-encoded in parquet."""
    pd.DataFrame({"id": pd.Categorical(ids), "text": pd.Categorical(texts)}).to_parquet(path)
    assert all(pa.types.is_dictionary(t) for t in pq.read_schema(path).types)
    return path


def test_categorical_columns_stream_as_plain_strings(tmp_path):
    corpus = open_corpus(str(categorical_corpus(tmp_path / "c.parquet")))
    assert corpus.id_type == pa.string()
    batches = list(corpus.iter_batches(4))
    assert all(batch.schema.types == [pa.string(), pa.string()] for batch in batches)
    assert [t for b in batches for t in b.column(1).to_pylist()] == TEXTS
    assert len(corpus.check_unique_ids()) == len(TEXTS)


def test_blank_categorical_texts_are_found(tmp_path):
    texts = TEXTS[:3] + ["  ", None]
    corpus = open_corpus(str(categorical_corpus(tmp_path / "c.parquet", texts, IDS[:5])))
    assert corpus.find_bad_rows() == (2, ["doc-3", "doc-4"])


def test_categorical_ids_in_one_file_and_strings_in_the_next_agree(tmp_path):
    (tmp_path / "c").mkdir()
    categorical_corpus(tmp_path / "c" / "a.parquet", TEXTS[:5], IDS[:5])
    pq.write_table(pa.table({"id": IDS[5:], "text": TEXTS[5:]}), tmp_path / "c" / "b.parquet")
    corpus = open_corpus(str(tmp_path / "c"))
    assert corpus.id_type == pa.string()
    assert [i for b in corpus.iter_batches(3) for i in b.column(0).to_pylist()] == IDS


def test_a_null_id_is_named_by_file_and_row(tmp_path):
    (tmp_path / "c").mkdir()
    pq.write_table(pa.table({"id": IDS[:5], "text": TEXTS[:5]}), tmp_path / "c" / "a.parquet")
    pq.write_table(pa.table({"id": ["x", "y", None], "text": TEXTS[:3]}), tmp_path / "c" / "b.parquet")
    corpus = open_corpus(str(tmp_path / "c"))
    with pytest.raises(BadInput, match=r"b\.parquet: id column 'id' is null at row 2 \(1 null\(s\) in all\)"):
        corpus.check_unique_ids(batch_rows=2)


def test_id_types_differing_between_files_are_refused(tmp_path):
    (tmp_path / "c").mkdir()
    pq.write_table(pa.table({"id": [1, 2], "text": TEXTS[:2]}), tmp_path / "c" / "a.parquet")
    pq.write_table(pa.table({"id": ["x", "y"], "text": TEXTS[:2]}), tmp_path / "c" / "b.parquet")
    with pytest.raises(BadInput, match=r"b\.parquet: column 'id' is string, other files have int64"):
        open_corpus(str(tmp_path / "c"))


@pytest.fixture(scope="module")
def tiny_export(tiny_model_dir):
    return prepare(EncoderSpec(model=str(tiny_model_dir)))


def test_rows_to_vectors_decodes_categorical_batches(tiny_export):
    """Batches of a categorical column may reach RowsToVectors still dictionary-encoded."""
    exported, max_length = tiny_export
    config = WorkerConfig(str(exported.path), "mean", True, max_length, BatchPlan(threads=1), "body", "doc")
    to_vectors = RowsToVectors(config)
    plain = to_vectors(pa.table({"doc": IDS, "body": TEXTS}))
    encoded = to_vectors(pa.table({"doc": pa.array(IDS).dictionary_encode(),
                                   "body": pa.array(TEXTS).dictionary_encode()}))
    assert encoded.column("id").type == pa.string() and encoded.column("id").to_pylist() == IDS
    np.testing.assert_array_equal(np.stack(encoded.column("vector").to_numpy(zero_copy_only=False)),
                                  np.stack(plain.column("vector").to_numpy(zero_copy_only=False)))


def encode(corpus, model, out, *extra):
    result = run_cli("encode", corpus, "--model", model, "--runner", "local", "--threads", "1", "--out", out, *extra)
    assert result.exit_code == 0, result.output
    return open_vectors(out)


def test_a_categorical_corpus_encodes_like_a_plain_one(tiny_model_dir, tmp_path):
    pq.write_table(pa.table({"id": IDS, "text": TEXTS}), tmp_path / "plain.parquet")
    plain = encode(tmp_path / "plain.parquet", tiny_model_dir, tmp_path / "plain.vectors")
    categorical = encode(categorical_corpus(tmp_path / "cat.parquet"), tiny_model_dir, tmp_path / "cat.vectors")
    (plain_ids, plain_vectors), (ids, vectors) = plain.read_all(), categorical.read_all()
    assert ids.to_pylist() == plain_ids.to_pylist() == IDS
    np.testing.assert_array_equal(vectors, plain_vectors)


def test_search_corpus_reads_the_columns_the_index_was_encoded_from(tiny_model_dir, tmp_path):
    """`search --corpus` has no column options: it takes text_column and id_column from the manifest."""
    corpus = tmp_path / "c.parquet"
    pq.write_table(pa.table({"key": IDS, "body": TEXTS, "text": ["decoy"] * len(TEXTS)}), corpus)
    encode(corpus, tiny_model_dir, tmp_path / "v", "--text-column", "body", "--id-column", "key")
    assert run_cli("index", tmp_path / "v", "--out", tmp_path / "i").exit_code == 0
    result = run_cli("search", tmp_path / "i", TEXTS[3], "-k", "3", "--json", "--corpus", corpus)
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout.strip().splitlines()[-1])["hits"]
    assert len(hits) == 3 and hits[0]["id"] == IDS[3]
    assert all(hit["text"] == TEXTS[IDS.index(hit["id"])] for hit in hits)
    # A corpus without those columns is one line naming the missing one.
    pq.write_table(pa.table({"id": IDS, "text": TEXTS}), tmp_path / "other.parquet")
    result = run_cli("search", tmp_path / "i", TEXTS[3], "--corpus", tmp_path / "other.parquet")
    assert_one_line_error(result, "has no text column 'body' (columns: id, text)")


@pytest.mark.slow
def test_ray_encodes_a_categorical_corpus_like_the_local_runner(tiny_model_dir, tmp_path, ray_cluster):
    """Each Ray actor reads its own pieces: dictionaries differ per file and row group, and the ids and
    vectors still come out as the local runner's."""

    (tmp_path / "c").mkdir()
    for f in range(2):
        ids = [f"d{f}-{i}" for i in range(30)]
        texts = [f"{TEXTS[(i + f) % len(TEXTS)]} {i}" for i in range(30)]
        pd.DataFrame({"id": pd.Categorical(ids), "text": pd.Categorical(texts)}).to_parquet(
            tmp_path / "c" / f"{f}.parquet", row_group_size=7)
    runs = encode_with_each_runner(tmp_path / "c", tiny_model_dir, tmp_path)
    (local_ids, local), (ray_ids, ray) = runs["local"], runs["ray"]
    assert ray_ids.type == pa.string() and ray_ids.to_pylist() == local_ids.to_pylist()
    np.testing.assert_allclose(ray, local, atol=1e-6)
