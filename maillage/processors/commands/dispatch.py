"""`maillage.commands` -> the device's `…/down/cmd` over MQTT, with retries and time-outs.

`AcceptSink` (driven by the runner) records each Kafka record's target as due (`accepted_at`)
before its offset is committed; a record naming no command of the table goes to `rejected`.
So an offset is never committed for a command neither recorded nor dead-lettered.

`Dispatcher` sends what is due: in one transaction it locks the due targets (SKIP LOCKED: several
processes may run), publishes each at QoS 1 and waits for the broker's PUBACK, then marks it
`sent` with the time its ack is awaited until. A target whose wait ran out is sent again with a
longer wait (`command_backoff`), and after `command_max_attempts` it is `failed`. A crash
before the commit sends those targets again: the device sees the same command id twice.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
from aiokafka.structs import ConsumerRecord
from paho.mqtt.enums import CallbackAPIVersion

from maillage import topics
from maillage.db import commands as db
from maillage.processors.commands.metrics import FAILED, REJECTED, RETRIES, SENT
from maillage.processors.commands.settings import CommandSettings
from maillage.processors.tasks import LazyConnection

log = logging.getLogger(__name__)

GROUP = "maillage-commands"
TOPICS = [topics.COMMANDS]


@dataclass(frozen=True)
class MqttAccount:
    """Where and as whom the processor publishes (an account allowed to publish `down/#`)."""

    host: str
    port: int
    username: str
    password: str


class AcceptSink(LazyConnection):
    """Records the targets read from `maillage.commands` as due; wakes the dispatcher."""

    def __init__(self, database_url: str, wake: threading.Event) -> None:
        self.url, self.wake = database_url, wake
        self._records: list[ConsumerRecord[bytes, bytes]] = []
        self._conn: psycopg.Connection | None = None

    def add(self, record: ConsumerRecord[bytes, bytes]) -> None:
        self._records.append(record)

    def full(self) -> bool:
        return len(self._records) >= 5000

    def flush(self) -> None:
        records, self._records = self._records, []
        if not records:
            return
        ids: dict[int, ConsumerRecord[bytes, bytes]] = {}
        bad: list[tuple[ConsumerRecord[bytes, bytes], str]] = []
        for rec in records:
            try:
                doc = orjson.loads(rec.value or b"")
                tid = doc["id"]
                if not isinstance(tid, int) or isinstance(tid, bool):
                    raise TypeError("'id' must be an integer")
                ids[tid] = rec
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                bad.append((rec, f"{type(exc).__name__}: {exc}"))
        conn = self._connection()
        with conn.transaction():
            known = db.accept(conn=conn, ids=list(ids))
            bad += [(rec, f"no command target {tid}") for tid, rec in ids.items() if tid not in known]
            for rec, why in bad:
                log.warning("maillage.commands[%d]@%d names no command: %s", rec.partition,
                            rec.offset, why)
                db.reject_record(conn=conn, position=f"{rec.topic}[{rec.partition}]@{rec.offset}",
                                 timestamp_ms=rec.timestamp, key=rec.key,
                                 payload=rec.value or b"", detail=why)
        REJECTED.inc(len(bad))
        if known:
            self.wake.set()


class Publisher:
    """A paho MQTT client publishing commands at QoS 1 and waiting for each PUBACK."""

    def __init__(self, account: MqttAccount, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"maillage-commands-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(account.username, account.password)
        self.client.reconnect_delay_set(1, 5)
        self.client.connect_async(account.host, account.port, keepalive=30)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish and wait for the broker's acknowledgement (raises on failure or time-out)."""
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(self.timeout_s)
        if not info.is_published():
            raise TimeoutError(f"no PUBACK for {topic} in {self.timeout_s} s")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def payload_of(target: dict[str, Any]) -> bytes:
    """The `down/cmd` body: `{"id", "cmd", "level"?, …params}` (the id is the target's)."""
    body: dict[str, Any] = {**(target["params"] or {}), "id": str(target["id"]),
                            "cmd": target["cmd"]}
    if target["level"] is not None:
        body["level"] = target["level"]
    return orjson.dumps(body)


class Dispatcher:
    """Sends due targets, times out unanswered ones (see the module docstring)."""

    def __init__(self, database_url: str, account: MqttAccount, settings: CommandSettings,
                 wake: threading.Event) -> None:
        self.url, self.account, self.settings, self.wake = database_url, account, settings, wake
        self.sent = 0

    async def run(self, stop: asyncio.Event) -> None:
        publisher = Publisher(self.account, self.settings.command_publish_timeout_s)
        conn: psycopg.Connection = await asyncio.to_thread(
            lambda: psycopg.connect(self.url, autocommit=True))
        try:
            while not stop.is_set():
                try:
                    busy = await asyncio.to_thread(self.tick, conn, publisher)
                except (TimeoutError, RuntimeError, ValueError) as exc:
                    log.warning("commands: sending failed, retrying: %s", exc)
                    busy = False
                    await asyncio.sleep(1.0)
                if not busy:
                    await asyncio.to_thread(self.wake.wait, self.settings.command_tick_s)
                    self.wake.clear()
        finally:
            conn.close()
            publisher.close()

    def tick(self, conn: psycopg.Connection, publisher: Publisher, limit: int = 200) -> bool:
        """One pass: supersede, fail the exhausted, send the due; True if it handled a full batch."""
        s = self.settings
        with conn.transaction():
            touched = set(db.supersede(conn=conn))
            if touched:
                FAILED.labels("superseded").inc(len(touched))
            due = db.claim_due(conn=conn, limit=limit)
            for t in due:
                touched.add(t["command_id"])
                if t["attempts"] >= s.command_max_attempts:
                    db.mark_failed(conn=conn, target_id=t["id"],
                                   error=f"no ack after {t['attempts']} attempts")
                    FAILED.labels("no_ack").inc()
                    continue
                topic = topics.device_prefix(t["tenant_id"], t["device_id"]) + "down/cmd"
                publisher.publish(topic, payload_of(t))
                db.mark_sent(conn=conn, target_id=t["id"], wait_s=s.wait_s(t["attempts"] + 1))
                SENT.inc()
                if t["attempts"] > 0:
                    RETRIES.inc()
                self.sent += 1
            db.refresh(conn=conn, command_ids=sorted(touched))
        return len(due) == limit
