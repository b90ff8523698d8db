"""Hostile inputs: each gives one clear line and a non-zero exit, or is handled and counted, and
nothing already written is lost: duplicate ids, null/empty texts, 100k+ character texts, odd
Unicode, invalid UTF-8, one huge row group, shards that no longer match their checksums, a
truncated index, dimension mismatches."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embedpipe.encode import encode_corpus
from embedpipe.formats.vectors import VectorWriter
from tests.helpers import assert_one_line_error as one_line_error
from tests.helpers import run_cli as cli
from tests.reliability.support import by_id, job, manifest, write_rows

REPO = Path(__file__).resolve().parents[2]


def encode_args(corpus, model, out, *extra):
    return ["encode", corpus, "--model", model, "--runner", "local", "--out", out, *extra]


def test_duplicate_ids_are_an_error_naming_some(tiny_model_dir, tmp_path):
    (tmp_path / "corpus").mkdir()
    write_rows(tmp_path / "corpus" / "a.parquet", 0, 50)
    write_rows(tmp_path / "corpus" / "b.parquet", 45, 60)          # doc-45 .. doc-49 twice, across files
    result = cli(*encode_args(tmp_path / "corpus", tiny_model_dir, tmp_path / "v"))
    one_line_error(result, "5 id(s) occur more than once", "'doc-45'", "must be unique")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]


def test_null_empty_and_odd_unicode_texts(tiny_model_dir, tmp_path):
    odd = ["zero\u200bwidth", "\u202eright to left", "e\u0301\u0301 combining", "NUL \x00 inside", "🙂🙃" * 50,
           "\ufeffBOM", "tab\tand\nnewline", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\u00a0\u3000 odd spaces \u2028"]
    texts = odd + [None, "", "   \u3000\n"]
    ids = list(range(len(texts)))
    pq.write_table(pa.table({"id": ids, "text": texts}), tmp_path / "c.parquet")
    result = cli(*encode_args(tmp_path / "c.parquet", tiny_model_dir, tmp_path / "v"))
    one_line_error(result, "3 row(s) have a null or blank text", "--empty-text skip")
    result = cli(*encode_args(tmp_path / "c.parquet", tiny_model_dir, tmp_path / "v", "--empty-text", "skip"))
    assert result.exit_code == 0, result.output
    vectors = by_id(tmp_path / "v")
    assert sorted(vectors) == list(range(len(odd)))
    assert np.isfinite(np.stack(list(vectors.values()))).all()
    assert manifest(tmp_path / "v")["skipped_rows"] == 3


def test_texts_of_100k_characters_are_truncated_and_counted(tiny_model_dir, tmp_path):
    # The tiny model takes 64 tokens. A 150k-character word is one [UNK] token: counted by tokens, not cut.
    texts = ["cat " * 30_000, "a dog", "x" * 150_000, "the sun " * 5, "red bird " * 12_000]
    pq.write_table(pa.table({"id": ["long", "short", "one-word", "medium", "long2"], "text": texts}),
                   tmp_path / "c.parquet")
    result = encode_corpus(job(tiny_model_dir, tmp_path / "c.parquet", tmp_path / "v"))
    assert result.manifest["truncated_rows"] == 2 and result.manifest["last_run"]["truncated_rows"] == 2
    assert result.manifest["shards"][0]["truncated_rows"] == 2
    assert np.isfinite(np.stack(list(by_id(result.out).values()))).all()


def test_invalid_utf8_bytes_are_an_error_naming_the_rows(tiny_model_dir, tmp_path):
    raw = pa.array([b"fine", b"\xc3\x28 broken", b"ok", b"\xff"], pa.binary())
    pq.write_table(pa.table({"id": ["a", "b", "c", "d"], "text": raw.view(pa.string())}), tmp_path / "c.parquet")
    result = cli(*encode_args(tmp_path / "c.parquet", tiny_model_dir, tmp_path / "v"))
    one_line_error(result, "2 row(s) hold text that is not valid UTF-8 (ids: 'b', 'd')")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.parquet"]


READ_ONE_ROW_GROUP = """
import os, sys
from embedpipe.formats.corpus import open_corpus
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
corpus = open_corpus(sys.argv[1])
before = peak = rss_mb()
rows = 0
for batch in corpus.iter_batches(4096):
    rows += batch.num_rows
    peak = max(peak, rss_mb())
print(rows, peak - before)
"""


def test_one_huge_row_group_is_read_in_bounded_memory(tmp_path):
    """100 MB of text in one row group: read batch by batch, RSS grows by well under its size
    (pyarrow's default pre-buffering reads the whole row group: about 1.4x the text here)."""
    rows, width = 1_000_000, 100
    letters = np.random.default_rng(0).integers(97, 123, size=rows * width, dtype=np.uint8)
    offsets = np.arange(0, rows * width + 1, width, dtype=np.int32)
    texts = pa.StringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(letters))
    pq.write_table(pa.table({"id": np.arange(rows), "text": texts}), tmp_path / "c.parquet", row_group_size=rows)
    assert pq.read_metadata(tmp_path / "c.parquet").num_row_groups == 1
    done = subprocess.run([sys.executable, "-c", READ_ONE_ROW_GROUP, str(tmp_path / "c.parquet")],
                          capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    count, growth_mb = done.stdout.split()
    assert int(count) == rows
    assert float(growth_mb) < 0.6 * texts.nbytes / 2**20, f"reading grew RSS by {growth_mb} MB"


def small_index(tmp_path, dim=8, rows=200):
    rng = np.random.default_rng(0)
    with VectorWriter(tmp_path / "vec", dim=dim, rows_per_shard=100) as writer:
        writer.write([f"d{i}" for i in range(rows)], rng.standard_normal((rows, dim)).astype(np.float32))
        writer.publish({"pooling": "mean"})
    result = cli("index", tmp_path / "vec", "--out", tmp_path / "idx", "--factory", "Flat")
    assert result.exit_code == 0, result.output
    return tmp_path / "vec", tmp_path / "idx"


def test_a_truncated_index_file_is_one_clear_line(tmp_path):
    _, index = small_index(tmp_path)
    data = (index / "index.faiss").read_bytes()
    (index / "index.faiss").write_bytes(data[: len(data) // 3])
    one_line_error(cli("search", index, "a query"), "index.faiss", "truncated")


def test_dimension_mismatches_are_one_clear_line(tmp_path):
    vectors, index = small_index(tmp_path)
    info = json.loads((index / "index.json").read_text())
    (index / "index.json").write_text(json.dumps({**info, "dim": 16}))
    one_line_error(cli("search", index, "a query"), "dimension 8", "says 16")
    m = manifest(vectors)
    (vectors / "manifest.json").write_text(json.dumps({**m, "dim": 4}))
    one_line_error(cli("index", vectors, "--out", tmp_path / "idx2"), "has dimension 8, the manifest says 4")
    assert not (tmp_path / "idx2").exists()


def test_index_refuses_shards_that_no_longer_match_their_checksums(tmp_path):
    vectors, _ = small_index(tmp_path)
    shard = vectors / "part-00001.parquet"
    table = pq.read_table(shard)
    pq.write_table(table.set_column(0, "id", pa.array([f"x{i}" for i in range(table.num_rows)])), shard)
    one_line_error(cli("index", vectors, "--out", tmp_path / "idx2"), "checksum")
