"""The storage processor's slow-batch report: where the time went, and not once per batch."""

from __future__ import annotations

import logging

import pytest

from maillage.processors.storage import Batch, StorageSink


def _slow(started: float) -> Batch:
    return Batch(rows=10, oldest_rx_us=int((started - 2.0) * 1e6), opened=started - 0.5)


def test_slow_batches_are_reported_with_their_split_at_most_every_10_s(caplog: pytest.LogCaptureFixture) -> None:
    sink = StorageSink("postgresql://unused")
    with caplog.at_level(logging.INFO, logger="maillage.processors.storage"):
        sink._observe(_slow(1000.0), 1000.0, 0.1, 0.09)
        sink._observe(_slow(1001.0), 1001.0, 0.1, 0.09)
        sink._observe(Batch(rows=5, oldest_rx_us=int(1002.0e6), opened=1002.0), 1002.0, 0.01, 0.01)
        sink._observe(_slow(1011.0), 1011.0, 0.1, 0.09)
    lines = [r.getMessage() for r in caplog.records if "slow batch" in r.getMessage()]
    assert len(lines) == 2
    # the oldest reading: 1.5 s until the storage process had it, 0.5 s waiting, 0.1 s writing
    assert "(1 since the last report)" in lines[0] and "2100 ms after" in lines[0]
    assert "1500 until this process had it" in lines[0] and "500 waiting" in lines[0]
    assert "(2 since the last report)" in lines[1]
