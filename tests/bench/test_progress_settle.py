"""The bench's waits for deferred work (detection's lag, the rollup queues) before half load."""

from __future__ import annotations

import io
from collections.abc import Iterator

from rich.console import Console

from maillage.bench.progress import Progress
from maillage.bench.report import Dashboard


def _progress() -> Progress:
    ui = Dashboard(Console(file=io.StringIO()))
    return Progress(db_url="postgresql://unused", ui=ui, quick=True, device_pks={}, counters=None)


def _feed(values: list[int]) -> Iterator[int]:
    yield from values
    while True:
        yield values[-1]


def test_settles_when_the_work_is_done() -> None:
    left = _feed([900, 400, 0])
    waited, rest, settled = _progress().settle("t", "entries", lambda: next(left), steady_s=5)
    assert (rest, settled) == (0, True)


def test_settles_on_a_steady_level_left_by_live_traffic() -> None:
    left = _feed([900, 300, 120])
    waited, rest, settled = _progress().settle("t", "entries", lambda: next(left), steady_s=1.5)
    assert (rest, settled) == (120, True)
    assert waited >= 1.5


def test_still_falling_at_the_timeout_is_not_settled() -> None:
    left = iter(range(10_000, 0, -1))
    waited, rest, settled = _progress().settle("t", "entries", lambda: next(left), steady_s=5,
                                               timeout_s=1.5)
    assert settled is False and rest > 0
