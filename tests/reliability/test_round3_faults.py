"""Round 3, classes 4 (tracebacks on faults a user can cause) and 6 (architectures' config names):
each fault is one `Error:` line and exit 1, nothing left behind. Object-store faults are in
test_round3_storage.py; the long CSV field before a ragged row in test_round3_files.py."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from embedpipe.model.export import ensure_exported
from embedpipe.model.resolve import resolve_model
from tests.helpers import TEXTS, assert_one_line_error, run_cli, snapshot, write_corpus


def arrow_stream(path: Path, rows: int = 100) -> bytes:
    table = pa.table({"id": [str(i) for i in range(rows)], "text": ["hello world"] * rows})
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=10):
            writer.write_batch(batch)
    data = sink.getvalue().to_pybytes()
    path.write_bytes(data)
    return data


def claim_body(data: bytes, size: int) -> bytes:
    """The stream with its first record batch's message claiming a body of ``size`` bytes."""
    reader = ipc.MessageReader.open_stream(pa.py_buffer(data))
    schema_bytes = len(reader.read_next_message().serialize().to_pybytes())
    body = reader.read_next_message().body.size
    at = data.find(struct.pack("<q", body), schema_bytes)
    return data[:at] + struct.pack("<q", size) + data[at + 8:]


@pytest.mark.parametrize("damage", [
    lambda d: d[: len(d) // 2],                 # cut short in a batch
    lambda d: d[:-3],                           # cut inside the end-of-stream marker
    lambda d: claim_body(d, 2**31),             # a message claiming a 2 GB body
    lambda d: claim_body(d, 2**62),
    lambda d: d[:12],                           # cut inside the schema
    lambda d: b"\xff\xff\xff\xff" + struct.pack("<i", 2**31 - 1) + d[8:],  # metadata claiming 2 GB
])
def test_a_damaged_arrow_stream_is_one_line(tmp_path, damage):
    path = tmp_path / "data.arrow"
    path.write_bytes(damage(arrow_stream(path)))
    before = snapshot(tmp_path)
    assert_one_line_error(run_cli("encode", path, "--model", "never-loaded", "--out", tmp_path / "v"), "data.arrow")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", [
    lambda corpus, model, out: ["encode", corpus, "--model", model, "--runner", "local", "--out", out],
    lambda corpus, model, out: ["export", "--model", model, "--out", out],
])
@pytest.mark.parametrize("out", ["/proc/x/v", "/proc/self/x/v", "/dev/null/v", "/sys/x/v"])
def test_an_output_under_a_directory_nobody_can_create(tiny_model_dir, tmp_path, command, out):
    corpus = write_corpus(tmp_path / "c.parquet")
    before = snapshot(tmp_path)
    assert_one_line_error(run_cli(*command(corpus, tiny_model_dir, out)), out.rsplit("/", 1)[0])
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("value, problem", [(4096, "more than"), (-5, "at least 2")])
def test_a_model_whose_max_seq_length_exceeds_its_position_table(tiny_model_dir, tmp_path, value, problem):
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    (model / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": value}))
    corpus = write_corpus(tmp_path / "c.parquet")
    line = assert_one_line_error(run_cli("encode", corpus, "--model", model, "--runner", "local",
                                         "--out", tmp_path / "v"), "max_seq_length", problem)
    assert "--max-length" in line
    assert not (tmp_path / "v").exists()
    result = run_cli("encode", corpus, "--model", model, "--runner", "local", "--out", tmp_path / "v",
                     "--max-length", "64")                        # the way out the message names works
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("layers", ["0", "0,1", "-2"])
def test_pooler_pooling_only_on_layers_it_does_not_apply_to(tiny_model_dir, tmp_path, layers):
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(["cat", "dog", "sun", "moon", "tree"], 4)) for _ in range(60)]
    pq.write_table(pa.table({"text": texts, "label": ["a", "b", "c"] * 20}), tmp_path / "train.parquet")
    line = assert_one_line_error(run_cli("classify", tmp_path / "train.parquet", "--model", tiny_model_dir,
                                         "--layers", layers, "--pooling", "pooler", "--out", tmp_path / "r"),
                                 "pooler", "last layer")
    assert "--layers" in line
    assert not (tmp_path / "r").exists()


def test_a_distilbert_that_ships_its_own_onnx_graph(tiny_distilbert_dir, tmp_path):
    model = Path(shutil.copytree(tiny_distilbert_dir, tmp_path / "model"))
    (model / "onnx").mkdir()
    shutil.copy2(ensure_exported(resolve_model(str(tiny_distilbert_dir))).onnx_path, model / "onnx" / "model.onnx")
    assert "hidden_size" not in json.loads((model / "config.json").read_text())   # DistilBERT says dim
    corpus = write_corpus(tmp_path / "c.parquet", TEXTS)
    result = run_cli("encode", corpus, "--model", model, "--runner", "local", "--out", tmp_path / "v")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "v" / "manifest.json").read_text())
    assert manifest["dim"] == json.loads((model / "config.json").read_text())["dim"]
    # a config naming no width at all is one line, not a KeyError
    config = json.loads((model / "config.json").read_text())
    del config["dim"]
    (model / "config.json").write_text(json.dumps(config))
    assert_one_line_error(run_cli("encode", corpus, "--model", model, "--runner", "local", "--out", tmp_path / "w"),
                          "hidden size")
