"""Check that a Ray cluster answers at an address before ``ray.init`` waits on it.

``ray.init(address=...)`` of an address where nothing answers, or where a port accepts connections
but never speaks Ray, retries for minutes (Ray 2.60: well over two). embedpipe asks the head's GCS
one cheap question first (``GetClusterId``, the call ``ray.init`` itself starts with) with a
deadline of ``connect_timeout()`` seconds, 15 by default (``$EMBEDPIPE_RAY_CONNECT_TIMEOUT``), and
turns every way it can fail into one line:

    nothing listens there         "connection refused" at once
    no answer within the deadline  "no Ray answered within 15 s"
    a server that is not a GCS     "answers, but not as a Ray cluster's GCS"

``auto`` (find a cluster started on this machine) is left to Ray, which fails fast when there is
none; ``ray://host:port`` (Ray Client) is checked to answer gRPC at all.
"""

from __future__ import annotations

import os

from ...errors import EmbedpipeError, first_line

DEFAULT_CONNECT_TIMEOUT_S = 15.0


def connect_timeout() -> float:
    raw = os.environ.get("EMBEDPIPE_RAY_CONNECT_TIMEOUT")
    try:
        value = float(raw) if raw else DEFAULT_CONNECT_TIMEOUT_S
    except ValueError:
        raise EmbedpipeError(f"$EMBEDPIPE_RAY_CONNECT_TIMEOUT must be a number of seconds, got {raw!r}") from None
    return value if value > 0 else DEFAULT_CONNECT_TIMEOUT_S


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
