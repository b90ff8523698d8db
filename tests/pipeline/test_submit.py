"""The demo spec as a Ray job on a real local Ray head (dashboard / job server on 127.0.0.1):
`embedpipe submit --wait`, and plain `ray job submit --working-dir . -- embedpipe run ...`.

The head runs in its own process group on ports of its own and is stopped by that group's id.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from embedpipe.formats.vectors import open_vectors
from embedpipe.index import open_index
from embedpipe.testing.services import BIN, RAY_ENV, ray_head

ROOT = Path(__file__).resolve().parents[2]
# The job runs `python -m embedpipe` / `embedpipe` from PATH, as on a cluster node whose image has them.
# One pooling and a linear probe: the demo's classify stage at a test's cost.
QUICK_CLASSIFY = ["--set", "classify.poolings=[mean]", "--set", "classify.heads=[linear]", "--set", "classify.seeds=1"]
ENV = {**RAY_ENV, "PATH": f"{BIN}{os.pathsep}{RAY_ENV.get('PATH', '')}"}


@pytest.fixture(scope="module")
def job_server(tmp_path_factory):
    """A Ray head with its dashboard (the job server) on 127.0.0.1; yields the job server's URL."""
    with ray_head(tmp_path_factory.mktemp("ray-head"), dashboard=True, env=ENV) as head:
        yield head.dashboard_url


@pytest.mark.slow
def test_embedpipe_submit_runs_the_demo_spec_as_a_ray_job(job_server, export_cache, tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [str(BIN / "embedpipe"), "submit", "pipelines/demo.yaml", "--address", job_server, "--output-dir", str(out),
         "--env", f"EMBEDPIPE_CACHE={export_cache}", "--wait", *QUICK_CLASSIFY],
        cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert result.stdout.startswith("submitted raysubmit_")
    assert result.stdout.strip().splitlines()[-1].endswith("SUCCEEDED")
    assert "encoding on Ray" in result.stdout            # the job's own log, followed
    assert open_vectors(out / "sample.mean.vectors").rows == 300
    assert open_index(out / "sample.index").index.ntotal == 300
    report = json.loads((out / "evaluation.json").read_text())
    assert report["queries"] == 100 and report["index"]["ndcg_at_10"] > 0.5
    classify = json.loads((out / "classify" / "report.json").read_text())
    assert classify["dataset"]["n_classes"] == 10 and classify["best"]["accuracy"] > 0.3


@pytest.mark.slow
def test_ray_job_submit_runs_embedpipe_run(job_server, tiny_model_dir, export_cache, tmp_path):
    """The documented plain-Ray way (`ray job submit --working-dir . -- embedpipe run SPEC`); the tiny
    model, encoded in the job's own process, keeps it short."""
    out = tmp_path / "plain"
    runtime_env = json.dumps({"env_vars": {"EMBEDPIPE_CACHE": str(export_cache), "HF_HUB_OFFLINE": "1"}})
    result = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", job_server, "--working-dir", ".",
         "--runtime-env-json", runtime_env, "--",
         "embedpipe", "run", "pipelines/demo.yaml", "--output-dir", str(out),
         "--set", f"encode.model={tiny_model_dir}", "--set", "encode.runner=local", "--set", "evaluate.k_values=[1]",
         "--set", f"classify.model={tiny_model_dir}", *QUICK_CLASSIFY],
        cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "succeeded" in result.stdout.lower()
    manifest = open_vectors(out / "sample.mean.vectors").manifest
    assert manifest["rows"] == 300 and manifest["model"]["path"] == str(Path(tiny_model_dir).resolve())
    assert json.loads((out / "evaluation.json").read_text())["k_values"] == [1]
    assert (out / "classify" / "report.json").exists()


def test_submit_refuses_a_spec_outside_the_working_dir_and_a_bad_address(tmp_path):
    from click.testing import CliRunner

    from embedpipe.cli import main

    spec = tmp_path / "s.yaml"
    spec.write_text("encode:\n  corpus: c.parquet\n")
    outside = CliRunner().invoke(main, ["submit", str(spec), "--address", "http://127.0.0.1:9",
                                        "--working-dir", str(ROOT)])
    assert outside.exit_code == 1
    assert "is not inside the working directory" in outside.output and "Traceback" not in outside.output
    bad = CliRunner().invoke(main, ["submit", str(ROOT / "pipelines" / "demo.yaml"), "--address", "http://127.0.0.1:9",
                                    "--working-dir", str(ROOT)])
    assert bad.exit_code == 1 and "Error: cannot reach the Ray job server at http://127.0.0.1:9" in bad.output
