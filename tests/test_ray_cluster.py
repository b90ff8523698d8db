"""`encode --ray-address` against a real Ray cluster started with `ray start --head` on loopback."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from embedpipe.vectors import open_vectors


# A throwaway loopback cluster: no token authentication between this test's own processes.
RAY_ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ""}


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def wait_for_port(port, process, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise RuntimeError(f"the Ray head did not come up on 127.0.0.1:{port}")


@pytest.fixture
def ray_head(tmp_path):
    """A head node in its own process group, on ports of its own; stopped by that group's id."""
    ray_temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    gcs, client, agent_http, agent_grpc, metrics, env_agent, worker_low = free_ports(7)
    command = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--disable-usage-stats",
               "--node-ip-address", "127.0.0.1", "--port", str(gcs), "--num-cpus", "2",
               "--include-dashboard", "false", "--ray-client-server-port", str(client),
               "--dashboard-agent-listen-port", str(agent_http), "--dashboard-agent-grpc-port", str(agent_grpc),
               "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(env_agent),
               "--min-worker-port", str(worker_low), "--max-worker-port", str(worker_low + 60),
               "--temp-dir", ray_temp]
    log = open(tmp_path / "ray-head.log", "wb")
    head = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=RAY_ENV)
    try:
        wait_for_port(gcs, head)
        yield f"127.0.0.1:{gcs}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(ray_temp, ignore_errors=True)


@pytest.mark.slow
def test_encode_joins_a_running_cluster(ray_head, tiny_model_dir, corpus, tmp_path):
    out = tmp_path / "v"
    result = subprocess.run([sys.executable, "-m", "embedpipe", "encode", str(corpus), "--model", str(tiny_model_dir),
                             "--out", str(out), "--ray-address", ray_head, "--workers", "2"],
                            capture_output=True, text=True, env=RAY_ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["rows"] == 10
    ids, _ = open_vectors(out).read_all()
    assert ids.to_pylist() == list(range(10))
