"""Actor faults on a real local Ray: an encoder actor killed mid-run is restarted and the output is
still exactly-once; a row that fails deterministically fails the job at once, naming its id."""

import os
import re
import signal
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.encode import encode_corpus
from tests.helpers import assert_one_line_error as one_line_error
from tests.helpers import run_cli as cli
from tests.reliability.support import assert_same_vectors, by_id, job, processes_mentioning, write_rows

pytestmark = pytest.mark.slow


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def encoder_actor_pids(ray) -> list[int]:
    """Encoder actors of *this* test session's Ray (children of its raylet), never anyone else's."""
    raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
    return [pid for pid in processes_mentioning("ShardWriter") if parent_pid(pid) == raylet]


def test_an_actor_killed_mid_run_is_restarted_and_output_stays_exactly_once(tiny_model_dir, tmp_path, ray_cluster):
    corpus, out = write_rows(tmp_path / "c.parquet", 0, 6000), tmp_path / "v"
    killed = []

    def kill_one_actor_once_work_is_under_way():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            if list(tmp_path.glob(".v.partial/part-*")):
                pids = encoder_actor_pids(ray_cluster)
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one_actor_once_work_is_under_way)
    killer.start()
    try:
        encode_corpus(job(tiny_model_dir, corpus, out, runner="ray", workers=2, window=100, rows_per_shard=200))
    finally:
        killer.join()
    assert killed, "no encoder actor was killed"
    assert_same_vectors(by_id(out), by_id(encode_corpus(job(tiny_model_dir, corpus, tmp_path / "ref")).out))


def test_a_row_that_always_fails_fails_the_job_naming_its_id(tiny_model_dir, tmp_path, ray_cluster):
    texts = pa.array([b"a cat", b"a dog", b"bad \xff\xfe bytes", b"a bird"] * 50, pa.binary()).view(pa.string())
    ids = [f"doc-{i}" for i in range(200)]
    pq.write_table(pa.table({"id": ids, "text": texts}), tmp_path / "c.parquet")
    result = cli("encode", tmp_path / "c.parquet", "--model", tiny_model_dir, "--out", tmp_path / "v",
                 "--empty-text", "skip", "--rows-per-shard", "10")
    line = one_line_error(result, "row(s) hold text that is not valid UTF-8 (ids: 'doc-", "fix or drop them")
    named = [int(n) for n in re.findall(r"'doc-(\d+)'", line)]
    assert named and all(n % 4 == 2 for n in named), line   # whichever actor failed first: only bad rows named
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.parquet"]     # nothing published, nothing staged


def test_actors_that_keep_dying_fail_the_job_instead_of_retrying_forever(tiny_model_dir, tmp_path, ray_cluster):
    corpus = write_rows(tmp_path / "c.parquet", 0, 2000)
    stop, killed = threading.Event(), []

    def kill_every_encoder_actor():
        deadline = time.monotonic() + 120    # with unbounded restarts the job would then finish: a failure, not a hang
        while not stop.is_set() and time.monotonic() < deadline:
            for pid in encoder_actor_pids(ray_cluster):
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)

    killer = threading.Thread(target=kill_every_encoder_actor)
    killer.start()
    try:
        result = cli("encode", corpus, "--model", tiny_model_dir, "--out", tmp_path / "v", "--workers", "2",
                     "--runner", "ray")
    finally:
        stop.set()
        killer.join()
    one_line_error(result, "encoding failed on Ray: encoder actors kept dying", "gave up after 3 restarts")
    assert len(killed) >= 2 and not (tmp_path / "v").exists()
