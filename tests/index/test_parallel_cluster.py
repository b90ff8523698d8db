"""The parallel index build on a real 2-node Ray cluster on loopback, over vectors in a real S3 API server
on loopback (moto): `embedpipe index s3://... --ray-address` adds parts on both nodes and merges them,
with recall@10 on held-out queries within 0.01 of the same factory built in one process; kill -9 of
the driver mid-build, then the same command, finishes and reuses the finished parts; a node lost
mid-build is survived; inverted lists merged on disk make the s3:// round trip. The cluster is shared
by the module; the node-loss test, which ends the second node, runs last."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest

from embedpipe.index import IndexConfig, build_index, open_index
from embedpipe.index.params import ExactTopK
from embedpipe.testing.services import ray_head, ray_node, wait_for_nodes
from tests.encode import test_cluster
from tests.index.clustered import clustered_unit_vectors, write_vectors

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
# encode's cluster tests' S3 server on loopback, the AWS variables for this process, a quick health check
s3, aws, QUICK_HEALTH_CHECK = test_cluster.s3, test_cluster.aws, test_cluster.QUICK_HEALTH_CHECK
ROWS, SHARD_ROWS, DIM = 24_000, 1_000, 24
FACTORY = "IVF64,PQ24x4fs,RFlat"  # with a 1MB budget: refined from a float16 exact store
VECTORS = "s3://embedpipe/iv"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3):
    logs = tmp_path_factory.mktemp("cluster-logs")
    env = {**s3.env, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    with ray_head(logs, cpus=1, env=env, system_config=QUICK_HEALTH_CHECK, stop_seconds=5) as head, \
            ray_node(head, logs, cpus=1, env=env) as node:
        wait_for_nodes(head, 2, env)
        yield head, node, env


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, s3):
    """24 shards of clustered vectors uploaded to the S3 server; 300 more vectors as unseen queries."""
    x = clustered_unit_vectors(ROWS + 300, seed=11)
    local = write_vectors(tmp_path_factory.mktemp("iv") / "iv.vectors", x[:ROWS], rows_per_shard=SHARD_ROWS)
    s3fs = pafs.S3FileSystem(endpoint_override=s3.endpoint, access_key="testing", secret_key="testing",
                             region="us-east-1", scheme="http")
    pafs.copy_files(str(local), "embedpipe/iv", destination_filesystem=s3fs)
    return x[:ROWS], x[ROWS:]


def index_command(out, head, *extra):
    return [sys.executable, "-m", "embedpipe", "index", VECTORS, "--out", str(out), "--factory", FACTORY,
            "--max-memory", "1MB", "--runner", "ray",
            "--ray-address", head.gcs_address, "--json", *extra]


def start_build(out, head, env) -> subprocess.Popen:
    return subprocess.Popen(index_command(out, head), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def recall(index_dir, x, queries) -> float:
    exact = ExactTopK(queries, 10, "ip")
    exact.add(x, 0)
    truth = exact.result()[1]
    index = open_index(index_dir, mmap=True)
    _, rows = index.search(queries, 10)
    found = [[int(i[3:]) for i in index.ids_of(r)] for r in rows]
    return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))


def finished_parts(out: Path) -> int:
    build = out.with_name(f".{out.name}.build")
    return len(list(build.glob("part-*.json"))) if build.exists() else 0


def run_until(process, condition, what: str, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            pytest.fail(f"the build ended before {what}: {process.stderr.read()[-3000:]}")
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail(f"timed out waiting for {what}")


def test_two_nodes_add_parts_from_s3_and_the_merge_matches_one_process(cluster, corpus, aws, tmp_path):
    head, _, env = cluster
    x, queries = corpus
    out = tmp_path / "ray.index"
    result = subprocess.run(index_command(out, head), env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[:4000]
    info = json.loads(result.stdout)
    assert info["runner"]["name"] == "ray" and info["n"] == ROWS and info["vectors"] == VECTORS
    assert len(info["runner"]["parts_by_node"]) == 2, info["runner"]            # parts added on both nodes
    assert sum(info["runner"]["parts_by_node"].values()) == ROWS // SHARD_ROWS
    assert info["exact_store"]["rows"] == ROWS and info["refine"]["from"] == "exact_store"
    assert not out.with_name(f".{out.name}.build").exists()                   # published: parts removed
    local = build_index(VECTORS, tmp_path / "local.index",
                        IndexConfig(factory=FACTORY, max_memory="1MB", runner="local"))
    assert local["factory"] == info["factory"] == "IVF64,PQ24x4fs"
    assert abs(recall(out, x, queries) - recall(tmp_path / "local.index", x, queries)) <= 0.01


def test_kill_9_of_the_driver_mid_build_then_the_rerun_reuses_finished_parts(cluster, corpus, aws, tmp_path):
    head, _, env = cluster
    out = tmp_path / "killed.index"
    first = start_build(out, head, env)
    run_until(first, lambda: finished_parts(out) >= 3, "three parts were finished")
    os.killpg(first.pid, signal.SIGKILL)                                       # the driver, kill -9
    first.wait()
    done_before = finished_parts(out)
    assert not (out / "index.json").exists()                                  # nothing published
    second = subprocess.run(index_command(out, head), env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    info = json.loads(second.stdout)
    assert info["runner"]["parts_reused"] >= min(done_before, 3) and info["n"] == ROWS
    assert "reusing the trained index" in second.stderr
    assert sorted(open_index(out).ids.to_pylist()) == sorted(f"doc{i}" for i in range(ROWS))


def test_lists_merged_on_disk_from_both_nodes_go_to_s3_and_back(cluster, corpus, aws, tmp_path):
    """--inverted-lists disk: the parts' lists merged into index.ivfdata, uploaded with the index to s3://,
    searched from there with the recall of the same codes kept in RAM by one process."""
    head, _, env = cluster
    x, queries = corpus
    url = "s3://embedpipe/ondisk.index"
    result = subprocess.run(index_command(url, head, "--inverted-lists", "disk"), env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    info = json.loads(result.stdout)                        # FAISS's prints kept off stdout
    assert info["inverted_lists"]["on"] == "disk" and info["factory"] == "IVF64,PQ24x4np"
    assert len(info["runner"]["parts_by_node"]) == 2
    assert aws.get_file_info("embedpipe/ondisk.index/index.ivfdata").size == info["inverted_lists"]["bytes"]
    local = build_index(VECTORS, tmp_path / "ram.index", IndexConfig(factory="IVF64,PQ24x4np,RFlat", max_memory="1MB",
                                                                      runner="local", inverted_lists="ram"))
    assert local["inverted_lists"]["on"] == "ram"
    assert abs(recall(url, x, queries) - recall(tmp_path / "ram.index", x, queries)) <= 0.01


def test_a_node_lost_mid_build_is_survived(cluster, corpus, aws, tmp_path):
    head, node, env = cluster
    out = tmp_path / "lost.index"
    process = start_build(out, head, env)
    run_until(process, lambda: finished_parts(out) >= 2, "two parts were finished")
    node.kill_raylet()                                                         # the second machine is gone
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    # Ray prints the lost raylet ("(raylet) Raylet is terminated") to the driver's stderr: stdout is index.json
    info = json.loads(stdout)
    assert info["n"] == ROWS and info["exact_store"]["rows"] == ROWS
    assert sorted(open_index(out).ids.to_pylist()) == sorted(f"doc{i}" for i in range(ROWS))
