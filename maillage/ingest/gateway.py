"""The ingest gateway: MQTT in, Kafka out. I/O only: parsing lives in `maillage.ingest.formats`,
the decisions (registry, relayed sensors, times) in `maillage.ingest.validate`; see docs/ingest.md.

Delivery: the gateway holds a persistent MQTT session (clean session off) and acknowledges each
QoS 1 message to the broker only after Kafka acknowledged every record made from it (or its DLQ
record). A crash before that means the broker redelivers: duplicates are possible, loss is not;
the storage processor's idempotent writer absorbs the duplicates.

Threads: paho runs its network loop in its own thread and only appends to an inbox; the asyncio
loop drains the inbox in batches, produces to Kafka, and acknowledges in order once the batch's
records are acknowledged. The inbox is bounded: when full, paho's thread waits, stops reading its
socket, and the broker queues (never drops: see the Mosquitto config) until Kafka catches up.

Several gateways share the load through the `$share/maillage-gateway/...` subscription, each with
its own persistent session (`maillage-gateway-{instance}`); Mosquitto 2.0 keeps a stopped
member's share queued for it until it returns (docs/ingest.md, "Several gateways").
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaProducer

from maillage import topics
from maillage.envelope import DlqRecord
from maillage.ingest.registry_cache import RegistryCache
from maillage.ingest.validate import Ingest
from maillage.observability import BROKER_DROPPED, DLQ_RECORDS, INGEST_MESSAGES, INGEST_READINGS

log = logging.getLogger(__name__)

DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"
KIND_TOPIC = {"reading": topics.READINGS, "event": topics.EVENTS, "ack": topics.EVENTS,
               "status": topics.STATUS}


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
    max_pending: int = 20_000
    batch_size: int = 2_000
    max_future: timedelta = timedelta(minutes=5)


@dataclass(slots=True)
class Inbound:
    """One MQTT message as the paho thread hands it over."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at: float


_Inbound = Inbound  # the name the first tests used


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


class Gateway:
    """Subscribes to device topics, validates, produces envelopes or DLQ records, then acks."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.registry = RegistryCache(config.database_url)
        self.ingest = Ingest(self.registry, max_future=config.max_future)
        self.rejects = RejectLog()
        self._inbox: collections.deque[Inbound] = collections.deque()
        self._slots = threading.BoundedSemaphore(config.max_pending)
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_pending = False
        self._connected = threading.Event()
        self._client: mqtt.Client | None = None
        self._dropped_seen: int | None = None
        self.handled = 0
        self._tally: collections.Counter[tuple[str, str]] = collections.Counter()
        self._values = 0

    # --- paho thread -------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            log.error("MQTT connection refused: %s", rc)
            return
        subs = [(t, 1) for t in topics.gateway_subscriptions(self.config.shared)]
        client.subscribe(subs + [(DROPPED_TOPIC, 0)])
        self._connected.set()
        log.info("connected to MQTT %s:%s as %s (session present: %s)", self.config.mqtt_host,
                 self.config.mqtt_port, self.config.client_id, flags.session_present)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self._connected.clear()
        if rc.is_failure:
            log.warning("MQTT disconnected (%s); paho reconnects", rc)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == DROPPED_TOPIC:
            self._watch_dropped(bytes(msg.payload))
            return
        self._slots.acquire()  # back-pressure: blocks the network thread while the inbox is full
        self._inbox.append(Inbound(msg.topic, bytes(msg.payload), msg.mid, msg.qos, time.time()))
        if not self._wake_pending and self._loop is not None:
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._wake.set)

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

    # --- asyncio side ------------------------------------------------------------------------

    def handle(self, item: Inbound) -> list[tuple[str, bytes, bytes]]:
        """One MQTT message -> the Kafka records (topic, key, value) to produce for it.

        Bad device data becomes one DLQ record (counted, logged without flooding); a registry
        failure raises, so that the message is not acknowledged and comes back.
        """
        received = datetime.fromtimestamp(item.received_at, UTC)
        outcome = self.ingest.convert(item.topic, item.payload, received)
        rej = outcome.rejection
        if rej is not None:
            self._tally[(outcome.channel, "rejected")] += 1
            DLQ_RECORDS.labels(rej.reason).inc()
            self.rejects.rejected(rej.reason, item.topic, rej.detail, rej.error)
            rec = DlqRecord(mqtt_topic=item.topic, tenant=rej.tenant, device_id=rej.device_id,
                            received_at=received, reason=rej.reason, detail=rej.detail,
                            payload=item.payload)
            return [(topics.DLQ, rec.key, rec.to_kafka())]
        self._tally[(outcome.channel, "accepted")] += 1
        out = []
        for env in outcome.envelopes:
            self._values += len(env.values)
            out.append((KIND_TOPIC[env.kind], env.key, env.to_kafka()))
        return out

    def _publish_tally(self) -> None:
        """Counters go to Prometheus once per batch, not per message (they cost on the hot path)."""
        for (channel, outcome), n in self._tally.items():
            INGEST_MESSAGES.labels(channel, outcome).inc(n)
        self._tally.clear()
        if self._values:
            INGEST_READINGS.inc(self._values)
            self._values = 0

    async def _ack_in_order(self, pending: asyncio.Queue[tuple[list[asyncio.Future[Any]], list[Inbound]] | None]) -> None:
        """Await each batch's Kafka acknowledgements, then PUBACK its messages, batch after batch."""
        assert self._client is not None
        while (entry := await pending.get()) is not None:
            futures, items = entry
            await asyncio.gather(*futures)  # raises on a Kafka failure: no PUBACK, redelivery
            for item in items:
                if item.qos > 0:
                    self._client.ack(item.mid, item.qos)
                self._slots.release()
            self.handled += len(items)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set; raises when Kafka or the database fails."""
        self._loop = asyncio.get_running_loop()
        n = self.registry.load()
        log.info("registry: %d devices", n)
        producer = AIOKafkaProducer(bootstrap_servers=self.config.kafka_bootstrap, acks="all",
                                    linger_ms=5, max_batch_size=512 * 1024,
                                    request_timeout_ms=30_000)
        await producer.start()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.config.client_id,
                             protocol=mqtt.MQTTv311, clean_session=False, manual_ack=True)
        client.username_pw_set(self.config.mqtt_username, self.config.mqtt_password)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(0.2, 5)  # type: ignore[arg-type] # paho takes seconds as float
        self._client = client
        client.connect_async(self.config.mqtt_host, self.config.mqtt_port, keepalive=30)
        client.loop_start()
        pending: asyncio.Queue[Any] = asyncio.Queue(maxsize=8)
        acker = asyncio.create_task(self._ack_in_order(pending))
        stopper = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                self.rejects.flush()
                if not self._inbox:
                    self._wake.clear()
                    self._wake_pending = False
                    if not self._inbox:
                        waiter = asyncio.create_task(self._wake.wait())
                        await asyncio.wait({waiter, stopper, acker}, timeout=self.rejects.window_s,
                                           return_when=asyncio.FIRST_COMPLETED)
                        waiter.cancel()
                        if acker.done():
                            acker.result()  # re-raise the Kafka failure
                        continue
                batch = [self._inbox.popleft() for _ in range(min(len(self._inbox), self.config.batch_size))]
                futures = []
                for item in batch:
                    for topic, key, value in self.handle(item):
                        futures.append(await producer.send(topic, value=value, key=key))
                self._publish_tally()
                await pending.put((futures, batch))
        finally:
            if not acker.done():
                await pending.put(None)
                try:
                    await asyncio.wait_for(acker, 30)
                except Exception:  # noqa: BLE001 - unacked messages are redelivered anyway
                    log.exception("could not finish acknowledging")
            stopper.cancel()
            client.disconnect()
            client.loop_stop()
            await producer.stop()
            self.registry.close()
            log.info("gateway stopped after %d messages", self.handled)

