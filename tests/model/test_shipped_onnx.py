"""`encode` works from the ONNX graph a model ships (onnx/model.onnx) without optimum, torch or
transformers installed: simulated by a subprocess whose import system refuses them (a meta-path
finder in sitecustomize), not by uninstalling anything. Only `export` of a model without a graph
needs optimum, and says so in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedpipe.formats.vectors import open_vectors
from embedpipe.model.export import ensure_exported
from embedpipe.model.resolve import resolve_model
from tests.helpers import TEXTS, write_corpus

BLOCKER = '''
import sys

BLOCKED = {"optimum", "torch", "transformers"}


class NotInstalled:
    """Refuses every module of BLOCKED, as if it were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
'''


@pytest.fixture(scope="module")
def shipped_model(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model as a hub repository ships one: its files plus onnx/model.onnx."""
    root = tmp_path_factory.mktemp("shipped")
    model = Path(shutil.copytree(tiny_model_dir, root / "model"))
    (model / "onnx").mkdir()
    shutil.copy2(ensure_exported(resolve_model(str(tiny_model_dir))).onnx_path, model / "onnx" / "model.onnx")
    return model


def without_optimum(tmp_path: Path, *args) -> subprocess.CompletedProcess:
    blocker = tmp_path / "blocker"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(root)]),
           "EMBEDPIPE_CACHE": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "embedpipe", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_blocker_blocks(tmp_path):
    (tmp_path / "blocker").mkdir()
    (tmp_path / "blocker" / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "blocker")}
    run = subprocess.run([sys.executable, "-c", "import optimum"], env=env, capture_output=True, text=True)
    assert run.returncode == 1 and "blocked by the test" in run.stderr


def test_encode_from_a_shipped_graph_without_optimum_torch_or_transformers(shipped_model, tiny_model_dir,
                                                                            tmp_path):
    corpus = write_corpus(tmp_path / "c.parquet", TEXTS, ids=[f"d{i}" for i in range(len(TEXTS))])
    run = without_optimum(tmp_path, "encode", corpus, "--model", shipped_model, "--runner", "local",
                          "--threads", "1", "--out", tmp_path / "shipped.vectors", "--pooling", "pooler")
    assert run.returncode == 0, run.stderr
    from embedpipe.encode import EncodeJob, encode_corpus
    from embedpipe.encode.encoder import EncoderSpec

    exported = encode_corpus(EncodeJob(str(corpus), out=str(tmp_path / "exported.vectors"), runner="local", threads=1,
                                       spec=EncoderSpec(model=str(tiny_model_dir), pooling="pooler")))
    (ids, shipped), (expected_ids, expected) = (open_vectors(tmp_path / "shipped.vectors").read_all(),
                                                open_vectors(exported.out).read_all())
    assert ids.to_pylist() == expected_ids.to_pylist()
    np.testing.assert_allclose(shipped, expected, atol=1e-6)
    export_info = next((tmp_path / "cache" / "onnx").glob("*/export.json")).read_text()
    assert '"shipped_graph": "onnx/model.onnx"' in export_info


def test_export_without_optimum_is_one_line(tiny_model_dir, tmp_path):
    run = without_optimum(tmp_path, "export", "--model", tiny_model_dir)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "needs optimum: pip install 'optimum-onnx[onnxruntime]'" in errors[0], run.stderr
