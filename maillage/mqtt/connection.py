"""One MQTT v5 session on asyncio, for the hot paths (gateway, bench publishers).

Packets are encoded and decoded by `mqtt5` (a sans-I/O MQTT v5 codec written in Rust); this
module only moves bytes. Unlike paho (one packet per `select()`, several `recv()` calls per
packet, its own thread), every chunk the socket delivers is decoded at once and handed over as
one list: the caller's cost is per chunk, not per packet. Acknowledgements are written in one
`write()` per batch.

Flow control: `receive_max` asks the broker (MQTT v5) to send at most that many QoS 1 messages
before they are acknowledged. Mosquitto 2.0.11 with `max_queued_messages 0` honours it only for
the first window (each PUBACK then releases a whole window of queued messages: measured in
tests/gateway/test_gateway_session.py), so the connection also enforces it itself: once
`receive_max` deliveries are unacknowledged it stops reading the socket, and resumes when `ack()`
brings them down to half. TCP then holds the broker back, which queues (never drops: see the
Mosquitto config). `pause_reading()` stops reading altogether (at shutdown).

Reconnecting is the caller's job (it knows what to resume): `closed` completes when the
connection is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import cast

import mqtt5

log = logging.getLogger(__name__)

QOS0 = mqtt5.QoS.AT_MOST_ONCE
QOS1 = mqtt5.QoS.AT_LEAST_ONCE
SESSION_KEPT = 0xFFFFFFFF
"""Session expiry interval meaning "never": a persistent session outlives disconnections."""

PublishHandler = Callable[[list[mqtt5.PublishPacket]], None]
AckHandler = Callable[[list[mqtt5.PubAckPacket]], None]


class MqttError(Exception):
    """The broker refused something (connection, subscription) or broke the protocol."""


class MqttConnection(asyncio.Protocol):
    """A connected MQTT v5 session. Create it with `MqttConnection.connect(...)`."""

    def __init__(self, on_publish: PublishHandler | None, on_ack: AckHandler | None,
                 receive_max: int = 65535, read_interval: float = 0.0) -> None:
        self._on_publish = on_publish
        self._on_ack = on_ack
        self._receive_max = receive_max
        self._read_interval = read_interval
        self._resting = False  # coalescing: leaving the socket alone for `read_interval`
        self._unacked = 0  # QoS 1 deliveries received, not yet acknowledged
        self._flow_paused = False  # too many unacknowledged: not reading until some are
        self._user_paused = False
        self._transport: asyncio.Transport | None = None
        self._rest = b""
        self._connack: asyncio.Future[mqtt5.ConnAckPacket] | None = None
        self._waiting: dict[int, asyncio.Future[mqtt5.SubAckPacket]] = {}
        self._next_id = 0
        self._pong = True
        self._keepalive: asyncio.Task[None] | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # --- setting up -----------------------------------------------------------------------------

    @classmethod
    async def connect(cls, host: str, port: int, client_id: str, *, username: str | None = None,
                      password: str | None = None, clean_start: bool = True,
                      session_expiry: int = 0, keep_alive: int = 30, receive_max: int = 65535,
                      will: mqtt5.Will | None = None, on_publish: PublishHandler | None = None,
                      on_ack: AckHandler | None = None, read_interval: float = 0.0,
                      timeout: float = 10.0) -> tuple[MqttConnection, mqtt5.ConnAckPacket]:
        """Open the TCP connection and the MQTT session; raise MqttError when refused.

        `read_interval` (seconds) coalesces reads: after each chunk the socket is left alone that
        long, so that under load one chunk carries many packets (one wake-up, one `recv()` and
        one `on_publish` call for all of them) for at most that much added latency.
        """
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(
            loop.create_connection(lambda: cls(on_publish, on_ack, receive_max, read_interval),
                                   host, port), timeout)
        conn._connack = loop.create_future()
        conn._write(mqtt5.ConnectPacket(
            client_id, username=username,
            password=password.encode() if password is not None else None,
            clean_start=clean_start, session_expiry_interval=session_expiry,
            keep_alive=keep_alive, receive_max=receive_max, will=will).write())
        try:
            connack = await asyncio.wait_for(asyncio.shield(conn._connack), timeout)
        except BaseException:
            conn.abort()
            raise
        if connack.reason_code != mqtt5.ConnAckReasonCode.SUCCESS:
            conn.abort()
            raise MqttError(f"connection refused: {connack.reason_code.name}")
        if keep_alive:
            conn._keepalive = loop.create_task(conn._ping_every(keep_alive))
        return conn, connack

    async def subscribe(self, filters: Iterable[tuple[str, int]], timeout: float = 10.0) -> list[int]:
        """Subscribe (pattern, max QoS); returns the granted reason codes, raises if one failed."""
        pid = self._packet_id()
        fut: asyncio.Future[mqtt5.SubAckPacket] = asyncio.get_running_loop().create_future()
        self._waiting[pid] = fut
        wanted = [mqtt5.TopicFilter(p, max_qos=mqtt5.QoS(q)) for p, q in filters]
        self._write(mqtt5.SubscribePacket(pid, wanted).write())
        suback = await asyncio.wait_for(fut, timeout)
        codes = [int(c) for c in suback.reason_codes]
        failed = [f.pattern for f, c in zip(wanted, codes, strict=False) if c >= 0x80]
        if failed:
            raise MqttError(f"subscription refused for {', '.join(failed)}: {codes}")
        return codes

    # --- sending --------------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        """Write one PUBLISH now; returns its packet id (0 for QoS 0). The caller bounds how many
        are in flight (the broker's receive maximum)."""
        pid = self._packet_id() if qos else 0
        self._write(mqtt5.PublishPacket(topic, payload, qos=mqtt5.QoS(qos), retain=retain,
                                        packet_id=pid or None).write())
        return pid

    def write_raw(self, data: bytes) -> None:
        """Write packets the caller encoded itself (e.g. several PUBLISH at once)."""
        self._write(data)

    def next_packet_id(self) -> int:
        """A packet id for a packet the caller encodes itself."""
        return self._packet_id()

    def ack(self, packet_ids: Iterable[int]) -> None:
        """PUBACK these QoS 1 messages, in one write (each once: it also frees receive quota)."""
        ids = packet_ids if isinstance(packet_ids, list) else list(packet_ids)
        if not ids:
            return
        self._write(b"".join([_PUBACK_HEAD + pid.to_bytes(2, "big") for pid in ids]))
        self._unacked = max(0, self._unacked - len(ids))
        if self._flow_paused and self._unacked <= self._receive_max // 2:
            self._flow_paused = False
            self._update_reading()

    @property
    def unacked(self) -> int:
        """QoS 1 deliveries received and not yet acknowledged."""
        return self._unacked

    def pause_reading(self) -> None:
        """Stop reading the socket until `resume_reading()` (the broker then holds back)."""
        self._user_paused = True
        self._update_reading()

    def resume_reading(self) -> None:
        self._user_paused = False
        self._update_reading()

    @property
    def reading(self) -> bool:
        """Not held back by `pause_reading()` nor by unacknowledged deliveries."""
        return not (self._user_paused or self._flow_paused)

    def _rested(self) -> None:
        self._resting = False
        self._update_reading()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self.reading and not self._resting:
            if not transport.is_reading():
                transport.resume_reading()
        elif transport.is_reading():
            transport.pause_reading()

    async def disconnect(self) -> None:
        """Say goodbye (the session stays on the broker when it was made persistent)."""
        if self._transport is not None and not self._transport.is_closing():
            self._write(mqtt5.DisconnectPacket().write())
            self._transport.close()
        await asyncio.shield(self.closed)

    def abort(self) -> None:
        """Drop the connection at once, without DISCONNECT (a last will is then published)."""
        if self._transport is not None:
            self._transport.abort()

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    # --- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's do not subclass asyncio.Transport: no isinstance check).
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        error = exc or ConnectionResetError("connection closed")
        for fut in [self._connack, *self._waiting.values()]:
            if fut is not None and not fut.done():
                fut.set_exception(error)
        self._waiting.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._rest:
            data = self._rest + data
        view = memoryview(data)
        publishes: list[mqtt5.PublishPacket] = []
        acks: list[mqtt5.PubAckPacket] = []
        offset = 0
        end = len(data)
        read = mqtt5.read
        try:
            while offset < end:
                try:
                    packet, n = read(view[offset:])
                except IndexError:  # an incomplete packet: wait for the rest
                    break
                offset += n
                if type(packet) is mqtt5.PublishPacket:
                    publishes.append(packet)
                    if packet.packet_id:  # QoS 1: counts until acknowledged
                        self._unacked += 1
                elif type(packet) is mqtt5.PubAckPacket:
                    acks.append(packet)
                else:
                    self._control(packet)
        except (ValueError, MqttError) as exc:
            log.error("MQTT protocol error, closing the connection: %s", exc)
            self.abort()
            return
        finally:
            self._rest = bytes(view[offset:]) if offset < end else b""
            view.release()
        if self._unacked >= self._receive_max and not self._flow_paused:
            self._flow_paused = True
            self._update_reading()
        if self._read_interval and not self._resting and len(data) < _BIG_READ:
            self._resting = True
            self._update_reading()
            asyncio.get_running_loop().call_later(self._read_interval, self._rested)
        if publishes and self._on_publish is not None:
            self._on_publish(publishes)
        if acks and self._on_ack is not None:
            self._on_ack(acks)

    # --- internals ------------------------------------------------------------------------------

    def _control(self, packet: object) -> None:
        if isinstance(packet, mqtt5.ConnAckPacket):
            if self._connack is not None and not self._connack.done():
                self._connack.set_result(packet)
        elif isinstance(packet, mqtt5.SubAckPacket):
            fut = self._waiting.pop(packet.packet_id, None)
            if fut is not None and not fut.done():
                fut.set_result(packet)
        elif isinstance(packet, mqtt5.PingRespPacket):
            self._pong = True
        elif isinstance(packet, mqtt5.DisconnectPacket):
            log.warning("the broker closed the session: %s %s", packet.reason_code.name,
                        packet.reason_str or "")
            self.abort()
        elif isinstance(packet, mqtt5.PubRelPacket):  # QoS 2 is never asked for
            raise MqttError("unexpected QoS 2 flow")

    async def _ping_every(self, keep_alive: int) -> None:
        """PINGREQ at half the keep-alive; no PINGRESP by the next one means the link is dead."""
        while True:
            await asyncio.sleep(keep_alive / 2)
            if not self._pong and self.reading:  # (not reading: the PINGRESP waits in the socket)
                log.warning("no PINGRESP from the broker: dropping the connection")
                self.abort()
                return
            self._pong = False
            self._write(_PINGREQ)

    def _packet_id(self) -> int:
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    def _write(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise ConnectionResetError("MQTT connection closed")
        self._transport.write(data)


_PINGREQ = mqtt5.PingReqPacket().write()
_BIG_READ = 128 * 1024
"""A chunk this large (asyncio reads up to 256 KiB) suggests more is waiting: read on, no rest."""
_PUBACK_HEAD = b"\x40\x02"
"""PUBACK, remaining length 2: reason "success" in its short form (the reason code left out)."""
