"""The ingest gateway: MQTT in, Kafka out. I/O only: parsing lives in `maillage.ingest.formats`,
the decisions (registry, relayed sensors, times) in `maillage.ingest.validate`; see docs/ingest.md.

Delivery: the gateway holds a persistent MQTT v5 session (clean start off, session expiry
"never", so the broker keeps the session and its queue while the gateway is away) and
acknowledges each QoS 1 message only after Kafka acknowledged every record made from it (or its
DLQ record). A crash before that means the broker redelivers: duplicates are possible, loss is
not; the storage processor's idempotent writer absorbs the duplicates.

One thread, one asyncio loop: the MQTT connection (`maillage.mqtt`) reads its socket every
`read_interval_ms` under load and hands over the PUBLISH packets of each chunk at once; they are
converted together into records appended to the `Outbox`, which produces them as one Kafka batch
per partition and hands back the chunk's packet ids once Kafka has everything: one write PUBACKs
them all. Back-pressure is MQTT v5's receive maximum, which the connection enforces itself: at
`receive_max` unacknowledged messages it stops reading, and the broker queues the rest (never
drops: see the Mosquitto config) until Kafka catches up.

Several gateways share the load through the `$share/maillage-gateway/...` subscription, each with
its own persistent session (`maillage-gateway-{instance}`); Mosquitto 2.0 keeps a stopped
member's share queued for it until it returns (docs/ingest.md, "Several gateways").
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import mqtt5
from aiokafka import AIOKafkaProducer

from maillage import topics
from maillage.envelope import DlqRecord
from maillage.ingest.outbox import Outbox
from maillage.ingest.registry_cache import RegistryCache
from maillage.ingest.reject_log import RejectLog
from maillage.ingest.validate import Ingest
from maillage.mqtt import SESSION_KEPT, MqttConnection, MqttError
from maillage.observability import BROKER_DROPPED, DLQ_RECORDS, INGEST_MESSAGES, INGEST_READINGS

log = logging.getLogger(__name__)

DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"
RECONNECT_DELAYS = (0.2, 5.0)
"""First and longest wait between two MQTT connection attempts (doubling in between)."""
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class GatewayConfig:
    """Where the gateway connects and how it behaves."""

    mqtt_host: str
    mqtt_port: int
    mqtt_username: str
    mqtt_password: str
    kafka_bootstrap: str
    database_url: str
    client_id: str = "maillage-gateway-0"
    shared: bool = True
    read_interval_ms: float = 50.0
    """After each chunk read from MQTT, the socket is left alone this long: under load one read
    brings hundreds of messages, converted and sent to Kafka as one generation. Each wake-up of
    the process costs ~100 µs of CPU on a small VM, more than a message does."""
    receive_max: int = 10_000
    """MQTT v5 receive maximum: messages the broker sends (and the gateway holds) before they
    are acknowledged. A read brings at most 256 KiB (~1,000 messages); two generations at
    Kafka and one filling stay well under it, so it only bites when Kafka stalls."""
    keep_alive: int = 30
    kafka_batch_bytes: int = 1 << 20
    kafka_idempotence: bool = False
    """Ask Kafka for an idempotent producer (a retried batch is never appended twice)."""
    max_future: timedelta = timedelta(minutes=5)


@dataclass(slots=True)
class Inbound:
    """One MQTT message, for `Gateway.handle`."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at: float


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROS = [timedelta(microseconds=i) for i in range(4096)]
_N_MICROS = len(_MICROS)
_Token = tuple[int, list[int], int]
"""What a converted chunk leaves to acknowledge: (connection epoch, packet ids, messages)."""


class Gateway:
    """Subscribes to device topics, validates, produces envelopes or DLQ records, then acks."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.registry = RegistryCache(config.database_url)
        self.ingest = Ingest(self.registry, max_future=config.max_future)
        self.rejects = RejectLog(log)  # rejections logged as the gateway's
        self._inbox: collections.deque[tuple[int, float, list[mqtt5.PublishPacket]]] = collections.deque()
        self._wake = asyncio.Event()
        self._epoch = 0  # bumped by every connection attempt: acks go back on their own connection
        self._conn: MqttConnection | None = None  # the connection of `_conn_epoch`
        self._conn_epoch = 0
        self._early_acks: list[int] = []  # of the current epoch, before its connection was known
        self._outbox: Outbox[_Token] | None = None
        self._dropped_seen: int | None = None
        self.handled = 0
        self._tally: collections.Counter[tuple[str, str]] = collections.Counter()
        self._values = 0
        self._last_rx_us = 0

    # --- one message -------------------------------------------------------------------------

    def handle(self, item: Inbound) -> list[tuple[str, bytes, bytes]]:
        """One MQTT message -> the Kafka records (topic, key, value) to produce for it."""
        return self._records(item.topic, item.payload, datetime.fromtimestamp(item.received_at, UTC))

    def _records(self, topic: str, payload: bytes, received: datetime,
                 duplicate: bool = False) -> list[tuple[str, bytes, bytes]]:
        """Bad device data becomes one DLQ record (counted, logged without flooding); a registry
        failure raises, so that the message is not acknowledged and comes back.

        `duplicate`: the broker redelivers a message it sent before (MQTT DUP flag). Envelopes
        timed by their receipt (no device time) are marked `redelivered`: storage then keeps the
        first copy, stored under the first receive time (docs/ingest.md, redeliveries)."""
        outcome = self.ingest.convert(topic, payload, received)
        if duplicate and outcome.rejection is None:
            outcome.envelopes = [
                e.replace(device_id=e.device_id, attrs={**e.attrs, "redelivered": True})
                if e.ts_us == e.rx_us else e for e in outcome.envelopes]
        rej = outcome.rejection
        if rej is not None:
            self._tally[(outcome.channel, "rejected")] += 1
            DLQ_RECORDS.labels(rej.reason).inc()
            self.rejects.rejected(rej.reason, topic, rej.detail, rej.error)
            rec = DlqRecord(mqtt_topic=topic, tenant=rej.tenant, device_id=rej.device_id,
                            received_at=received, reason=rej.reason, detail=rej.detail,
                            payload=payload)
            return [(topics.DLQ, rec.key, rec.to_kafka())]
        self._tally[(outcome.channel, "accepted")] += 1
        out = []
        for kafka_topic, key, value, n_values in outcome.records():
            self._values += n_values
            out.append((kafka_topic, key, value))
        return out

    # --- MQTT side ---------------------------------------------------------------------------

    def _received(self, epoch: int, packets: list[mqtt5.PublishPacket]) -> None:
        """The PUBLISH packets of one socket chunk: queued for the converting loop."""
        self._inbox.append((epoch, time.time(), packets))
        self._wake.set()

    def _convert(self, epoch: int, received_s: float, packets: list[mqtt5.PublishPacket],
                 outbox: Outbox[_Token]) -> None:
        """A chunk's messages -> records in the outbox, and its packet ids to acknowledge.

        Receive times are the chunk's plus one microsecond per message, and never go back: they
        stay unique per gateway, as a device's measurement time may be its receive time (TIC
        historique frames carry none) and a device may send several messages in one chunk.
        """
        base_us = max(int(received_s * 1_000_000), self._last_rx_us + 1)
        self._last_rx_us = base_us + len(packets)
        base = _EPOCH + timedelta(microseconds=base_us)
        timestamp_ms = base_us // 1000
        add = outbox.add
        records = self._records
        pids: list[int] = []
        n = 0
        for i, packet in enumerate(packets):
            topic = packet.topic
            if topic[:1] == "$":  # the broker's own ($SYS), not a device's
                if topic == DROPPED_TOPIC:
                    self._watch_dropped(packet.payload)
            else:
                received = base + (_MICROS[i] if i < _N_MICROS else timedelta(microseconds=i))
                out = (records(topic, packet.payload, received, True) if packet.duplicate
                       else records(topic, packet.payload, received))
                for kafka_topic, key, value in out:
                    add(kafka_topic, key, value, timestamp_ms)
                n += 1
            pid = packet.packet_id
            if pid:  # QoS 1 (QoS 0 messages have none and are not acknowledged)
                pids.append(pid)
        if n or pids:
            outbox.note((epoch, pids, n), n)

    def _acked(self, tokens: list[_Token]) -> None:
        """Kafka has every record of these chunks: PUBACK them, in one write, on the connection
        they came from (those of a lost connection come back from the session anyway)."""
        pids: list[int] = []
        for epoch, ids, n in tokens:
            self.handled += n
            if epoch == self._epoch:
                pids.extend(ids)
        if not pids:
            return
        conn = self._conn
        if self._conn_epoch != self._epoch:  # still connecting: sent once the connection is known
            self._early_acks.extend(pids)
        elif conn is not None and conn.is_open:
            conn.ack(pids)

    def _connected(self, conn: MqttConnection) -> None:
        """The current attempt's connection is up: acks may go to it."""
        self._conn, self._conn_epoch = conn, self._epoch
        early, self._early_acks = self._early_acks, []
        if early:
            conn.ack(early)

    def _watch_dropped(self, payload: bytes) -> None:
        try:
            dropped = int(payload)
        except ValueError:
            return
        BROKER_DROPPED.set(dropped)
        if self._dropped_seen is not None and dropped > self._dropped_seen:
            log.error("Mosquitto dropped %d queued messages (total %d): check its queue limits",
                      dropped - self._dropped_seen, dropped)
        self._dropped_seen = dropped

    async def _stay_connected(self, stop: asyncio.Event) -> None:
        """Connect, subscribe, and reconnect with backoff whenever the connection is lost."""
        cfg = self.config
        subs = [(t, 1) for t in topics.gateway_subscriptions(cfg.shared)] + [(DROPPED_TOPIC, 0)]
        first, longest = RECONNECT_DELAYS
        delay = first
        stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                self._epoch += 1
                self._early_acks.clear()
                try:
                    conn, connack = await MqttConnection.connect(
                        cfg.mqtt_host, cfg.mqtt_port, cfg.client_id, username=cfg.mqtt_username,
                        password=cfg.mqtt_password, clean_start=False, session_expiry=SESSION_KEPT,
                        keep_alive=cfg.keep_alive, receive_max=cfg.receive_max,
                        read_interval=cfg.read_interval_ms / 1000,
                        on_publish=partial(self._received, self._epoch))
                    self._connected(conn)
                    try:
                        await conn.subscribe(subs)
                    except BaseException:
                        conn.abort()
                        raise
                except (OSError, MqttError, TimeoutError) as exc:
                    log.warning("MQTT connection to %s:%s failed (%s); next attempt in %.1f s",
                                cfg.mqtt_host, cfg.mqtt_port, exc or type(exc).__name__, delay)
                    await asyncio.wait({stopping}, timeout=delay)
                    delay = min(delay * 2, longest)
                    continue
                delay = first
                log.info("connected to MQTT %s:%s as %s (session present: %s, receive maximum %d)",
                         cfg.mqtt_host, cfg.mqtt_port, cfg.client_id, connack.session_present,
                         cfg.receive_max)
                await asyncio.wait({conn.closed, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not stop.is_set():
                    log.warning("MQTT connection lost; reconnecting (unacknowledged messages come "
                                "back from the session)")
        finally:
            stopping.cancel()

    # --- the loop ----------------------------------------------------------------------------

    def _publish_tally(self) -> None:
        """Counters go to Prometheus once per read (a few dozen times a second), not per message."""
        for (channel, outcome), n in self._tally.items():
            INGEST_MESSAGES.labels(channel, outcome).inc(n)
        self._tally.clear()
        if self._values:
            INGEST_READINGS.inc(self._values)
            self._values = 0

    async def _tick(self, every_s: float = 1.0) -> None:
        """Wake the loop now and then: the reject log's window closes even when idle."""
        while True:
            await asyncio.sleep(every_s)
            self._wake.set()

    async def _pump(self, stop: asyncio.Event, outbox: Outbox[_Token],
                    watched: list[asyncio.Task[None]]) -> None:
        """Convert what arrives until `stop`; raise if a watched task failed."""
        inbox = self._inbox
        while True:
            await self._wake.wait()
            self._wake.clear()
            for task in watched:
                if task.done():
                    task.result()  # re-raise a Kafka failure
                    if not stop.is_set():
                        raise RuntimeError(f"the {task.get_name()} task stopped")
            while inbox:
                self._convert(*inbox.popleft(), outbox)
            self.rejects.flush()
            if self._tally:
                self._publish_tally()
            if stop.is_set():
                return

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set; raises when Kafka or the database fails."""
        cfg = self.config
        n = self.registry.load()
        log.info("registry: %d devices", n)
        producer = AIOKafkaProducer(bootstrap_servers=cfg.kafka_bootstrap, acks="all",
                                    enable_idempotence=cfg.kafka_idempotence,
                                    max_batch_size=cfg.kafka_batch_bytes, request_timeout_ms=30_000)
        await producer.start()
        outbox: Outbox[_Token] = Outbox(producer, {*topics.KIND_TOPIC.values(), topics.DLQ}, self._acked)
        self._outbox = outbox
        tasks: list[asyncio.Task[None]] = []
        clean = False
        try:
            await outbox.start()
            tasks = [asyncio.create_task(outbox.run(), name="kafka outbox"),
                     asyncio.create_task(self._stay_connected(stop), name="mqtt session"),
                     asyncio.create_task(self._tick(), name="ticker")]
            wake = lambda _: self._wake.set()  # noqa: E731
            for task in tasks:
                task.add_done_callback(wake)
            stopping = asyncio.ensure_future(stop.wait())
            stopping.add_done_callback(wake)
            try:
                await self._pump(stop, outbox, tasks[:2])
            finally:
                stopping.cancel()
            clean = True
        finally:
            await self._shutdown(outbox, tasks, clean)
            await producer.stop()
            self.registry.close()
            log.info("gateway stopped after %d messages (%d Kafka generations, %d batches)", self.handled,
                     outbox.acked_generations, outbox.batches)

    async def _shutdown(self, outbox: Outbox[_Token], tasks: list[asyncio.Task[None]],
                        clean: bool) -> None:
        """Stop reading, finish what was received (when nothing failed), PUBACK it, DISCONNECT."""
        conn = self._conn
        if conn is not None:
            conn.pause_reading()
        outboxing = tasks[0] if tasks else None
        if clean:
            try:
                while self._inbox:
                    self._convert(*self._inbox.popleft(), outbox)
            except Exception:  # noqa: BLE001 - what is not acknowledged is redelivered
                log.exception("could not convert the last messages received")
                outbox.discard_current()
        else:
            outbox.discard_current()  # partly converted: the broker redelivers it
        self._inbox.clear()
        if outboxing is not None and not outboxing.done():
            if not await outbox.drain(STOP_TIMEOUT_S):
                log.error("Kafka did not acknowledge everything within %.0f s; the broker "
                          "redelivers the rest", STOP_TIMEOUT_S)
        self._publish_tally()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if conn is not None and conn.is_open:
            try:
                await asyncio.wait_for(conn.disconnect(), 5)
            except (OSError, TimeoutError):
                conn.abort()
