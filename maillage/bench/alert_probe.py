"""The alert probe: a care coordinator's live stream; times fall publication -> alert on SSE.

It holds `GET /v1/alerts/stream` open with a care coordinator's token of the bench tenant, as a
coordinator's page does. Each fall the `FallProbe` publishes opens an alert whose `first_at` is
the fall's own measurement time (milliseconds, strictly increasing): that is how a streamed
alert is matched to its publication. The probe then resolves it through the API, as a person
would, so the next fall opens an alert of its own (an open fall alert would count the next one
as a repeat, by design); a fall arriving before the resolve is a repeat and is not timed.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import orjson

log = logging.getLogger(__name__)


@dataclass
class AlertProbe:
    """Listens to the alert stream and records fall -> SSE latencies, per phase."""

    api_url: str
    token: str
    device_id: str
    sent: dict[int, tuple[float, str]]
    """Shared with the fall probe: fall measurement ms -> (publication time, phase)."""
    lock: threading.Lock
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="bench-alert-sse", daemon=True)
        self._http = httpx.Client(base_url=self.api_url, timeout=10,
                                  headers={"Authorization": f"Bearer {self.token}"})
        self._response: httpx.Response | None = None
        self._last_id: str | None = None

    def start(self) -> None:
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            headers = {"Last-Event-ID": self._last_id} if self._last_id else {}
            try:
                with self._http.stream("GET", "/v1/alerts/stream", headers=headers,
                                       timeout=httpx.Timeout(10, read=None)) as resp:
                    self._response = resp
                    if resp.status_code != 200:
                        self.errors.append(f"alert stream: HTTP {resp.status_code}")
                        self._stop.wait(1.0)
                        continue
                    for line in resp.iter_lines():
                        if self._stop.is_set():
                            return
                        if line.startswith("id:"):
                            self._last_id = line[3:].strip()
                        elif line.startswith("data:"):
                            self._on_alert(orjson.loads(line[5:]), time.time())
            except (httpx.HTTPError, RuntimeError) as exc:  # closed by stop(), or the API restarting
                if not self._stop.is_set():
                    self.errors.append(f"alert stream: {exc}")
                    self._stop.wait(0.5)

    def _on_alert(self, alert: dict[str, object], seen_at: float) -> None:
        if alert.get("device_id") != self.device_id or alert.get("kind") != "fall":
            return
        if alert.get("state") != "open" or alert.get("action", "opened") not in ("opened", "reopened"):
            return
        first = datetime.fromisoformat(str(alert["first_at"]).replace("Z", "+00:00"))
        with self.lock:
            sent = self.sent.pop(round(first.timestamp() * 1000), None)
        if sent is not None:
            self.latencies.setdefault(sent[1], []).append((seen_at - sent[0]) * 1000)
        try:  # a person resolves a fall: the next one opens its own alert
            self._http.post(f"/v1/alerts/{alert['id']}/resolve", json={"note": "bench"})
        except httpx.HTTPError as exc:
            self.errors.append(f"resolve: {exc}")

    def stop(self) -> None:
        self._stop.set()
        if self._response is not None:
            self._response.close()
        self._thread.join(timeout=5)
        self._http.close()
