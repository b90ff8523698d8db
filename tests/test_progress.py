"""Progress lines: the rate is measured from the first work done, so a start-up stall is not a rate.
The clock is the test's own (a stall of 30 s takes no time here), so the numbers are exact."""

import logging
import types

import pytest

from embedpipe import progress as progress_module
from embedpipe.progress import Progress


@pytest.fixture
def clock(monkeypatch):
    """A monotonic clock the test moves: ``clock.now += 30`` is 30 seconds passing for Progress."""
    clock = types.SimpleNamespace(now=1000.0)
    monkeypatch.setattr(progress_module, "time", types.SimpleNamespace(monotonic=lambda: clock.now))
    return clock


def test_a_start_up_stall_is_reported_as_start_up_not_as_a_slow_rate(caplog, clock):
    caplog.set_level(logging.INFO, logger="embedpipe")
    with Progress(1000, "rows encoded", every_s=0) as progress:
        clock.now += 30               # a runner starting up: nothing done yet
        progress.update(100)
        first = caplog.records[-1].getMessage()
        clock.now += 2
        progress.update(100)
        second = caplog.records[-1].getMessage()
    assert first == "rows encoded: 100/1,000 rows (10%), first rows after 30s (start-up), 30s elapsed"
    # 100 rows in the 2 s since the first batch: 50 rows/s, not the 6 rows/s counted from the start
    assert second == "rows encoded: 200/1,000 rows (20%), 50 rows/s, ETA 16s, 32s elapsed"


def test_one_batch_gets_its_overall_rate_at_the_end(caplog, clock):
    caplog.set_level(logging.INFO, logger="embedpipe")
    with Progress(100, "rows encoded", every_s=3600) as progress:
        clock.now += 4
        progress.update(100)
    assert caplog.records[-1].getMessage() == "rows encoded: 100/100 rows (100%), 25 rows/s, 4s elapsed"
