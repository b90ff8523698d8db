"""Beyond one machine, for real: a 2-node Ray cluster on loopback (two `ray start` processes with
ports of their own, 1 CPU each: the shape on which the Ray Data runner once made no progress) and a
real S3 API server on loopback (moto's server mode, AWS_ENDPOINT_URL & co. pointing at it).

Workers on both nodes write their shards straight to s3:// (the driver gets receipts only); the
driver is killed with SIGKILL mid-run and the rerun finishes exactly once; a node's raylet is
killed mid-run and the job finishes on the node that is left, exactly once. The cluster is shared
by the module, and the node-loss test, which ends the second node, runs last."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from embedpipe.encode import encode_corpus
from embedpipe.formats.vectors import open_vectors
from embedpipe.index.build import IndexConfig, build_index
from embedpipe.testing.services import ray_head, ray_node, s3_server, wait_for_nodes
from tests.reliability.support import assert_same_vectors, by_id, job, write_rows

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
# A lost node is noticed in ~2-3 s instead of Ray's default ~15-30 s.
QUICK_HEALTH_CHECK = {"health_check_initial_delay_ms": 1000, "health_check_period_ms": 500,
                      "health_check_timeout_ms": 1000, "health_check_failure_threshold": 4}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with s3_server(tmp_path_factory.mktemp("s3-logs")) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3):
    """(head, second node, env): every process of the cluster and every embedpipe command run with
    ``env``, which holds the AWS variables (each node reads the store with its own)."""
    logs = tmp_path_factory.mktemp("cluster-logs")
    env = {**s3.env, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "EMBEDPIPE_CACHE": os.environ["EMBEDPIPE_CACHE"]}
    with ray_head(logs, cpus=1, env=env, system_config=QUICK_HEALTH_CHECK, stop_seconds=5) as head, \
            ray_node(head, logs, cpus=1, env=env) as node:
        wait_for_nodes(head, 2, env)
        yield head, node, env


@pytest.fixture
def aws(s3, monkeypatch):
    """This test process reads the store through the same variables."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                 "AWS_REGION", "AWS_EC2_METADATA_DISABLED"):
        monkeypatch.setenv(name, s3.env[name])
    return pafs.FileSystem.from_uri("s3://embedpipe")[0]


def encode_command(corpus, model, out, head, rows_per_shard=200):
    return [sys.executable, "-m", "embedpipe", "encode", str(corpus), "--model", str(model), "--out", str(out),
            "--runner", "ray", "--ray-address", head.gcs_address, "--rows-per-shard", str(rows_per_shard)]


def receipts(names: list[str]) -> list[str]:
    return [n for n in names if n.rsplit("/", 1)[-1].startswith("part-") and n.endswith(".json")]


def wait_for(condition, process, what: str, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if process.poll() is not None:
            pytest.fail(f"the run ended before {what}: {process.stdout.read()[-3000:]}")
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail(f"timed out waiting for {what}")


def local_text(corpus: Path, row: int) -> str:
    return pq.read_table(corpus).column("text")[row].as_py()


def test_two_nodes_write_to_s3_and_a_driver_killed_by_sigkill_reruns_exactly_once(cluster, aws, tiny_model_dir,
                                                                                  tmp_path):
    head, _, env = cluster
    local = write_rows(tmp_path / "c.parquet", 0, 4000)
    with aws.open_output_stream("embedpipe/corpus/c.parquet") as f:    # the corpus lives in the store too
        f.write(local.read_bytes())
    out = "s3://embedpipe/v"
    listing = lambda: [i.path for i in aws.get_file_info(pafs.FileSelector("embedpipe/v", allow_not_found=True))]  # noqa: E731

    first = subprocess.Popen(encode_command("s3://embedpipe/corpus/c.parquet", tiny_model_dir, out, head), env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    done_before = len(wait_for(lambda: len(receipts(listing())) >= 3 and receipts(listing()), first,
                               "three pieces were finished"))
    os.killpg(first.pid, signal.SIGKILL)                                 # the driver, kill -9
    first.wait()
    assert "embedpipe/v/manifest.json" not in listing()                 # nothing committed

    second = subprocess.run(encode_command("s3://embedpipe/corpus/c.parquet", tiny_model_dir, out, head), env=env,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "interrupted run are reused" in second.stderr
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    manifest = open_vectors(out).manifest
    assert summary["rows"] == manifest["rows"] == 4000
    assert manifest["last_run"]["reused_shards"] >= done_before
    assert manifest["last_run"]["encoded_rows"] + manifest["last_run"]["reused_rows"] == 4000
    nodes = {s["node_id"] for s in manifest["shards"]}
    assert len(nodes) == 2 and None not in nodes, nodes                 # shards written by both nodes
    # The manifest is the commit: what it lists is all there is (dead attempts, receipts, run record gone).
    assert sorted(p.rsplit("/", 1)[1] for p in listing()) == sorted(["manifest.json",
                                                                     *(s["file"] for s in manifest["shards"])])
    on_s3 = by_id(out)                                                   # every id exactly once, checksums verified
    assert_same_vectors(on_s3, by_id(encode_corpus(job(tiny_model_dir, local, tmp_path / "ref")).out))

    # The index stage reads the vectors at the same URL and writes the index there; search opens it there.
    info = build_index(out, "s3://embedpipe/index", IndexConfig(factory="Flat"))
    assert info["n"] == 4000 and info["vectors"] == out
    hits = subprocess.run([sys.executable, "-m", "embedpipe", "search", "s3://embedpipe/index", local_text(local, 7),
                           "--json", "-k", "3"], env=env, capture_output=True, text=True, timeout=120)
    assert hits.returncode == 0, hits.stderr[-3000:]
    assert json.loads(hits.stdout)["hits"][0]["id"] == "doc-7"          # a text finds itself first


def test_a_node_lost_mid_encode_the_run_finishes_on_the_other_exactly_once(cluster, tiny_model_dir, tmp_path):
    head, node, env = cluster
    corpus, out = write_rows(tmp_path / "c.parquet", 0, 30_000), tmp_path / "v"      # 150 pieces of 200 rows
    staging = tmp_path / ".v.partial"

    def nodes_that_finished_pieces():
        found = set()
        for receipt in staging.glob("part-*.json"):
            try:
                found.add(json.loads(receipt.read_text())["node_id"])
            except (OSError, ValueError):
                pass
        return found if len(found) == 2 else None

    run = subprocess.Popen(encode_command(corpus, tiny_model_dir, out, head), env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    wait_for(nodes_that_finished_pieces, run, "both nodes finished a piece")
    assert node.kill_raylet() == 1                                       # the second node is lost mid-run
    assert len(list(staging.glob("part-*.json"))) < 120                  # of 150 pieces: mid-run
    try:
        output, _ = run.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        pytest.fail("the run did not finish after losing a node")
    if run.returncode != 0:                                              # allowed: one line, then the rerun
        errors = [line for line in output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "Traceback" not in output, output[-3000:]
        rerun = subprocess.run(encode_command(corpus, tiny_model_dir, out, head), env=env, capture_output=True,
                               text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
    else:
        assert "died" in output, output[-3000:]                        # the pool said what happened
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"] == 30_000 and len({s["node_id"] for s in manifest["shards"]}) == 2
    assert sorted(p.name for p in out.iterdir()) == sorted(["manifest.json", *(s["file"] for s in manifest["shards"])])
    assert not staging.exists()
    assert_same_vectors(by_id(out), by_id(encode_corpus(job(tiny_model_dir, corpus, tmp_path / "ref")).out))
    assert pq.read_metadata(out / manifest["shards"][0]["file"]).num_rows == manifest["shards"][0]["rows"]
