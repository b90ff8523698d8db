"""kill -9 of a real `embedpipe encode` process group in mid-run, then the same command again:
it finishes, reuses the shards finished before the kill (and says how many), every id is present
exactly once, the vectors equal an uninterrupted run's, and no Ray process outlives the kill."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from embedpipe.encode import encode_corpus
from embedpipe.encode.encoder import EncoderSpec, prepare
from tests.reliability.support import (
    assert_same_vectors,
    by_id,
    job,
    listening_addresses,
    manifest,
    processes_mentioning,
    write_rows,
)

REPO = Path(__file__).resolve().parents[2]
SHARD_ROWS = 1000


def start_encode(corpus, model, out, runner, env, log):
    command = [sys.executable, "-m", "embedpipe", "encode", str(corpus), "--model", str(model), "--out", str(out),
               "--runner", runner, "--rows-per-shard", str(SHARD_ROWS)]
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def kill_after_shards(process, staging: Path, shards: int, timeout: float = 240) -> int:
    """SIGKILL the whole process group once ``shards`` shards are finished; return how many were."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        finished = len(list(staging.glob("part-*.json"))) if staging.exists() else 0   # receipts: finished pieces
        if finished >= shards:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return finished
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    pytest.fail("the run ended (or stalled) before it could be killed mid-run")


def kill_and_resume(tiny_model_dir, tmp_path, runner, rows, env_extra=None, during=None):
    corpus, out = write_rows(tmp_path / "c.parquet", 0, rows), tmp_path / "v"
    prepare(EncoderSpec(model=str(tiny_model_dir)))      # the export is cached before the timed part starts
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    with open(tmp_path / "first.log", "w") as log:
        process = start_encode(corpus, tiny_model_dir, out, runner, env, log)
        if during:
            during(process)
        finished = kill_after_shards(process, tmp_path / ".v.partial", shards=2)
    assert not out.exists(), "the killed run published a result"
    second = subprocess.run([sys.executable, "-m", "embedpipe", "encode", str(corpus), "--model", str(tiny_model_dir),
                             "--out", str(out), "--runner", runner, "--rows-per-shard", str(SHARD_ROWS)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    m = manifest(out)
    # Mid-run: fewer pieces were finished than the run has (Ray cuts a small corpus into more pieces
    # than rows // SHARD_ROWS, so the count to compare with is the published shards').
    assert finished < len(m["shards"]), "the run was not killed mid-run"
    reused = m["last_run"]["reused_shards"]
    assert (reused >= finished and f"{reused} shard(s)" in second.stderr
            and "interrupted run are reused" in second.stderr)
    piece_rows = m["shards"][0]["rows"]                     # SHARD_ROWS, or less on Ray (pieces for balance)
    assert m["last_run"]["reused_rows"] == reused * piece_rows
    assert m["last_run"]["encoded_rows"] == rows - reused * piece_rows and m["rows"] == rows
    reference = encode_corpus(job(tiny_model_dir, corpus, tmp_path / "reference")).out
    assert_same_vectors(by_id(out), by_id(reference))       # every id once (by_id checks), same vectors
    assert not (tmp_path / ".v.partial").exists()


def test_kill_9_mid_run_then_resume_local(tiny_model_dir, tmp_path):
    kill_and_resume(tiny_model_dir, tmp_path, "local", rows=30_000)


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_on_ray_leaves_no_ray_process(tiny_model_dir, tmp_path):
    ray_tmp = Path(tempfile.mkdtemp(prefix="epray", dir="/tmp"))    # short: Ray's socket paths are length-limited
    listeners = set()

    def watch_ray(process):
        """While the run starts, record what its Ray processes listen on."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if (tmp_path / ".v.partial").exists() and list((tmp_path / ".v.partial").glob("part-*")):
                return
            processes = processes_mentioning(str(ray_tmp))
            listeners.update((processes[pid], ip, port) for pid, ip, port in listening_addresses(processes))
            time.sleep(0.2)

    try:
        kill_and_resume(tiny_model_dir, tmp_path, "ray", rows=12_000, env_extra={"RAY_TMPDIR": str(ray_tmp)},
                        during=watch_ray)
        deadline = time.monotonic() + 30
        while processes_mentioning(str(ray_tmp)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not processes_mentioning(str(ray_tmp)), "Ray processes outlived the killed and the finished run"
        assert listeners, "no Ray process was seen listening"
        # No dashboard web UI unless --ray-dashboard.
        assert not [port for _, _, port in listeners if port == 8265]
    finally:
        for pid in processes_mentioning(str(ray_tmp)):    # only processes of this test's own Ray
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)
