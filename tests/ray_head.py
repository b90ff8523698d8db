"""A real `ray start --head --block` for tests: on 127.0.0.1, on free ports of its own, in its own
process group, stopped by that group's id (never `ray stop`, which would stop every Ray here).

    with ray_head(log_dir, dashboard=True) as head:
        head.gcs_address      # "127.0.0.1:PORT", for --ray-address
        head.dashboard_url    # "http://127.0.0.1:PORT" (the job server), when dashboard=True
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# A throwaway loopback cluster: no token authentication between this test's own processes.
RAY_ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ""}
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class RayHead:
    gcs_address: str
    dashboard_url: str | None


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise RuntimeError(f"the Ray head did not come up on 127.0.0.1:{port}")


@contextmanager
def ray_head(log_dir: Path, *, dashboard: bool = False, env: dict | None = None):
    ray_temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    gcs, client, dash, agent_http, agent_grpc, metrics, env_agent, worker_low = free_ports(8)
    command = [str(BIN / "ray"), "start", "--head", "--block", "--disable-usage-stats",
               "--node-ip-address", "127.0.0.1", "--port", str(gcs), "--num-cpus", "2",
               "--ray-client-server-port", str(client),
               "--dashboard-agent-listen-port", str(agent_http), "--dashboard-agent-grpc-port", str(agent_grpc),
               "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(env_agent),
               "--min-worker-port", str(worker_low), "--max-worker-port", str(worker_low + 60),
               "--temp-dir", ray_temp]
    command += (["--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash)]
                if dashboard else ["--include-dashboard", "false"])
    log = open(Path(log_dir) / "ray-head.log", "wb")
    head = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env=env or RAY_ENV)
    try:
        wait_for_port(gcs, head)
        if dashboard:
            wait_for_port(dash, head, seconds=120)
        yield RayHead(f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}" if dashboard else None)
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(ray_temp, ignore_errors=True)
