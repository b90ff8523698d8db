"""Safe loading: no pickle where data is read, model code runs only with an explicit flag, ONNX
weights only from inside the export directory."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from embedpipe.encode.encoder import BatchPlan, EncoderSpec, prepare
from embedpipe.encode.rows import RowsToVectors, WorkerConfig
from embedpipe.errors import EmbedpipeError
from tests.helpers import assert_one_line_error as one_line_error
from tests.helpers import run_cli as cli

PACKAGE = Path(__file__).resolve().parents[2] / "embedpipe"


def test_no_pickle_or_joblib_in_the_package():
    pattern = re.compile(r"\bimport (pickle|cPickle|joblib|dill|cloudpickle)\b|allow_pickle\s*=\s*True|torch\.load\(|"
                         r"read_pickle\(|\bpickle\.loads?\(|joblib\.load\(")
    offenders = [f"{path.name}:{n}" for path in PACKAGE.rglob("*.py")
                 for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


@pytest.fixture
def export_copy(tiny_model_dir, tmp_path):
    """A copy of the tiny model's real export, to tamper with."""
    exported, _ = prepare(EncoderSpec(model=str(tiny_model_dir)))
    return Path(shutil.copytree(exported.path, tmp_path / "export"))


def worker_config(export_dir: Path, pooling: str = "mean") -> WorkerConfig:
    return WorkerConfig(str(export_dir), pooling, True, 64, BatchPlan(threads=1), "text", "id")


class Payload:
    """Unpickling this would create a marker file: it must never happen."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickled_payload_in_pooler_weights_is_not_run(export_copy, tmp_path):
    marker = tmp_path / "pwned"
    np.savez(export_copy / "pooler.npz", weight=np.array([Payload(marker)], dtype=object), bias=np.zeros(32))
    with pytest.raises(EmbedpipeError, match="cannot load the encoder .*allow_pickle=False"):
        RowsToVectors(worker_config(export_copy, "pooler"))
    assert not marker.exists()


def save_with_weights_at(model, path, location: str) -> None:
    """Save ``model`` (loaded without its external data) pointing every initializer at ``location``."""
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(model.SerializeToString())


def test_onnx_weights_outside_the_export_directory_are_refused(export_copy, tmp_path):
    model = onnx.load(export_copy / "model.onnx")
    onnx.save_model(model, export_copy / "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    shutil.move(export_copy / "weights.bin", tmp_path / "weights.bin")      # the weights now live outside
    model = onnx.load(export_copy / "model.onnx", load_external_data=False)
    save_with_weights_at(model, export_copy / "model.onnx", "../weights.bin")
    with pytest.raises(EmbedpipeError, match="cannot load the encoder .*External data path"):
        RowsToVectors(worker_config(export_copy))
    (export_copy / "weights.bin").symlink_to(tmp_path / "weights.bin")     # a symlink out is refused too
    save_with_weights_at(model, export_copy / "model.onnx", "weights.bin")
    with pytest.raises(EmbedpipeError, match="cannot load the encoder .*External data path"):
        RowsToVectors(worker_config(export_copy))


def test_an_onnx_file_named_outside_the_export_is_refused(export_copy):
    info = json.loads((export_copy / "export.json").read_text())
    (export_copy / "export.json").write_text(json.dumps({**info, "onnx_file": "../model.onnx"}))
    with pytest.raises(EmbedpipeError, match="not inside the export directory"):
        RowsToVectors(worker_config(export_copy))


def test_model_code_runs_only_with_trust_remote_code(tiny_model_dir, tmp_path, corpus):
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "custom"))
    marker = tmp_path / "code-ran"
    (model / "custom_config.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
                                            "from transformers import BertConfig\n"
                                            "class CustomConfig(BertConfig):\n    model_type = 'custom'\n")
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoConfig": "custom_config.CustomConfig"}}))
    one_line_error(cli("export", "--model", model, "--out", tmp_path / "exp"), "ships its own Python code",
                   "--trust-remote-code")
    one_line_error(cli("encode", corpus, "--model", model, "--runner", "local", "--out", tmp_path / "v"),
                   "ships its own Python code")
    assert not marker.exists() and not (tmp_path / "exp").exists() and not (tmp_path / "v").exists()
