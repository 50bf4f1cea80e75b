"""A steady QoS 1 stream of readings from several devices, and the row-by-row check of what landed."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
import paho.mqtt.client as mqtt
import psycopg

from tests.e2e.conftest import Device, Stack, wait_until

START = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass
class Stream:
    """Publishes one reading per device and tick until stopped; remembers what the broker acknowledged.

    Each message carries one reading at a measurement time of its own, so a stored row names
    exactly one acknowledged publication.
    """

    stack: Stack
    devices: list[Device]
    rate_per_s: float = 100.0
    acked: set[tuple[str, str]] = field(default_factory=set)
    refused: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Stream:
        self._thread = threading.Thread(target=self._run, name="stream", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(120)

    def published(self) -> int:
        return len(self.acked)

    def _client(self, dev: Device, book: _Book) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                             client_id=f"stream-{dev.device_id}-{uuid.uuid4().hex[:4]}")
        client.username_pw_set(dev.username, dev.password)
        client.max_inflight_messages_set(1000)
        connected = threading.Event()
        client.on_connect = lambda c, u, f, rc, p: connected.set()
        client.on_publish = lambda c, u, mid, rc, p: book.answered(dev.device_id, mid, rc.is_failure)
        client.connect(self.stack.status["mqtt_host"], self.stack.status["mqtt_port"])
        client.loop_start()
        assert connected.wait(10), f"{dev.device_id} could not connect"
        return client

    def _run(self) -> None:
        book = _Book(self)
        clients = [self._client(d, book) for d in self.devices]
        period = len(self.devices) / self.rate_per_s
        i = 0
        next_t = time.monotonic()
        try:
            while not self._stop.is_set():
                ts = (START + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
                for dev, client in zip(self.devices, clients, strict=True):
                    body = orjson.dumps({"ts": ts, "values": {"active_power_w": float(i)}})
                    # Not under the book's lock: paho calls on_publish holding its own.
                    info = client.publish(dev.prefix + "up/json", body, qos=1)
                    book.sent(dev.device_id, info.mid, (dev.device_id, ts))
                i += 1
                next_t += period
                time.sleep(max(0.0, next_t - time.monotonic()))
            # Every publication answered (acknowledged or refused) before stopping.
            wait_until(lambda: not book.pending, timeout=60)
        finally:
            for client in clients:
                client.disconnect()
                client.loop_stop()
        assert not book.pending, f"{len(book.pending)} publications never acknowledged"


class _Book:
    """Which publication each (device, MQTT message id) was, and the broker's answers to them.

    A PUBACK can arrive before `publish()` returned the message id: it waits in `early`.
    """

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.pending: dict[tuple[str, int], tuple[str, str]] = {}
        self.early: dict[tuple[str, int], bool] = {}

    def sent(self, device: str, mid: int, key: tuple[str, str]) -> None:
        with self.lock:
            failed = self.early.pop((device, mid), None)
            if failed is None:
                self.pending[(device, mid)] = key
            else:
                self._record(key, failed)

    def answered(self, device: str, mid: int, failed: bool) -> None:
        with self.lock:
            key = self.pending.pop((device, mid), None)
            if key is None:
                self.early[(device, mid)] = failed
            else:
                self._record(key, failed)

    def _record(self, key: tuple[str, str], failed: bool) -> None:
        if failed:
            self.stream.refused += 1
        else:
            self.stream.acked.add(key)


def stored(db: str, tenant: str) -> list[tuple[str, str]]:
    """Every (device, measurement time) stored for the tenant, duplicates included."""
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT d.device_id, r.ts FROM readings r JOIN devices d ON d.pk = r.device_pk "
            "WHERE d.tenant_id = %s", (tenant,)).fetchall()
    return [(d, ts.astimezone(UTC).isoformat().replace("+00:00", "Z")) for d, ts in rows]


def assert_exactly_once(stack: Stack, tenant: str, stream: Stream, timeout: float = 180) -> None:
    """Every acknowledged reading stored, none twice, nothing that was not published (row by row)."""
    assert stream.acked, "nothing was acknowledged: the stream did not run"
    wait_until(lambda: len(stored(stack.db(), tenant)) >= len(stream.acked), timeout=timeout,
               interval=1.0)
    rows = stored(stack.db(), tenant)
    missing = stream.acked - set(rows)
    assert not missing, f"{len(missing)} acknowledged readings lost, e.g. {sorted(missing)[:5]}"
    assert len(rows) == len(set(rows)), "a reading was stored twice"
    extra = set(rows) - stream.acked
    assert not extra, f"stored but never acknowledged: {sorted(extra)[:5]}"
