"""Rejections are logged without flooding: first ones one by one, then a count per reason."""

from __future__ import annotations

import logging

import pytest

from maillage.ingest.reject_log import RejectLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_of_rejections_gives_a_few_lines(caplog: pytest.LogCaptureFixture) -> None:
    """10,000 bad messages in one window: 5 lines per reason, then one summary line."""
    clock = Clock()
    logger = logging.getLogger("test.rejects")
    rejects = RejectLog(logger, window_s=10, burst=5, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.rejects"):
        for i in range(10_000):
            reason = "bad_checksum" if i % 4 else "malformed"
            rejects.rejected(reason, f"maillage/t/d{i}/up/tic", f"detail {i}")
        assert len(caplog.records) == 10
        assert caplog.records[0].getMessage() == "rejected malformed from maillage/t/d0/up/tic: detail 0"
        clock.now += 10
        rejects.flush()
    assert len(caplog.records) == 11
    summary = caplog.records[-1].getMessage()
    assert summary.startswith("9990 more rejected messages in the last 10 s")
    assert "bad_checksum=7495" in summary and "malformed=2495" in summary


def test_each_window_starts_afresh_and_quiet_windows_say_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    logger = logging.getLogger("test.rejects2")
    rejects = RejectLog(logger, window_s=10, burst=2, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.rejects2"):
        for _ in range(3):
            rejects.rejected("too_large", "t", "d")
        clock.now += 11
        rejects.rejected("too_large", "t", "d")  # closes the first window, logged again
        clock.now += 11
        rejects.flush()  # nothing was suppressed in the second window: no summary
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["rejected too_large from t: d", "rejected too_large from t: d",
                        "1 more rejected messages in the last 11 s (not logged one by one): too_large=1",
                        "rejected too_large from t: d"]


def test_parser_failures_are_logged_as_errors_with_traceback(caplog: pytest.LogCaptureFixture) -> None:
    rejects = RejectLog(logging.getLogger("test.rejects3"), clock=Clock())
    try:
        raise KeyError("x")
    except KeyError as exc:
        error = exc
    with caplog.at_level(logging.WARNING, logger="test.rejects3"):
        rejects.rejected("malformed", "maillage/t/d/up/json", "the parser failed", error)
    assert caplog.records[0].levelno == logging.ERROR and caplog.records[0].exc_info
