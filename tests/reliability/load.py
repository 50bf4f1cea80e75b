"""A steady QoS 1 load of meters and fall pendants, as real devices on persistent MQTT sessions.

Each meter publishes one reading per tick at a measurement time of its own; each pendant a
`fall_detected` event every `fall_every` ticks, at a time of its own. The load remembers what the
broker acknowledged (PUBACK), so the check at the end is row by row: every acknowledged reading
stored once, every acknowledged fall one anomaly and one count on its device's alert.

Devices connect with `clean_start=False` and a session expiry: when the broker restarts, paho
reconnects and sends again every publication not acknowledged yet (the same message id, DUP).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.e2e.conftest import Device, Stack, wait_until

READINGS_START = datetime(2026, 11, 1, tzinfo=UTC)

Key = tuple[str, str]
"""(device_id, measurement time as ISO text with Z)."""


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Load:
    """Meters and pendants publishing in one thread until `stop()`."""

    stack: Stack
    meters: list[Device]
    pendants: list[Device]
    ticks_per_s: float = 5.0
    fall_every: int = 10
    acked: set[Key] = field(default_factory=set)
    refused: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pending: dict[tuple[str, int], Key] = field(default_factory=dict)
    _early: dict[tuple[str, int], bool] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _falls_start: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(hours=1))

    def start(self) -> Load:
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop publishing and wait until every publication was answered (acked or refused)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(180)
        assert not self._pending, f"{len(self._pending)} publications never answered"

    def readings(self) -> set[Key]:
        names = {d.device_id for d in self.meters}
        with self._lock:
            return {k for k in self.acked if k[0] in names}

    def falls(self) -> set[Key]:
        names = {d.device_id for d in self.pendants}
        with self._lock:
            return {k for k in self.acked if k[0] in names}

    # -- devices ------------------------------------------------------------------------------

    def _client(self, dev: Device) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                             client_id=f"load-{dev.device_id}-{uuid.uuid4().hex[:4]}")
        client.username_pw_set(dev.username, dev.password)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)  # keep everything while the broker is away
        client.reconnect_delay_set(0.2, 2)
        connected = threading.Event()
        client.on_connect = lambda c, u, f, rc, p: connected.set()
        client.on_publish = lambda c, u, mid, rc, p: self._answered(dev.device_id, mid, rc.is_failure)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        client.connect(self.stack.status["mqtt_host"], self.stack.status["mqtt_port"],
                       clean_start=False, properties=props)
        client.loop_start()
        assert connected.wait(10), f"{dev.device_id} could not connect"
        return client

    def _run(self) -> None:
        meters = [(d, self._client(d)) for d in self.meters]
        pendants = [(d, self._client(d)) for d in self.pendants]
        period = 1.0 / self.ticks_per_s
        i = 0
        next_t = time.monotonic()
        try:
            while not self._stop.is_set():
                ts = _iso(READINGS_START + timedelta(seconds=i))
                for dev, client in meters:
                    body = orjson.dumps({"ts": ts, "values": {"active_power_w": float(i)}})
                    self._send(dev, client, "up/json", body, ts)
                if i % self.fall_every == 0:
                    fts = _iso(self._falls_start + timedelta(seconds=i))
                    for dev, client in pendants:
                        body = orjson.dumps({"ts": fts, "event": "fall_detected"})
                        self._send(dev, client, "up/event", body, fts)
                i += 1
                next_t += period
                time.sleep(max(0.0, next_t - time.monotonic()))
            wait_until(lambda: not self._pending, timeout=120)
        finally:
            for _, client in meters + pendants:
                client.disconnect()
                client.loop_stop()

    def _send(self, dev: Device, client: mqtt.Client, channel: str, body: bytes, ts: str) -> None:
        # Not under our lock: paho calls on_publish holding its own.
        info = client.publish(dev.prefix + channel, body, qos=1)
        with self._lock:
            failed = self._early.pop((dev.device_id, info.mid), None)
            if failed is None:
                self._pending[(dev.device_id, info.mid)] = (dev.device_id, ts)
            else:
                self._record((dev.device_id, ts), failed)

    def _answered(self, device: str, mid: int, failed: bool) -> None:
        with self._lock:
            key = self._pending.pop((device, mid), None)
            if key is None:
                self._early[(device, mid)] = failed  # PUBACK before publish() returned
            else:
                self._record(key, failed)

    def _record(self, key: Key, failed: bool) -> None:
        if failed:
            self.refused += 1
        else:
            self.acked.add(key)


# -- what landed ----------------------------------------------------------------------------------

def _ts(t: datetime) -> str:
    return _iso(t.astimezone(UTC))


def stored_readings(db: str, tenant: str) -> list[Key]:
    """Every (meter, measurement time) stored for the tenant, duplicates included."""
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT d.device_id, r.ts FROM readings r JOIN devices d ON d.pk = r.device_pk "
            "WHERE d.tenant_id = %s", (tenant,)).fetchall()
    return [(d, _ts(ts)) for d, ts in rows]


def fall_anomalies(db: str, tenant: str) -> list[Key]:
    """Every fall anomaly of the tenant as (device, start), duplicates included."""
    with psycopg.connect(db) as conn:
        rows = conn.execute("SELECT device_id, start_ts FROM anomalies "
                            "WHERE tenant_id = %s AND kind = 'fall'", (tenant,)).fetchall()
    return [(d, _ts(ts)) for d, ts in rows]


def fall_alerts(db: str, tenant: str) -> dict[str, list[int]]:
    """Device -> the counts of its fall alerts (one alert per pendant expected)."""
    out: dict[str, list[int]] = {}
    with psycopg.connect(db) as conn:
        for device, count in conn.execute(
                "SELECT device_id, count FROM alerts WHERE tenant_id = %s AND kind = 'fall' "
                "ORDER BY id", (tenant,)):
            out.setdefault(device, []).append(int(count))
    return out


def progress(db: str, tenant: str) -> tuple[int, int]:
    """(readings stored, falls counted on alerts) for the tenant; cheap, for per-fault checks."""
    with psycopg.connect(db, connect_timeout=3) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM readings r JOIN devices d ON d.pk = r.device_pk "
            "        WHERE d.tenant_id = %(t)s), "
            "       (SELECT coalesce(sum(count), 0) FROM alerts WHERE tenant_id = %(t)s "
            "        AND kind = 'fall')", {"t": tenant}).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])
