"""Progress lines: the rate is measured from the first work done, so a start-up stall is not a rate."""

import logging
import time

from embedpipe.progress import Progress


def test_a_start_up_stall_is_reported_as_start_up_not_as_a_slow_rate(caplog):
    caplog.set_level(logging.INFO, logger="embedpipe")
    with Progress(1000, "rows encoded", every_s=0) as progress:
        time.sleep(0.5)               # a runner starting up: nothing done yet
        progress.update(100)
        first = caplog.records[-1].getMessage()
        time.sleep(0.1)
        progress.update(100)
        second = caplog.records[-1].getMessage()
    assert "rows/s" not in first and "ETA" not in first
    assert "first rows after" in first and "(start-up)" in first
    # 100 rows in ~0.1 s since the first batch: ~1000 rows/s, not the ~330 rows/s counted from the start
    rate = float(second.split(", ")[1].split(" rows/s")[0].replace(",", ""))
    assert rate > 500, second
    assert "ETA" in second


def test_one_batch_gets_its_overall_rate_at_the_end(caplog):
    caplog.set_level(logging.INFO, logger="embedpipe")
    with Progress(100, "rows encoded", every_s=3600) as progress:
        progress.update(100)
    assert "100/100 rows (100%)" in caplog.records[-1].getMessage()
    assert "rows/s" in caplog.records[-1].getMessage()
