"""Rejected messages logged without flooding the log (the gateway's rejections, summed per window)."""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class RejectLog:
    """Rejections logged without flooding: per reason, the first `burst` of each `window_s` window
    are logged one by one (with topic and detail); the rest are counted and summed up in one line
    per window. At 10,000 bad messages/s that is a handful of lines every 10 s, not 100,000."""

    def __init__(self, logger: logging.Logger = log, *, window_s: float = 10.0, burst: int = 5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.burst = burst
        self._log = logger
        self._clock = clock
        self._start = clock()
        self._seen: collections.Counter[str] = collections.Counter()
        self._suppressed: collections.Counter[str] = collections.Counter()

    def rejected(self, reason: str, topic: str, detail: str,
                 error: BaseException | None = None) -> None:
        """Note one rejection; log it unless its reason already filled this window's burst."""
        self.flush()
        key = "parser_failure" if error is not None else reason
        self._seen[key] += 1
        if self._seen[key] > self.burst:
            self._suppressed[key] += 1
        elif error is not None:
            self._log.error("parser failure on %s (kept in the DLQ as %s): %s", topic, reason,
                            detail, exc_info=error)
        else:
            self._log.warning("rejected %s from %s: %s", reason, topic, detail)

    def flush(self) -> None:
        """Close the window when it is over: one summary line for what was not logged."""
        now = self._clock()
        if now - self._start < self.window_s:
            return
        if self._suppressed:
            counts = ", ".join(f"{r}={n}" for r, n in self._suppressed.most_common())
            self._log.warning("%d more rejected messages in the last %.0f s (not logged one by "
                              "one): %s", sum(self._suppressed.values()), now - self._start, counts)
        self._start = now
        self._seen.clear()
        self._suppressed.clear()
