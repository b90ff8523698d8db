"""The Ray cluster a run encodes on: join the one named, or start an embedded local Ray on
loopback and stop it afterwards (``ray_session``), checking first that a named cluster answers.

``ray.init(address=...)`` of an address where nothing answers, or where a port accepts connections
but never speaks Ray, retries for minutes (Ray 2.60: well over two). embedpipe asks the head's GCS
one cheap question first (``GetClusterId``, the call ``ray.init`` itself starts with) with a
deadline of ``connect_timeout()`` seconds, 15 by default (``$EMBEDPIPE_RAY_CONNECT_TIMEOUT_S``), and
turns every way it can fail into one line:

    nothing listens there         "connection refused" at once
    no answer within the deadline  "no Ray answered within 15 s"
    a server that is not a GCS     "answers, but not as a Ray cluster's GCS"

``auto`` (find a cluster started on this machine) is left to Ray, which fails fast when there is
none; ``ray://host:port`` (Ray Client) is checked to answer gRPC at all.

    >>> with ray_session("10.0.0.5:6379") as ray: ray.nodes()     # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from contextlib import contextmanager, redirect_stdout

from ...errors import EmbedpipeError, first_line
from ...signals import keep_handler_across
from .timeouts import connect_timeout

log = logging.getLogger(__name__)


@contextmanager
def ray_session(address: str | None, dashboard: bool = False):
    """Join the cluster at ``address``, or start an embedded local Ray on loopback (no dashboard
    unless ``dashboard``, then on 127.0.0.1 too); yield ``ray``. A process already connected to Ray
    keeps that connection (and it is not shut down here)."""
    import ray

    if ray.is_initialized():
        if address:
            _check_connected_to(ray, address)
        yield ray
        return
    # Ray's own warnings (token auth, progress bars) are noise for a CLI user; errors still show.
    quiet = dict(log_to_driver=False, logging_level=logging.ERROR, include_dashboard=dashboard)
    if dashboard:
        quiet["dashboard_host"] = "127.0.0.1"
    try:
        # ray.init installs SIGTERM handlers that exit at once (no finished shard kept, C++ stack
        # lines printed); embedpipe's (signals.py) is put back so SIGTERM stops a run like Ctrl-C.
        with keep_handler_across():
            if address:
                check_ray_answers(address)  # ray.init would wait minutes on an address where no Ray answers
                ray.init(address=address, **quiet)
            else:
                # At least 2 logical CPUs: two actors even on a 1-core machine (one reading while one encodes).
                ray.init(address="local", num_cpus=max(2, os.cpu_count() or 1), _node_ip_address="127.0.0.1",
                         **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "an embedded local Ray"
        raise EmbedpipeError(f"cannot start or join {where}: {first_line(e)}") from None
    # Ray prints what the cluster reports to the driver (a raylet that died, a worker's error) on
    # sys.stdout from a thread of its own; stdout is for results (`index --json` must parse), so for the
    # session's life, until shutdown has stopped that thread, those lines go to stderr with Ray's logs.
    with redirect_stdout(sys.stderr):
        try:
            yield ray
        finally:
            if not address:
                _stop_autoscaler_monitor(ray)
            ray.shutdown()


def _check_connected_to(ray, address: str) -> None:
    """A process already connected to Ray (a notebook, a test session) keeps that connection; an
    address naming another cluster, or where no Ray answers, is refused rather than ignored."""
    check_ray_answers(address)
    if address == "auto" or address.startswith("ray://"):
        return
    current = ray.get_runtime_context().gcs_address
    if _endpoint(current) != _endpoint(address):
        raise EmbedpipeError(f"this process is already connected to the Ray cluster at {current}, not {address}; "
                             "call ray.shutdown() first, or run in a fresh process")


def _endpoint(address: str) -> tuple[str, str]:
    """(host, port) with every address of this machine as one host: Ray reports its GCS at the
    node's own IP even when it was named as 127.0.0.1 or localhost."""
    host, _, port = address.rpartition(":")
    try:
        host = socket.gethostbyname(host)
        with socket.socket() as probe:
            probe.bind((host, 0))  # only an address of this machine can be bound
        return "this machine", port
    except OSError:
        return host, port


def _stop_autoscaler_monitor(ray) -> None:
    """Kill the embedded Ray's autoscaler monitor (idle on one node) before ``ray.shutdown``: Ray
    sends it SIGTERM, which it ignores, and waits a full second before killing it (Ray 2.60)."""
    try:
        for info in ray._private.worker._global_node.all_processes.get("monitor", []):
            info.process.kill()
    except Exception:  # Ray's internals moved: shutdown simply takes the second
        log.debug("autoscaler monitor not found; ray.shutdown will stop it")


def check_ray_answers(address: str, timeout: float | None = None) -> None:
    """Raise an EmbedpipeError in at most about ``timeout`` seconds unless a Ray GCS (or, for
    ``ray://``, a gRPC server) answers at ``address``."""
    import grpc

    timeout = connect_timeout() if timeout is None else timeout
    if address == "auto":
        return
    client = address.startswith("ray://")
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise EmbedpipeError(f"Ray address {address!r} is not host:port (e.g. 10.0.0.5:6379, or ray://host:10001 "
                             "for Ray Client)", fields=("ray_address",))
    where = f"the Ray cluster at {address}"
    channel = grpc.insecure_channel(target)
    try:
        if client:
            try:
                grpc.channel_ready_future(channel).result(timeout=timeout)
            except grpc.FutureTimeoutError:
                raise EmbedpipeError(f"cannot join {where}: no gRPC server answered within {timeout:g} s") from None
            return
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        try:
            stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=timeout)
        except grpc.RpcError as e:
            _explain(e, where, timeout)
    finally:
        channel.close()


def _explain(error, where: str, timeout: float) -> None:
    """Raise for the gRPC failures that mean no Ray answers; return for those that show one does
    (an authentication refusal is Ray answering: ``ray.init`` then says what it needs)."""
    import grpc

    code = error.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        detail = error.details() or ""
        if "refused" in detail.lower():
            raise EmbedpipeError(f"cannot join {where}: nothing listens there (connection refused)") from None
        raise EmbedpipeError(f"cannot join {where}: no Ray answers there ({first_line(detail) or 'unavailable'})"
                             ) from None
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        raise EmbedpipeError(f"cannot join {where}: no Ray answered within {timeout:g} s (is it the head's GCS "
                             "address, host:6379 by default?)") from None
    if code in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
        raise EmbedpipeError(f"cannot join {where}: something answers there, but not as a Ray cluster's GCS "
                             "(the head's address is host:6379 by default)") from None
