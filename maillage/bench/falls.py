"""The fall probe: a care pendant publishing falls; times publication -> anomaly row stored.

A dedicated `care_button` device publishes a `fall_detected` event `hz` times a second while a
phase is set; a poller queries the device's `fall` anomalies every `poll_s` and stamps each new
one with the time the query returned (an upper bound, as for the reading probe). Each fall has
its own measurement time (milliseconds, strictly increasing), which is the anomaly's start: that
is how a row is matched to its publication.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar

import orjson
import paho.mqtt.client as mqtt
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2

from maillage import topics
from maillage.bench.probes import MqttProbe
from maillage.processors.kafka_topics import partitions_of


@dataclass
class FallProbe(MqttProbe):
    """Publishes falls during a phase and records their latency to the `anomalies` table."""

    name: ClassVar[str] = "falls"

    tenant: str
    device_id: str
    hz: float = 2.0
    poll_s: float = 0.02
    phase: str | None = None
    latencies: dict[str, list[float]] = field(default_factory=dict)
    kafka_bootstrap: str | None = None
    """When given, a consumer of `maillage.events` times each fall's arrival in Kafka too."""
    fetch_wait_ms: int = 5
    """Its fetches' wait at the broker (Apache Kafka answers as soon as a record arrives)."""
    segments: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    """Per phase, where each fall's time went (`split`): `mqtt` (publication -> the gateway's
    receive time), `gateway_kafka` (-> fetched from `maillage.events` by the probe's own consumer:
    the gateway's parse, batch and produce, and Kafka), `detect` (-> the detection write's
    transaction start), `commit_poll` (-> seen by the poller). Without a bootstrap, the middle two
    are one `kafka_detect` segment. (The record's create time is no mark: the gateway stamps it
    with the receive time.)"""
    published: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.lock = threading.Lock()
        self._sent: dict[int, tuple[float, str]] = {}  # measurement ms -> (publication time, phase)
        self._seen: dict[int, tuple[float, float, str]] = {}  # ms -> (published, seen, phase)
        self._in_kafka: dict[int, float] = {}  # ms -> fetched from Kafka
        self.alert_sent: dict[int, tuple[float, str]] = {}  # the same, for the alert probe

    def _more_threads(self) -> list[threading.Thread]:
        if not self.kafka_bootstrap:
            return []
        return [threading.Thread(target=lambda: asyncio.run(self._watch_kafka()),
                                 name="bench-falls-kafka", daemon=True)]

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
                        self._seen[round(start.timestamp() * 1000)] = (sent[0], seen_at, sent[1])
        if conn is not None:
            conn.close()

    async def _watch_kafka(self) -> None:
        """Note when each fall reaches `maillage.events` (only the pendant's partition is read:
        the whole topic would cost the bench a good part of a core at the maximum)."""
        assert self.kafka_bootstrap is not None
        key = f"{self.tenant}/{self.device_id}".encode()
        consumer = AIOKafkaConsumer(bootstrap_servers=self.kafka_bootstrap, enable_auto_commit=False,
                                    fetch_max_wait_ms=self.fetch_wait_ms)
        try:
            partitions = await partitions_of(self.kafka_bootstrap, topics.EVENTS)
            await consumer.start()
            tp = TopicPartition(topics.EVENTS, (murmur2(key) & 0x7FFFFFFF) % len(partitions))
            consumer.assign([tp])
            await consumer.seek_to_end(tp)
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=100)
                fetched = time.time()
                for records in batch.values():
                    for rec in records:
                        if rec.key != key or rec.value is None:
                            continue
                        ts_us = orjson.loads(rec.value)["ts"]
                        self._in_kafka[round(ts_us / 1000)] = fetched
        except Exception as exc:  # a probe, not the pipeline: note it and stop watching
            self.errors.append(f"fall kafka watch: {exc}")
        finally:
            await consumer.stop()

    def split(self) -> None:
        """Fill `segments` from the stored rows: the gateway's receive time of each fall (its
        `events` row, written by storage) and the detection write's transaction time (the
        anomaly's `updated_at`). Same machine, same clock; run once, after the phases."""
        if not self._seen:
            return
        try:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT a.start_ts, e.received_at, a.updated_at FROM anomalies a "
                    "JOIN devices d ON d.tenant_id = a.tenant_id AND d.device_id = a.device_id "
                    "JOIN events e ON e.device_pk = d.pk AND e.ts = a.start_ts "
                    "AND e.event = 'fall_detected' "
                    "WHERE a.tenant_id = %s AND a.device_id = %s AND a.kind = 'fall'",
                    (self.tenant, self.device_id)).fetchall()
        except psycopg.Error as exc:
            self.errors.append(f"fall split: {exc}")
            return
        for start, received, detected in rows:
            seen = self._seen.get(round(start.timestamp() * 1000))
            if seen is None:
                continue
            published, seen_at, phase = seen
            rx, tx = received.timestamp(), detected.timestamp()
            parts = self.segments.setdefault(phase, {})
            parts.setdefault("mqtt", []).append((rx - published) * 1000)
            fetched = self._in_kafka.get(round(start.timestamp() * 1000))
            if fetched is None:
                parts.setdefault("kafka_detect", []).append((tx - rx) * 1000)
            else:
                parts.setdefault("gateway_kafka", []).append((fetched - rx) * 1000)
                parts.setdefault("detect", []).append((tx - fetched) * 1000)
            parts.setdefault("commit_poll", []).append((seen_at - tx) * 1000)

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self.phase = None
        time.sleep(1.0)  # the last falls' rows
        self._halt()
