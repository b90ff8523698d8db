"""SIGTERM (what Kubernetes, Ray, cron and `timeout` send) stops a run like Ctrl-C: finished shards
are kept, one `Error:` line, exit code 143, nothing published, no Ray process left behind, and the
same command then completes with every id exactly once. Sent to the main process only, as
Kubernetes does to PID 1: whatever Ray started must go down with it."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from embedpipe.encode import encode_corpus
from embedpipe.encode.encoder import EncoderSpec, prepare
from embedpipe.signals import Interrupted, signal_received, stop_on_signals
from tests.reliability.support import assert_same_vectors, by_id, job, manifest, processes_mentioning, write_rows

REPO = Path(__file__).resolve().parents[2]
SHARD_ROWS = 500
RAY_ERROR_LINE = re.compile(r"^\[[^\]]* E \d+ \d+\]|\bERROR\b|core_worker\.cc|\*\*\* SIG|Traceback|\(raylet\)")


def encode_command(corpus, model, out, runner, extra_args=()):
    return [sys.executable, "-m", "embedpipe", "encode", str(corpus), "--model", str(model), "--out", str(out),
            "--runner", runner, "--rows-per-shard", str(SHARD_ROWS), *extra_args]


def signal_after_shards(process, staging: Path, signum: int, shards: int = 2, timeout: float = 240) -> int:
    """Send ``signum`` to the process (not its group) once ``shards`` shards are finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if staging.exists() and len(list(staging.glob("part-*.json"))) >= shards:   # receipts: finished pieces
            process.send_signal(signum)
            return process.wait(timeout=60)
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    pytest.fail("the run ended (or stalled) before the signal could be sent mid-run")


def default_interrupt_handling() -> None:
    """In the child: SIGINT as an interactive shell's foreground job has it. A suite run as a background
    job (`make test &`) ignores SIGINT, the child inherits that, and embedpipe rightly leaves an
    ignored SIGINT ignored (what `cmd &` and nohup'd jobs expect), so Ctrl-C could not be tested."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_and_resume(model, tmp_path, runner, rows, signum=signal.SIGTERM, env_extra=None, extra_args=()):
    """Run encode, signal it mid-run, check the stop, rerun, check the result; returns both runs' stderr."""
    corpus, out, staging = write_rows(tmp_path / "c.parquet", 0, rows), tmp_path / "v", tmp_path / ".v.partial"
    prepare(EncoderSpec(model=str(model)))
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    process = subprocess.Popen(encode_command(corpus, model, out, runner, extra_args), env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=default_interrupt_handling)
    code = signal_after_shards(process, staging, signum)
    first = process.stderr.read() + process.stdout.read()
    name = signal.Signals(signum).name
    assert code == 128 + signum, first
    errors = [line for line in first.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"stopped by {name}" in errors[0] and "finished shard(s) kept" in errors[0], first
    assert not [line for line in first.splitlines() if RAY_ERROR_LINE.search(line)], first
    assert not out.exists(), "the stopped run published a result"
    kept = len(list(staging.glob("part-*.parquet")))        # unfinished attempts' shards are deleted
    assert kept == len(list(staging.glob("part-*.json"))) and f"{kept} finished shard(s)" in errors[0]
    assert not list(tmp_path.glob(".v.lock")), "the lock file outlived the run"
    second = subprocess.run(encode_command(corpus, model, out, runner), env=env, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    m = manifest(out)
    piece_rows = m["shards"][0]["rows"]                     # SHARD_ROWS, or less on Ray (pieces for balance)
    assert 2 <= kept < len(m["shards"]), "the run was not stopped mid-run"
    assert m["last_run"]["reused_shards"] == kept and m["last_run"]["reused_rows"] == kept * piece_rows
    assert m["last_run"]["encoded_rows"] == rows - kept * piece_rows and m["rows"] == rows
    reference = encode_corpus(job(model, corpus, tmp_path / "reference")).out
    assert_same_vectors(by_id(out), by_id(reference))       # every id exactly once (by_id checks), same vectors
    assert not staging.exists()
    return first, second.stderr


def test_sigterm_stops_the_local_runner_keeping_finished_shards(tiny_model_dir, tmp_path):
    stop_and_resume(tiny_model_dir, tmp_path, "local", rows=12_000)


def test_ctrl_c_stops_the_local_runner_the_same_way(tiny_model_dir, tmp_path):
    stop_and_resume(tiny_model_dir, tmp_path, "local", rows=12_000, signum=signal.SIGINT)


@pytest.mark.slow
def test_sigterm_stops_the_ray_runner_leaving_no_ray_process_and_a_clean_rerun(tiny_model_dir, tmp_path):
    """Also: the rerun, a clean Ray run, prints no ERROR line (Ray's constructor-arguments
    false alarm, ray-project/ray#57733, does not fire: the pool's actors have max_restarts=0)."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="epray", dir="/tmp"))    # short: Ray's socket paths are length-limited
    try:
        _, rerun = stop_and_resume(tiny_model_dir, tmp_path, "ray", rows=6_000,
                                   env_extra={"RAY_TMPDIR": str(ray_tmp)})
        noisy = [line for line in rerun.splitlines() if RAY_ERROR_LINE.search(line)]
        assert not noisy, rerun
        deadline = time.monotonic() + 30
        while processes_mentioning(str(ray_tmp)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not processes_mentioning(str(ray_tmp)), "Ray processes outlived the runs"
    finally:
        for pid in processes_mentioning(str(ray_tmp)):    # only processes of this test's own Ray
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_sigterm_through_the_library_raises_interrupted_saying_what_was_kept(tiny_model_dir, tmp_path):
    corpus, out, staging = write_rows(tmp_path / "c.parquet", 0, 12_000), tmp_path / "v", tmp_path / ".v.partial"
    prepare(EncoderSpec(model=str(tiny_model_dir)))

    def terminate_once_two_shards_are_done():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(staging.glob("part-*.json"))) < 2:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    watcher = threading.Thread(target=terminate_once_two_shards_are_done, daemon=True)
    watcher.start()
    with pytest.raises(Interrupted) as stopped:
        encode_corpus(job(tiny_model_dir, corpus, out, rows_per_shard=SHARD_ROWS))
    watcher.join()
    assert stopped.value.exit_code == 143 and "finished shard(s) kept in" in str(stopped.value)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "the library left its handler installed"
    assert not out.exists() and list(staging.glob("part-*.parquet"))
    result = encode_corpus(job(tiny_model_dir, corpus, out, rows_per_shard=SHARD_ROWS))
    assert result.manifest["last_run"]["reused_shards"] >= 2 and result.manifest["rows"] == 12_000
    assert len(by_id(out)) == 12_000


def test_a_handler_the_caller_installed_is_left_alone():
    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with stop_on_signals():
            assert signal.getsignal(signal.SIGTERM) is mine
            os.kill(os.getpid(), signal.SIGTERM)         # handled by the caller's handler: no Interrupted
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_only_the_first_signal_raises_so_cleanup_is_not_cut_short():
    cleaned = False
    with pytest.raises(Interrupted):
        with stop_on_signals():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)                               # the handler raises before this ends
            finally:
                os.kill(os.getpid(), signal.SIGTERM)         # a second SIGTERM during cleanup: ignored
                cleaned = True
    assert cleaned


def test_a_signal_a_library_wrapped_in_its_own_error_is_still_known():
    """A library (Ray, waiting on its actors) may turn the KeyboardInterrupt into an error of its own: the
    signal is remembered, and the job and the CLI report the stop as that signal (exit 128 + N)."""
    with pytest.raises(RuntimeError):
        with stop_on_signals():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
            except Interrupted:
                raise RuntimeError("a library's own error") from None
    assert signal_received() == signal.SIGTERM
    with stop_on_signals():                                 # the next run starts clean
        assert signal_received() is None
