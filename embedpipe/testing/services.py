"""Real services on loopback for tests and benchmarks: a Ray head, extra Ray nodes, moto's S3 API
server, and the free ports they listen on.

    >>> with ray_head(log_dir) as head:                           # `ray start --head` on 127.0.0.1  # doctest: +SKIP
    ...     head.gcs_address                                      # "127.0.0.1:PORT", for --ray-address
    ...     with ray_node(head, log_dir, cpus=1) as node:         # a second node (`ray start --address`)
    ...         node.kill_raylet()                                # lose it, as a crashed machine would
    >>> with s3_server(log_dir) as s3:                            # moto's S3 API server on 127.0.0.1  # doctest: +SKIP
    ...     s3.env                                                # AWS_ENDPOINT_URL & co. for any AWS client

The Ray head, each extra node and the S3 server run in process groups of their own on free loopback
ports of their own and are stopped by that group's id (never `ray stop`, which would stop every Ray
on the machine).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# A throwaway loopback cluster: no token authentication between its own processes.
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


WORKER_PORTS = 61  # the range --min-worker-port .. --max-worker-port of a node started here


def ray_ports(n: int) -> tuple[list[int], int]:
    """``n`` free ports for a node's components, and the first of ``WORKER_PORTS`` consecutive ports
    for its workers, a range holding none of the ``n``: Ray refuses to start a node whose ports overlap."""
    while True:
        *ports, low = free_ports(n + 1)
        if low + WORKER_PORTS <= 65536 and not any(low <= port < low + WORKER_PORTS for port in ports):
            return ports, low


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise RuntimeError(f"nothing came up listening on 127.0.0.1:{port} (see its log)")


@contextmanager
def _ray_start(args: list[str], agent_ports: Sequence[int], worker_low: int, ready_port: int, log_path: Path,
               env: dict | None, stop_seconds: float):
    """``ray start --block ARGS`` for one node on 127.0.0.1, its agents on ``agent_ports`` (dashboard
    agent http and grpc, metrics export, runtime-env agent) and its workers on ``WORKER_PORTS`` ports
    from ``worker_low``; in a process group of its own, logging to ``log_path``. Yields the process
    once ``ready_port`` answers; stops the group by its id."""
    agent_http, agent_grpc, metrics, env_agent = agent_ports
    ray_temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    command = [str(BIN / "ray"), "start", *args, "--block", "--disable-usage-stats", "--node-ip-address", "127.0.0.1",
               "--dashboard-agent-listen-port", str(agent_http), "--dashboard-agent-grpc-port", str(agent_grpc),
               "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(env_agent),
               "--min-worker-port", str(worker_low), "--max-worker-port", str(worker_low + WORKER_PORTS - 1),
               "--temp-dir", ray_temp]
    log = open(log_path, "wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               env=env or RAY_ENV)
    try:
        wait_for_port(ready_port, process)
        yield process
    finally:
        _stop_group(process, stop_seconds)
        log.close()
        shutil.rmtree(ray_temp, ignore_errors=True)


@contextmanager
def ray_head(log_dir: Path, *, dashboard: bool = False, env: dict | None = None, cpus: int = 2,
             system_config: dict | None = None, stop_seconds: float = 30):
    """``ray start --head`` with ``cpus`` CPUs; ``system_config`` (Ray's ``--system-config``), e.g.
    a quick node health check, so a lost node is noticed in seconds."""
    (gcs, client, dash, *agent_ports), worker_low = ray_ports(7)
    args = ["--head", "--port", str(gcs), "--num-cpus", str(cpus), "--ray-client-server-port", str(client)]
    if system_config:
        args += ["--system-config", json.dumps(system_config)]
    args += (["--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash)]
             if dashboard else ["--include-dashboard", "false"])
    with _ray_start(args, agent_ports, worker_low, gcs, Path(log_dir) / "ray-head.log", env, stop_seconds) as head:
        if dashboard:
            wait_for_port(dash, head, seconds=120)
        yield RayHead(f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}" if dashboard else None)


def _stop_group(process: subprocess.Popen, seconds: float = 30) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=seconds)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)   # whatever of the group is left
    except ProcessLookupError:
        pass
    process.wait()


@dataclass
class RayNode:
    process: subprocess.Popen      # `ray start --block` (leader of the node's process group)

    def descendants(self) -> list[tuple[int, bytes]]:
        """(pid, command) of every process started under this node's `ray start`, by parent links
        (Ray's workers start sessions of their own, so the process group does not hold them)."""
        children: dict[int, list[int]] = {}
        commands: dict[int, bytes] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    commands[int(entry.name)] = (entry / "cmdline").read_bytes().split(b"\0")[0]
                except (OSError, ValueError, IndexError):
                    continue
                children.setdefault(parent, []).append(int(entry.name))
        found, todo = [], [self.process.pid]
        while todo:
            for child in children.get(todo.pop(), []):
                found.append((child, commands.get(child, b"")))
                todo.append(child)
        return found

    def kill_raylet(self, with_workers: bool = True) -> int:
        """SIGKILL this node's raylet, then (``with_workers``) every process under it, its workers
        and actors among them: the node is lost as if its machine crashed. (On loopback a worker
        whose raylet alone died keeps answering its caller for a while.)"""
        processes = self.descendants()
        raylets = [pid for pid, command in processes if command.endswith(b"/raylet")]
        if not raylets:
            raise RuntimeError("no raylet found for this node")
        for pid in raylets + ([pid for pid, _ in processes if pid not in raylets] if with_workers else []):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(raylets)


@contextmanager
def ray_node(head: RayHead, log_dir: Path, *, cpus: int = 1, env: dict | None = None, name: str = "node"):
    """A worker node (`ray start --address HEAD`) with ``cpus`` CPUs, on ports of its own."""
    (manager, *agent_ports), worker_low = ray_ports(5)
    args = ["--address", head.gcs_address, "--num-cpus", str(cpus), "--node-manager-port", str(manager)]
    with _ray_start(args, agent_ports, worker_low, manager, Path(log_dir) / f"ray-{name}.log", env,
                    stop_seconds=5) as process:
        yield RayNode(process)


def wait_for_nodes(head: RayHead, nodes: int, env: dict | None = None, seconds: float = 60) -> None:
    """Until the cluster at ``head`` counts ``nodes`` alive nodes (a node that just started may not
    have registered with the head yet)."""
    probe = ("import ray, sys, time; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False)\n"
             "deadline = time.monotonic() + float(sys.argv[3])\n"
             "while sum(n['Alive'] for n in ray.nodes()) < int(sys.argv[2]) and time.monotonic() < deadline:\n"
             "    time.sleep(0.2)\n"
             "sys.exit(0 if sum(n['Alive'] for n in ray.nodes()) >= int(sys.argv[2]) else 1)")
    result = subprocess.run([sys.executable, "-c", probe, head.gcs_address, str(nodes), str(seconds)],
                            env=env or RAY_ENV, capture_output=True, timeout=seconds + 60)
    if result.returncode:
        raise RuntimeError(f"the cluster did not reach {nodes} nodes: {result.stderr[-2000:]!r}")


@dataclass(frozen=True)
class S3Server:
    endpoint: str       # http://127.0.0.1:PORT
    env: dict           # os.environ plus the AWS variables every client reads, pointing at it


@contextmanager
def s3_server(log_dir: Path, buckets: Sequence[str] = ("embedpipe",)):
    """moto's S3 API server (``moto_server``) on a free loopback port, with ``buckets`` created;
    stopped by its process group's id."""
    (port,) = free_ports(1)
    log = open(Path(log_dir) / "s3-server.log", "wb")
    process = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    env = {**RAY_ENV, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    try:
        wait_for_port(port, process)
        import pyarrow.fs as pafs

        filesystem = pafs.S3FileSystem(endpoint_override=endpoint, access_key="testing", secret_key="testing",
                                       region="us-east-1", scheme="http", allow_bucket_creation=True)
        for bucket in buckets:
            filesystem.create_dir(bucket)
        yield S3Server(endpoint, env)
    finally:
        _stop_group(process, seconds=10)
        log.close()
