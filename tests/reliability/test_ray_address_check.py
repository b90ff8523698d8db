"""--ray-address of a cluster that does not answer fails within a bounded, documented time
(runners/timeouts.py: 15 s by default, $EMBEDPIPE_RAY_CONNECT_TIMEOUT_S) with one line, instead of
ray.init waiting for minutes; nothing is written. The real-cluster case (the check lets a live head
through) is tests/encode/test_ray_runner.py::test_encode_joins_a_running_cluster."""

import http.server
import socket
import threading
from contextlib import contextmanager

import pytest

from embedpipe.encode import encode_corpus
from embedpipe.encode.runners.ray_cluster import check_ray_answers
from embedpipe.encode.runners.timeouts import DEFAULT_CONNECT_TIMEOUT_S
from embedpipe.errors import EmbedpipeError
from tests.helpers import assert_one_line_error, run_cli, snapshot, write_corpus
from tests.reliability.support import by_id, job

TIMEOUT_S = 2.0


@contextmanager
def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    yield f"127.0.0.1:{port}"


@contextmanager
def silent_listener():
    """A port whose kernel accepts connections but whose owner never reads or writes."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    try:
        yield f"127.0.0.1:{s.getsockname()[1]}"
    finally:
        s.close()


@contextmanager
def http_server():
    """A port that speaks, but HTTP/1 (a dashboard URL given by mistake)."""
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def grpc_but_not_ray():
    """A gRPC server that knows no Ray service."""
    from concurrent import futures

    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)


CASES = {"closed port": (closed_port, "nothing listens there"),
         "accepts, never speaks": (silent_listener, f"no Ray answered within {TIMEOUT_S:g} s"),
         "speaks HTTP/1": (http_server, "no Ray answers there"),
         "speaks gRPC, not Ray": (grpc_but_not_ray, "not as a Ray cluster's GCS")}


@pytest.mark.parametrize("case", list(CASES))
def test_an_address_where_no_ray_answers_is_refused_by_the_bounded_check(case, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDPIPE_RAY_CONNECT_TIMEOUT_S", str(TIMEOUT_S))
    server, says = CASES[case]
    corpus = write_corpus(tmp_path / "c.parquet")
    encode_corpus(job(tiny_model_dir, corpus, tmp_path / "earlier"))           # an earlier output stays as it is
    before = snapshot(tmp_path)
    # Each message comes from check_ray_answers, which runs before ray.init (that would wait minutes)
    # and waits at most $EMBEDPIPE_RAY_CONNECT_TIMEOUT_S: the silent listener's says it waited TIMEOUT_S.
    with server() as address:
        assert_one_line_error(run_cli("encode", corpus, "--model", tiny_model_dir, "--runner", "ray",
                                      "--ray-address", address, "--out", tmp_path / "v"),
                              f"cannot join the Ray cluster at {address}", says)
        with pytest.raises(EmbedpipeError, match=says):
            encode_corpus(job(tiny_model_dir, corpus, tmp_path / "v2", runner="ray", ray_address=address))
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("address", ["localhost", "10.0.0.5:port", ":6379", "ray://nohost"])
def test_an_address_that_is_not_host_port_is_one_line(address, tiny_model_dir, tmp_path):
    corpus = write_corpus(tmp_path / "c.parquet")
    assert_one_line_error(run_cli("encode", corpus, "--model", tiny_model_dir, "--runner", "ray",
                                  "--ray-address", address, "--out", tmp_path / "v"), "is not host:port")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.parquet"]


def test_ray_client_addresses_are_checked_too():
    with silent_listener() as address, pytest.raises(EmbedpipeError, match="no gRPC server answered within 1 s"):
        check_ray_answers(f"ray://{address}", timeout=1)


def test_the_default_bound_is_the_documented_one(monkeypatch):
    from embedpipe.encode.runners.timeouts import connect_timeout

    monkeypatch.delenv("EMBEDPIPE_RAY_CONNECT_TIMEOUT_S", raising=False)
    monkeypatch.delenv("EMBEDPIPE_RAY_CONNECT_TIMEOUT", raising=False)
    assert connect_timeout() == DEFAULT_CONNECT_TIMEOUT_S == 15
    monkeypatch.setenv("EMBEDPIPE_RAY_CONNECT_TIMEOUT_S", "soon")
    with pytest.raises(EmbedpipeError, match="EMBEDPIPE_RAY_CONNECT_TIMEOUT_S must be a number"):
        connect_timeout()


@pytest.mark.slow
def test_a_process_already_connected_to_ray_checks_the_address_it_is_given(ray_cluster, tiny_model_dir, tmp_path,
                                                                          monkeypatch):
    """In-process (a notebook, this test session) the open Ray connection is used, but an address where
    no Ray answers is still refused in one line rather than quietly ignored; the same cluster under
    another spelling of its address is joined."""
    monkeypatch.setenv("EMBEDPIPE_RAY_CONNECT_TIMEOUT_S", str(TIMEOUT_S))
    corpus = write_corpus(tmp_path / "c.parquet")
    with closed_port() as address, pytest.raises(EmbedpipeError, match="nothing listens there"):
        encode_corpus(job(tiny_model_dir, corpus, tmp_path / "refused", runner="ray", ray_address=address))
    assert not (tmp_path / "refused").exists()
    port = ray_cluster.get_runtime_context().gcs_address.rpartition(":")[2]
    encode_corpus(job(tiny_model_dir, corpus, tmp_path / "v", runner="ray", ray_address=f"localhost:{port}"))
    assert len(by_id(tmp_path / "v")) == 10
