"""Round 3, classes 8, 10 and 11 on index append and tuning:

- 8: ``index --append`` works on an index at a URL (downloaded, extended, uploaded), so no message
  advises ``--overwrite``, which ``--append`` refuses.
- 10: no recall figure from an empty sample: tuning queries with no rows are refused, as are tuning
  vectors made by another encoder than the index's (not only another dimension).
- 11: append holds the lock encode holds (two at once: the second is refused at once), and a reader
  opening the index while appends publish sees one version or the other, never index.json of one
  and ids.parquet of another: appends looped against concurrent searches in another process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.errors import EmbedpipeError
from embedpipe.index import IndexConfig, append_index, build_index, open_index
from embedpipe.testing.services import s3_server
from tests.helpers import assert_one_line_error, run_cli
from tests.index.clustered import clustered_unit_vectors, write_vectors
from tests.reliability.support import add_shard

DIM = 8


def grown_vectors(tmp_path: Path, first: int = 200, more: int = 100) -> tuple[Path, np.ndarray]:
    x = clustered_unit_vectors(first + more, DIM)
    return write_vectors(tmp_path / "v", x[:first]), x


# -- class 8 ---------------------------------------------------------------------------------------

def test_append_to_an_index_at_a_url(tmp_path, monkeypatch):
    with s3_server(tmp_path) as server:
        for name, value in server.env.items():
            if name.startswith("AWS_"):
                monkeypatch.setenv(name, value)
        vectors, x = grown_vectors(tmp_path)
        url = "s3://embedpipe/idx"
        first = run_cli("index", vectors, "--out", url, "--factory", "HNSW8", "--append")  # none yet: built
        assert first.exit_code == 0, first.output
        add_shard(vectors, [f"new{i}" for i in range(100)], x[200:])
        again = run_cli("index", vectors, "--out", url, "--append")
        assert again.exit_code == 0, again.output
        assert "appended   100 vectors" in again.output and "--overwrite" not in again.output
        loaded = open_index(url)
        assert loaded.info["n"] == 300 and len(loaded.ids) == 300
        assert loaded.info["appends"][-1]["recall_at_10"] is not None     # tuning.parquet travelled too
        same = run_cli("index", vectors, "--out", url, "--append")
        assert same.exit_code == 0 and open_index(url).info["n"] == 300


# -- class 10 --------------------------------------------------------------------------------------

def test_tuning_queries_with_no_rows_are_refused(tiny_model_dir, tmp_path):
    from tests.helpers import write_corpus

    corpus = write_corpus(tmp_path / "c.parquet")
    assert run_cli("encode", corpus, "--model", tiny_model_dir, "--runner", "local",
                   "--out", tmp_path / "v").exit_code == 0
    pq.write_table(pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}),
                   tmp_path / "q.parquet")
    for factory in ("HNSW8", "IVF2,Flat"):   # (Flat, and auto over 10 vectors, is exact: nothing to tune)
        line = assert_one_line_error(run_cli("index", tmp_path / "v", "--out", tmp_path / "i", "--factory", factory,
                                             "--tuning-queries", tmp_path / "q.parquet"), "no rows")
        assert "recall" in line
        assert not (tmp_path / "i").exists()


def test_tuning_vectors_with_no_rows_are_refused(tmp_path):
    vectors, x = grown_vectors(tmp_path)
    empty = write_vectors(tmp_path / "q", x[:0])
    assert_one_line_error(run_cli("index", vectors, "--out", tmp_path / "i", "--factory", "HNSW8",
                                  "--tuning-queries", empty), "no vectors")


def test_tuning_vectors_of_another_encoder_are_refused(tmp_path):
    vectors, x = grown_vectors(tmp_path)
    other = write_vectors(tmp_path / "q", x[:20])
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["encoder"] = {"model": "another", "pooling": "cls", "normalize": True}
    (other / "manifest.json").write_text(json.dumps(manifest))
    line = assert_one_line_error(run_cli("index", vectors, "--out", tmp_path / "i", "--factory", "HNSW8",
                                         "--tuning-queries", other), "another encoder")
    assert "pooling" in line
    # a query prompt is no other encoder: queries are meant to be encoded with it
    source = json.loads((vectors / "manifest.json").read_text())
    source["encoder"] = {"model": "m", "pooling": "mean", "prompt": "passage: "}
    (vectors / "manifest.json").write_text(json.dumps(source))
    manifest["encoder"] = {"model": "m", "pooling": "mean", "prompt": "query: "}
    (other / "manifest.json").write_text(json.dumps(manifest))
    result = run_cli("index", vectors, "--out", tmp_path / "i", "--factory", "HNSW8", "--tuning-queries", other)
    assert result.exit_code == 0, result.output


def test_recall_is_never_a_figure_from_no_queries():
    from embedpipe.index.params import recall_at_k, tune_search_params

    with pytest.raises(EmbedpipeError, match="no tuning query"):
        recall_at_k(np.zeros((0, 10), np.int64), np.zeros((0, 10), np.int64))
    with pytest.raises(EmbedpipeError, match="no tuning query"):
        recall_at_k(np.full((3, 10), -1), np.full((3, 10), -1))
    import faiss

    with pytest.raises(EmbedpipeError, match="no tuning queries"):
        tune_search_params(faiss.IndexFlatIP(DIM), np.zeros((0, DIM), np.float32), np.zeros((0, 10), np.int64), 0.9)


# -- class 11 --------------------------------------------------------------------------------------

def test_two_appends_at_once_the_second_is_refused(tmp_path):
    from embedpipe.encode.resume import output_lock

    vectors, x = grown_vectors(tmp_path)
    build_index(vectors, tmp_path / "i", IndexConfig(factory="Flat"))
    add_shard(vectors, [f"new{i}" for i in range(100)], x[200:])
    before = (tmp_path / "i" / "index.json").read_bytes()
    with output_lock(tmp_path / "i"):          # what a running append (or encode) holds
        assert_one_line_error(run_cli("index", vectors, "--out", tmp_path / "i", "--append"),
                              "another embedpipe run is writing")
        assert_one_line_error(run_cli("index", vectors, "--out", tmp_path / "i", "--overwrite"),
                              "another embedpipe run is writing")
    assert (tmp_path / "i" / "index.json").read_bytes() == before
    assert append_index(tmp_path / "i")["n"] == 300


READER = r"""
import os, sys
from pathlib import Path
from embedpipe.errors import EmbedpipeError
from embedpipe.index import open_index
path, stop_file, ready_file = sys.argv[1:4]
opened, errors, sizes = 0, [], set()
while not os.path.exists(stop_file):
    try:
        loaded = open_index(path, mmap=opened % 2 == 0)   # open_index checks index.json, index.faiss, ids agree
        assert loaded.index.ntotal == len(loaded.ids) == loaded.info["n"]
        sizes.add(loaded.info["n"])
        opened += 1
    except EmbedpipeError as e:
        errors.append(str(e))
    Path(ready_file).touch()
print(opened, len(errors), len(sizes))
for e in errors[:3]:
    print(e)
"""


def test_readers_see_one_version_while_appends_publish(tmp_path):
    x = clustered_unit_vectors(2_000, DIM)
    vectors = write_vectors(tmp_path / "v", x[:500])
    build_index(vectors, tmp_path / "i", IndexConfig(factory="Flat"))
    stop, ready = tmp_path / "stop", tmp_path / "ready"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(tmp_path / "i"), str(stop), str(ready)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:   # the reader is opening the index in a loop
            time.sleep(0.05)
        for step in range(15):
            rows = slice(500 + step * 100, 600 + step * 100)
            add_shard(vectors, [f"s{step}-{i}" for i in range(100)], x[rows])
            assert append_index(tmp_path / "i")["n"] == 600 + step * 100
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err
    opened, errors, versions = map(int, out.splitlines()[0].split())
    assert errors == 0, out
    assert opened >= 2 and versions > 1, out     # it read while the appends ran, and saw them
