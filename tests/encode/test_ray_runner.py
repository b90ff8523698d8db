"""`encode --ray-address` against a real Ray cluster started with `ray start --head` on loopback."""

import json
import subprocess
import sys

import pytest

from embedpipe.formats.vectors import open_vectors
from embedpipe.testing.services import RAY_ENV, ray_head


@pytest.fixture
def ray_head_address(tmp_path):
    with ray_head(tmp_path) as head:
        yield head.gcs_address


@pytest.mark.slow
def test_encode_joins_a_running_cluster(ray_head_address, tiny_model_dir, corpus, tmp_path):
    out = tmp_path / "v"
    result = subprocess.run([sys.executable, "-m", "embedpipe", "encode", str(corpus), "--model", str(tiny_model_dir),
                             "--out", str(out), "--ray-address", ray_head_address, "--workers", "2"],
                            capture_output=True, text=True, env=RAY_ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["rows"] == 10
    vectors = open_vectors(out)
    assert vectors.read_all()[0].to_pylist() == list(range(10))
    # the default runner (auto) runs on Ray whenever a cluster is named, however small the corpus
    assert (vectors.manifest["runner"], vectors.manifest["runner_requested"]) == ("ray", "auto")
