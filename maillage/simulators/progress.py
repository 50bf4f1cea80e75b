"""Live progress (rich) while publishing, and the summary at the end."""

from __future__ import annotations

import logging
import time
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table

from maillage.simulators.payloads import iso
from maillage.simulators.publisher import Stats

log = logging.getLogger(__name__)
LOG_EVERY_S = 30.0


class LiveView:
    """A live table on a terminal; a log line every 30 s otherwise (e.g. under `maillage up`)."""

    def __init__(self, stats: Stats, *, title: str, target_rate: float | None = None) -> None:
        self.stats = stats
        self.title = title
        self.target_rate = target_rate
        self.console = Console(stderr=True)
        self._live: Live | None = None
        self._window: list[tuple[float, int]] = []
        self._last_log = time.monotonic()

    def __enter__(self) -> LiveView:
        if self.console.is_terminal:
            self._live = Live(self._table(), console=self.console, refresh_per_second=4,
                              transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(exc_type, exc, tb)

    def rate(self) -> float:
        """Messages acknowledged per second over the last ~5 s."""
        now = time.monotonic()
        self._window.append((now, self.stats.acked))
        while len(self._window) > 2 and now - self._window[0][0] > 5:
            self._window.pop(0)
        t0, n0 = self._window[0]
        return (self.stats.acked - n0) / (now - t0) if now > t0 else 0.0

    def tick(self) -> None:
        """Refresh the view (called a few times a second by the publish loop)."""
        rate = self.rate()
        if self._live is not None:
            self._live.update(self._table(rate))
        elif time.monotonic() - self._last_log >= LOG_EVERY_S:
            self._last_log = time.monotonic()
            s = self.stats
            log.info("simulated %s: %d published, %d acked, %.0f msg/s, %d errors, "
                     "%d/%d sessions up", iso(s.sim_time) if s.sim_time else "-", s.published,
                     s.acked, rate, s.errors, s.connected, s.sessions)

    def _table(self, rate: float = 0.0) -> Table:
        s = self.stats
        t = Table(title=self.title, show_header=False, min_width=50)
        t.add_column(style="bold")
        t.add_column(justify="right")
        t.add_row("simulated time", iso(s.sim_time) if s.sim_time else "-")
        t.add_row("elapsed", f"{s.elapsed:.0f} s")
        t.add_row("devices", f"{s.devices:,}")
        t.add_row("MQTT sessions up", f"{s.connected:,} / {s.sessions:,}")
        t.add_row("published", f"{s.published:,}")
        t.add_row("acknowledged", f"{s.acked:,}")
        t.add_row("rate (msg/s)", f"{rate:,.0f}" + (f" / target {self.target_rate:,.0f}"
                                                    if self.target_rate else ""))
        t.add_row("errors", f"[red]{s.errors:,}[/red]" if s.errors else "0")
        t.add_row("anomalies labelled", f"{s.labels:,}")
        return t


def summary(stats: Stats) -> dict[str, object]:
    """The end-of-run figures (also printed as JSON by the CLI)."""
    elapsed = max(stats.elapsed, 1e-9)
    return {
        "devices": stats.devices,
        "published": stats.published,
        "acknowledged": stats.acked,
        "errors": stats.errors,
        "error_kinds": stats.error_kinds,
        "elapsed_s": round(elapsed, 2),
        "achieved_msgs_per_s": round(stats.acked / elapsed, 1),
        "bytes": stats.bytes,
        "anomalies_labelled": stats.labels,
        "registration_s": round(stats.registration_s, 1),
        "simulated_until": iso(stats.sim_time) if stats.sim_time else None,
    }
