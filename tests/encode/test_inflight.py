"""Calls in flight (encode/inflight.py): the same vectors as one call at a time, in input order, each
text exactly once; an error from any call is still one clear error, and nothing is left running."""

import signal
import threading
import time

import numpy as np
import pytest

from embedpipe.encode.encoder import BatchPlan, EncoderSpec, TextEncoder, prepare
from embedpipe.encode.inflight import InFlight, default_calls, intra_op_threads
from embedpipe.encode.layers import PoolingGridEncoder
from embedpipe.errors import ConfigError
from tests.helpers import TEXTS


class Recorder:
    """A function that sleeps a varying time (so later items may finish first) and records how many
    calls ran at once and which items it saw."""

    def __init__(self, fail_at: int | None = None):
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.seen: list[int] = []
        self.fail_at = fail_at

    def __call__(self, item: int) -> int:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.seen.append(item)
        try:
            time.sleep(0.001 * ((item * 7) % 5))
            if item == self.fail_at:
                raise ValueError(f"item {item} is bad")
            return item * 10
        finally:
            with self.lock:
                self.running -= 1


@pytest.mark.parametrize("calls", [1, 2, 3, 8])
def test_results_come_in_input_order_each_once_with_at_most_calls_running(calls):
    work = Recorder()
    with InFlight(calls) as in_flight:
        assert list(in_flight.map(work, range(40))) == [i * 10 for i in range(40)]
    assert sorted(work.seen) == list(range(40))
    assert work.most <= calls and (calls == 1 or work.most > 1)
    assert work.running == 0


@pytest.mark.parametrize("calls", [1, 2, 4])
def test_the_first_failing_call_raises_after_the_results_before_it_and_nothing_is_left_running(calls):
    work = Recorder(fail_at=13)
    got = []
    with InFlight(calls) as in_flight:
        with pytest.raises(ValueError, match="item 13 is bad"):
            for result in in_flight.map(work, range(40)):
                got.append(result)
        assert work.running == 0                      # waited for, not left running on the session
    assert got == [i * 10 for i in range(13)]
    assert max(work.seen) < 13 + calls + 1            # at most the calls in flight started past the failure


def test_a_caller_that_stops_early_leaves_nothing_running():
    work = Recorder()
    with InFlight(3) as in_flight:
        results = in_flight.map(work, range(100))
        assert [next(results) for _ in range(5)] == [0, 10, 20, 30, 40]
        results.close()                               # what a signal or an error in the caller does
        assert work.running == 0 and len(work.seen) < 100


@pytest.mark.parametrize("calls", [0, -1, 1.5, True, None])
def test_a_bad_count_is_refused(calls):
    with pytest.raises(ValueError, match="calls in flight must be an integer >= 1"):
        InFlight(calls)


@pytest.mark.parametrize("value", [0, -2, 1.5, "2"])
def test_the_plan_refuses_a_bad_inflight_naming_the_field(value):
    with pytest.raises(ConfigError, match="inflight"):
        BatchPlan(inflight=value)


def test_callers_and_pool_threads_fill_the_cores_without_oversubscribing():
    for threads in range(1, 17):
        calls = default_calls(threads)
        assert 1 <= calls <= threads
        # onnxruntime's pool has intra-op - 1 threads of its own; each caller works too
        assert calls + intra_op_threads(threads, calls) - 1 == threads


@pytest.fixture(scope="module")
def tiny_export(tiny_model_dir):
    return prepare(EncoderSpec(model=str(tiny_model_dir)))


@pytest.mark.parametrize("calls", [2, 3])
@pytest.mark.parametrize("threads", [1, 2])
def test_the_encoder_gives_the_same_vectors_in_order_with_calls_in_flight(tiny_export, calls, threads):
    exported, max_length = tiny_export
    texts = [f"{t} {i}" for i, t in enumerate(TEXTS * 8)]          # many small batches, varied lengths
    one = TextEncoder(exported.path, "mean", True, max_length, BatchPlan(batch_size=3, threads=threads, inflight=1))
    many = TextEncoder(exported.path, "mean", True, max_length,
                       BatchPlan(batch_size=3, threads=threads, inflight=calls))
    assert (one.calls.calls, many.calls.calls) == (1, calls)
    expected, expected_truncated = one.encode_flagging_truncation(texts)
    vectors, truncated = many.encode_flagging_truncation(texts)
    np.testing.assert_array_equal(vectors, expected)   # each batch runs the same kernels: bit-identical
    np.testing.assert_array_equal(truncated, expected_truncated)
    alone = np.stack([one.encode([t])[0] for t in texts[:7]])
    np.testing.assert_allclose(vectors[:7], alone, rtol=1e-4, atol=1e-5)   # row i is text i's vector


def test_the_pooling_grid_encoder_gives_the_same_grid_with_calls_in_flight(tiny_model_dir):
    texts = TEXTS * 4
    pairs = [("mean", 2), ("cls", 2), ("max", 1)]
    grids = []
    for calls in (1, 2):
        encoder = PoolingGridEncoder.load(model=str(tiny_model_dir), normalize=False, max_length=None, layers=[1, 2],
                                          plan=BatchPlan(batch_size=2, threads=2, inflight=calls))
        grids.append(encoder.encode_many(texts, pairs, token_states=True))
    (first, first_tokens), (second, second_tokens) = grids
    for pair in pairs:
        np.testing.assert_array_equal(first[pair], second[pair])
    np.testing.assert_array_equal(first_tokens.states, second_tokens.states)


def test_a_bad_text_is_still_one_error_before_any_call(tiny_export):
    exported, max_length = tiny_export
    encoder = TextEncoder(exported.path, "mean", True, max_length, BatchPlan(threads=2, inflight=2))
    with pytest.raises(Exception, match=r"1 text\(s\) are empty or not strings \(first at position 2\)"):
        encoder.encode(["a", "b", " ", "c"])


def test_sigterm_with_calls_in_flight_stops_the_run_in_one_line_and_the_rerun_has_each_id_once(tiny_model_dir,
                                                                                               tmp_path):
    from tests.reliability.test_signals import stop_and_resume

    stop_and_resume(tiny_model_dir, tmp_path, "local", rows=12_000, signum=signal.SIGTERM,
                    extra_args=["--threads", "2", "--inflight", "3"])
