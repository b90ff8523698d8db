"""Round 3, classes 4 (object-store faults) and 13: a bucket that does not exist, a server that is not
running, credentials refused, and a server that accepts connections and never answers each end in one
`Error:` line naming the location, in bounded time; SIGTERM stops a run blocked in such a call."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from embedpipe.testing.services import free_ports, s3_server
from tests.helpers import assert_one_line_error, run_cli, write_corpus

AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
       "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


@contextmanager
def silent_server():
    """A TCP server on loopback that accepts every connection and never sends a byte: a stalled store."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held = []

    def accept():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()
        for connection in held:
            connection.close()


def store_commands(model, corpus, tmp_path):
    """Every command that reads or writes a URL, against bucket ``b``."""
    return {
        "encode corpus": ["encode", "s3://b/c.parquet", "--model", model, "--runner", "local",
                          "--out", tmp_path / "v1"],
        "encode out": ["encode", corpus, "--model", model, "--runner", "local", "--out", "s3://b/v"],
        "index vectors": ["index", "s3://b/v", "--out", tmp_path / "i"],
    }


@pytest.fixture
def s3(tmp_path, monkeypatch):
    with s3_server(tmp_path) as server:
        for name, value in server.env.items():
            if name.startswith("AWS_"):
                monkeypatch.setenv(name, value)
        yield server


def test_a_bucket_that_does_not_exist(s3, tiny_model_dir, tmp_path):
    corpus = write_corpus(tmp_path / "c.parquet")
    for args in store_commands(tiny_model_dir, corpus, tmp_path).values():
        args = [str(a).replace("s3://b/", "s3://no-such-bucket/") for a in args]
        line = assert_one_line_error(run_cli(*args), "s3://no-such-bucket/")
        assert "allow_bucket_creation" not in line, line            # advice no user can follow
    line = assert_one_line_error(run_cli(*[str(a).replace("s3://b/", "s3://no-such-bucket/")
                                           for a in store_commands(tiny_model_dir, corpus, tmp_path)["encode out"]]))
    assert "create the bucket first" in line
    assert not (tmp_path / "v1").exists() and not (tmp_path / "i").exists()


def test_a_server_that_is_not_running(tiny_model_dir, tmp_path, monkeypatch):
    (port,) = free_ports(1)
    unreachable = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "EMBEDPIPE_STORE_TIMEOUT_S": "2"}
    for name, value in {**AWS, **unreachable}.items():
        monkeypatch.setenv(name, value)
    corpus = write_corpus(tmp_path / "c.parquet")
    for name, args in store_commands(tiny_model_dir, corpus, tmp_path).items():
        started = time.monotonic()
        assert_one_line_error(run_cli(*args), "s3://b/")
        assert time.monotonic() - started < 60, name


def test_credentials_the_store_refuses(tmp_path, tiny_model_dir, monkeypatch):
    # moto checks credentials from its first request on: no access key is known to it
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "0")
    with s3_server(tmp_path, buckets=()) as server:
        for name, value in server.env.items():
            if name.startswith("AWS_"):
                monkeypatch.setenv(name, value)
        corpus = write_corpus(tmp_path / "c.parquet")
        for args in store_commands(tiny_model_dir, corpus, tmp_path).values():
            line = assert_one_line_error(run_cli(*args), "s3://b/")
            assert "ACCESS_DENIED" in line or "Access Key" in line or "Forbidden" in line, line


def test_a_stalled_store_times_out(tiny_model_dir, tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "c.parquet")
    with silent_server() as endpoint:
        for name, value in {**AWS, "AWS_ENDPOINT_URL": endpoint, "EMBEDPIPE_STORE_TIMEOUT_S": "1"}.items():
            monkeypatch.setenv(name, value)
        args = store_commands(tiny_model_dir, corpus, tmp_path)["encode out"]
        started = time.monotonic()
        assert_one_line_error(run_cli(*args), "s3://b/v")
        assert time.monotonic() - started < 45     # 3 attempts of 1 s each, and the SDK's backoff


def test_sigterm_stops_a_run_blocked_on_a_stalled_store(tiny_model_dir, tmp_path):
    corpus = write_corpus(tmp_path / "c.parquet")
    with silent_server() as endpoint:
        env = {**os.environ, **AWS, "AWS_ENDPOINT_URL": endpoint, "EMBEDPIPE_STORE_TIMEOUT_S": "600",
               "EMBEDPIPE_STOP_GRACE_S": "2"}
        process = subprocess.Popen([sys.executable, "-m", "embedpipe", "encode", str(corpus), "--model",
                                    str(tiny_model_dir), "--runner", "local", "--out", "s3://b/v"],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(5)                     # the model loads, then the run blocks on the store
            assert process.poll() is None, process.communicate()
            sent = time.monotonic()
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
        assert time.monotonic() - sent < 20
    assert process.returncode == 143, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "stopped by SIGTERM" in errors[0], stderr
    assert "Traceback" not in stderr


def test_an_s3_url_without_an_endpoint_or_network(tmp_path, monkeypatch):
    # no AWS_ENDPOINT_URL: pyarrow asks AWS itself for the bucket's region, and this machine has no network
    for name in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EMBEDPIPE_STORE_TIMEOUT_S", "1")
    assert_one_line_error(run_cli("index", "s3://b/v", "--out", tmp_path / "i"), "s3://b/v")


def test_timeout_settings_are_checked(tmp_path, monkeypatch):
    (port,) = free_ports(1)
    for name, value in {**AWS, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("EMBEDPIPE_STORE_TIMEOUT_S", "inf")
    assert_one_line_error(run_cli("index", "s3://b/v", "--out", tmp_path / "i"), "EMBEDPIPE_STORE_TIMEOUT_S")
    monkeypatch.setenv("EMBEDPIPE_STORE_TIMEOUT_S", "1")
    monkeypatch.setenv("EMBEDPIPE_STOP_GRACE_S", "nan")
    assert_one_line_error(run_cli("index", "s3://b/v", "--out", tmp_path / "i"), "EMBEDPIPE_STOP_GRACE_S")
    assert Path(tmp_path).exists()
