"""The maintenance tick's rollup rhythm: passes back to back only on a backlog, waits stretched."""

from __future__ import annotations

import math

import pytest

from maillage.db import rollups
from maillage.processors import maintenance
from maillage.processors.maintenance import Maintenance


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.mark.parametrize(("pass_s", "saturated_passes", "calls", "wait_s"), [
    (0.1, 0, 1, 5.0),    # live traffic refilled the queue: one pass, then the usual 5 s
    (0.1, 2, 3, 5.0),    # a backlog: passes until one is not full
    (4.0, 0, 1, 12.0),   # a long pass: three times as long before the next
    (40.0, 0, 1, 60.0),  # never more than a minute
])
def test_rollup_passes_and_waits(monkeypatch: pytest.MonkeyPatch, pass_s: float,
                                 saturated_passes: int, calls: int, wait_s: float) -> None:
    clock = _Clock()
    monkeypatch.setattr(maintenance.time, "monotonic", clock.monotonic)
    made: list[int] = []

    def fake_refresh(conn: object) -> int:
        made.append(1)
        clock.now += pass_s
        rollups.saturated = len(made) <= saturated_passes
        return 500

    monkeypatch.setattr(rollups, "refresh_rollups", fake_refresh)
    m = Maintenance("postgresql://unused")
    m._due.update(partitions=math.inf, retention=math.inf)
    start = clock.now
    m.tick(None)  # type: ignore[arg-type]
    assert len(made) == calls
    assert m._due["rollups"] == pytest.approx(start + calls * pass_s + wait_s)
    rollups.saturated = False
