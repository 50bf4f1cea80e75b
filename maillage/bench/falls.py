"""The fall probe: a care pendant publishing falls; times publication -> anomaly row stored.

A dedicated `care_button` device publishes a `fall_detected` event `hz` times a second while a
phase is set; a poller queries the device's `fall` anomalies every `poll_s` and stamps each new
one with the time the query returned (an upper bound, as for the reading probe). Each fall has
its own measurement time (milliseconds, strictly increasing), which is the anomaly's start: that
is how a row is matched to its publication.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion


@dataclass
class FallProbe:
    """Publishes falls during a phase and records their latency to the `anomalies` table."""

    host: str
    port: int
    username: str
    password: str
    topic: str
    database_url: str
    tenant: str
    device_id: str
    hz: float = 2.0
    poll_s: float = 0.02
    phase: str | None = None
    latencies: dict[str, list[float]] = field(default_factory=dict)
    published: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self.lock = threading.Lock()
        self._sent: dict[int, tuple[float, str]] = {}  # measurement ms -> (publication time, phase)
        self.alert_sent: dict[int, tuple[float, str]] = {}  # the same, for the alert probe
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{self.username}-falls",
                                   protocol=mqtt.MQTTv311, clean_session=True)
        self._client.username_pw_set(self.username, self.password)
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._client.connect(self.host, self.port, keepalive=60)
        self._client.loop_start()
        self._threads = [threading.Thread(target=self._publish_loop, name="bench-falls-pub", daemon=True),
                         threading.Thread(target=self._poll_loop, name="bench-falls-poll", daemon=True)]
        for t in self._threads:
            t.start()

    def _publish_loop(self) -> None:
        last_ms = 0
        while not self._stop.wait(1.0 / self.hz):
            phase = self.phase
            if phase is None:
                continue
            t = time.time()
            last_ms = max(int(t * 1000), last_ms + 1)
            ts = datetime.fromtimestamp(last_ms / 1000, UTC).isoformat(timespec="milliseconds")
            payload = orjson.dumps({"ts": ts.replace("+00:00", "Z"), "event": "fall_detected"})
            with self.lock:
                self._sent[last_ms] = self.alert_sent[last_ms] = (t, phase)
            info = self._client.publish(self.topic, payload, qos=1)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                self.published += 1
            else:
                self.errors.append(f"fall publish failed: {info.rc}")

    def _poll_loop(self) -> None:
        last = datetime(2000, 1, 1, tzinfo=UTC)
        conn: psycopg.Connection | None = None
        while not self._stop.wait(self.poll_s):
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.database_url, autocommit=True)
                rows = conn.execute(
                    "SELECT start_ts FROM anomalies WHERE tenant_id = %s AND device_id = %s "
                    "AND kind = 'fall' AND start_ts > %s ORDER BY start_ts",
                    (self.tenant, self.device_id, last)).fetchall()
                seen_at = time.time()
            except psycopg.Error as exc:
                self.errors.append(f"fall poll: {exc}")
                if conn is not None:
                    conn.close()
                self._stop.wait(0.5)
                continue
            if not rows:
                continue
            last = rows[-1][0]
            with self.lock:
                for (start,) in rows:
                    sent = self._sent.pop(round(start.timestamp() * 1000), None)
                    if sent is not None:
                        self.latencies.setdefault(sent[1], []).append((seen_at - sent[0]) * 1000)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self.phase = None
        time.sleep(1.0)  # the last falls' rows
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self._client.disconnect()
        self._client.loop_stop()
