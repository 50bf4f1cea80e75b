"""The asyncio MQTT v5 connection against the real Mosquitto, and its stream decoding."""

from __future__ import annotations

import asyncio
import random
import uuid

import mqtt5
import pytest

from maillage.mqtt import SESSION_KEPT, MqttConnection, MqttError
from maillage.stack.mosquitto import GATEWAY_USER, MAX_INFLIGHT


def _packets(n: int) -> list[bytes]:
    return [mqtt5.PublishPacket(f"maillage/t/d{i}/up/json", f'{{"i": {i}}}'.encode() * (i % 7 + 1),
                                qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=i % 65535 + 1).write()
            for i in range(n)]


def test_stream_split_anywhere_decodes_every_packet_in_order() -> None:
    """Packets cut at arbitrary byte boundaries come out whole, in order, once each."""

    async def run() -> list[int]:
        got: list[int] = []
        conn = MqttConnection(lambda pubs: got.extend(p.packet_id or 0 for p in pubs), None)
        data = b"".join(_packets(2000))
        rnd = random.Random(7)
        i = 0
        while i < len(data):
            step = rnd.choice([1, 2, 3, 5, 17, 300, 4096])
            conn.data_received(data[i:i + step])
            i += step
        return got

    got = asyncio.run(run())
    assert got == [i % 65535 + 1 for i in range(2000)]


def test_malformed_stream_closes_the_connection() -> None:
    async def run() -> bool:
        class FakeTransport(asyncio.Transport):
            aborted = False

            def abort(self) -> None:
                self.aborted = True

        conn = MqttConnection(None, None)
        transport = FakeTransport()
        conn.connection_made(transport)
        conn.data_received(b"\xf0\x00")  # AUTH without its properties
        return transport.aborted

    assert asyncio.run(run())


def test_connect_subscribe_publish_and_acks_on_mosquitto(services) -> None:  # type: ignore[no-untyped-def]
    """Persistent session, a retained $SYS message received, 500 QoS 1 publications acknowledged."""

    async def run() -> tuple[bool, int, set[int], set[int], list[str]]:
        received: list[str] = []
        acked: set[int] = set()
        done = asyncio.Event()

        def on_ack(acks: list[mqtt5.PubAckPacket]) -> None:
            acked.update(a.packet_id for a in acks)
            if len(acked) >= 500:
                done.set()

        conn, connack = await MqttConnection.connect(
            "127.0.0.1", services.mqtt_port, f"t-{uuid.uuid4().hex[:8]}", username=GATEWAY_USER,
            password=services.mqtt_creds.gateway_password, clean_start=True,
            session_expiry=SESSION_KEPT, on_publish=lambda ps: received.extend(p.topic for p in ps),
            on_ack=on_ack)
        await conn.subscribe([("$SYS/broker/version", 0)])
        sent = {conn.publish(f"maillage/t/d{i}/down/cmd", b"on", qos=1) for i in range(500)}
        await asyncio.wait_for(done.wait(), 20)
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.05)
        await conn.disconnect()
        return connack.session_present, connack.receive_max, sent, acked, received

    present, receive_max, sent, acked, received = asyncio.run(run())
    assert not present
    assert receive_max == MAX_INFLIGHT  # max_inflight_messages of the embedded broker's config
    assert len(sent) == 500 and acked == sent
    assert received == ["$SYS/broker/version"]


def test_refusals_raise(services) -> None:  # type: ignore[no-untyped-def]
    async def bad_password() -> None:
        await MqttConnection.connect("127.0.0.1", services.mqtt_port, "t-bad",
                                     username=GATEWAY_USER, password="wrong")

    with pytest.raises(MqttError, match="BAD_USER_NAME_OR_PASSWORD|NOT_AUTHORIZED"):
        asyncio.run(bad_password())


class _Transport(asyncio.Transport):
    """Records what the connection does to its socket."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = True
        self.written = b""

    def is_reading(self) -> bool:
        return self.reading

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written += bytes(data)


def test_stops_reading_at_receive_max_unacknowledged_and_resumes_at_half() -> None:
    async def run() -> list[tuple[bool, int]]:
        conn = MqttConnection(lambda pubs: None, None, receive_max=4)
        transport = _Transport()
        conn.connection_made(transport)
        states = []
        conn.data_received(b"".join(_packets(3)))
        states.append((transport.reading, conn.unacked))
        conn.data_received(b"".join(_packets(2)))  # 5 >= 4: stop reading
        states.append((transport.reading, conn.unacked))
        conn.ack([1, 2])  # 3 left: more than half
        states.append((transport.reading, conn.unacked))
        conn.ack([3])  # 2 left: half
        states.append((transport.reading, conn.unacked))
        conn.pause_reading()  # the caller's pause wins over acknowledgements
        conn.ack([4, 5])
        states.append((transport.reading, conn.unacked))
        conn.resume_reading()
        states.append((transport.reading, conn.unacked))
        assert transport.written == b"".join(b"\x40\x02" + i.to_bytes(2, "big") for i in range(1, 6))
        return states

    assert asyncio.run(run()) == [(True, 3), (False, 5), (False, 3), (True, 2), (False, 0), (True, 0)]


def test_read_interval_leaves_the_socket_alone_after_a_chunk() -> None:
    async def run() -> list[bool]:
        conn = MqttConnection(lambda pubs: None, None, read_interval=0.05)
        transport = _Transport()
        conn.connection_made(transport)
        conn.data_received(b"".join(_packets(2)))
        states = [transport.reading]
        await asyncio.sleep(0.1)
        states.append(transport.reading)
        conn.data_received(b"".join(_packets(1000)) * 3)  # a large chunk: more is likely waiting
        states.append(transport.reading)
        return states

    assert asyncio.run(run()) == [False, True, True]
