"""One bench device on the wire: an MQTT v5 session publishing QoS 1, and what it sent.

PUBLISH packets are encoded by `mqtt5` and queued per device; `flush()` writes them in one
`write()`. PUBACKs arrive as one list per socket chunk (`MqttConnection.on_ack`) and are counted
there. A PUBACK whose reason code is >= 0x80 (e.g. 135 "not authorized") means the broker did not
take the message: it is counted as refused, not as acknowledged, and taken off the per-template
counts so that the expected rows stay exact.

Waking up costs more than reading (each wake-up of a process is tens of microseconds of CPU on a
small VM), so the socket's receive low-water mark (`SO_RCVLOWAT`) is kept at the size of the
PUBACKs still due, up to `ACK_BATCH` of them: the kernel wakes the loop once per batch of PUBACKs
instead of once per PUBACK. Every PUBACK is at least 4 bytes, so the mark never exceeds what is
still to come and nothing is left unread (a PINGRESP is read at once when nothing is in flight).
"""

from __future__ import annotations

import asyncio
import socket
from array import array
from typing import Any

import mqtt5

from maillage.mqtt.connection import MqttConnection

QOS1 = mqtt5.QoS.AT_LEAST_ONCE
REFUSED = 0x80
"""PUBACK reason codes from here up say the broker did not take the message."""
PUBACK_MIN = 4
"""Bytes of the shortest PUBACK (fixed header, packet id; reason code "success" left out)."""
ACK_BATCH = 64
"""PUBACKs the kernel gathers before waking the loop (when that many are due)."""


class _Connection(MqttConnection):
    """`MqttConnection` that keeps its socket, to set the receive low-water mark."""

    sock: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.sock = transport.get_extra_info("socket")


class BenchDevice:
    """A device session: its connection, in-flight window and counts per template."""

    __slots__ = ("username", "topic", "conn", "window", "sent", "acked", "refused",
                 "per_template", "pending", "pending_ids", "failed", "_template_of", "_lowat")

    def __init__(self, username: str, topic: str, templates: int) -> None:
        self.username = username
        self.topic = topic
        self.conn: _Connection | None = None
        self.window = 0
        """Unacknowledged messages allowed (at most the broker's receive maximum)."""
        self.sent = 0
        self.acked = 0
        """PUBACKs received, refusals included (what frees the window)."""
        self.refused = 0
        self.per_template = [0] * templates
        """Messages sent and not refused, per template index of the archetype."""
        self.pending: list[bytes] = []
        self.pending_ids: list[int] = []
        self.failed: str | None = None
        self._template_of = array("H", bytes(2 * 65536))  # packet id -> template, for refusals
        self._lowat = 1

    async def connect(self, host: str, port: int, client_id: str, password: str,
                      window: int) -> None:
        """Open the session with the device's own credentials; the window fits the broker's."""
        conn, connack = await _Connection.connect(
            host, port, client_id, username=self.username, password=password, keep_alive=60,
            on_ack=self.on_ack)
        assert isinstance(conn, _Connection)
        self.conn = conn
        self.window = max(1, min(window, connack.receive_max))

    @property
    def can_send(self) -> bool:
        return self.sent - self.acked < self.window and self.failed is None

    def queue(self, payload: bytes, template: int) -> None:
        """Encode one QoS 1 PUBLISH of `payload`; written at the next `flush()`."""
        conn = self.conn
        assert conn is not None
        pid = conn.next_packet_id()
        self.pending.append(mqtt5.PublishPacket(self.topic, payload, qos=QOS1, packet_id=pid).write())
        self.pending_ids.append(pid)
        self._template_of[pid] = template
        self.per_template[template] += 1
        self.sent += 1

    def flush(self) -> None:
        """Write the queued PUBLISH packets at once (on a closed connection: unsend them)."""
        if not self.pending:
            return
        data = b"".join(self.pending)
        self.pending.clear()
        assert self.conn is not None
        try:
            self.conn.write_raw(data)
        except ConnectionError as exc:
            self.failed = self.failed or f"{self.username}: connection lost ({exc})"
            for pid in self.pending_ids:
                self.per_template[self._template_of[pid]] -= 1
            self.sent -= len(self.pending_ids)
            self.pending_ids.clear()
            return
        self.pending_ids.clear()
        self._wake_for_acks()

    def on_ack(self, acks: list[mqtt5.PubAckPacket]) -> None:
        """Count one chunk of PUBACKs."""
        self.acked += len(acks)
        for p in acks:
            if p.reason_code.value >= REFUSED:
                self._refuse(p)
        self._wake_for_acks()

    def _refuse(self, p: mqtt5.PubAckPacket) -> None:
        self.refused += 1
        self.per_template[self._template_of[p.packet_id]] -= 1
        if self.failed is None:
            self.failed = f"{self.username}: publish refused ({p.reason_code.name})"

    def _wake_for_acks(self) -> None:
        """Have the kernel wake the loop once the next batch of due PUBACKs is in."""
        lowat = max(1, PUBACK_MIN * min(self.sent - self.acked, ACK_BATCH))
        if lowat != self._lowat and self.conn is not None and self.conn.sock is not None:
            self._lowat = lowat
            try:
                self.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, lowat)
            except OSError:  # closed meanwhile: the loop notices
                pass

    @property
    def open(self) -> bool:
        return self.conn is not None and self.conn.is_open

    @property
    def settled(self) -> bool:
        """Every message sent has its PUBACK (or never will: the connection is gone)."""
        return self.acked >= self.sent or not self.open

    async def close(self) -> None:
        if self.conn is not None and self.conn.is_open:
            await self.conn.disconnect()
