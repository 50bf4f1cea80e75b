"""Sinks that only read envelopes (control's presence, commands' acks) skip a record that does not
decode instead of raising: raising would stop their processor on it at every restart."""

from __future__ import annotations

from aiokafka.structs import ConsumerRecord

from maillage import topics
from maillage.envelope import Envelope, SourceFormat
from maillage.processors.commands.acks import AckSink
from maillage.processors.control.adaptive import PresenceSink


def _record(value: bytes, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topics.EVENTS, 0, offset, 0, 0, b"t/d", value, None, len(b"t/d"),
                          len(value), ())


def _ack(command_id: str) -> bytes:
    return Envelope.trusted("t", "lamp-1", "ack", 1_700_000_000_000_000, 1_700_000_000_100_000,
                            SourceFormat.ACK, {}, {"command_id": command_id},
                            event="done").to_kafka()


def test_presence_sink_skips_what_does_not_decode() -> None:
    sink = PresenceSink("postgresql://unused")
    sink.add(_record(b'{"kind":"event","presence_count": oops', 1))  # the markers, not JSON
    sink.add(_record(b'{"kind":"event","presence_count":1}', 2))  # JSON, not an envelope
    assert sink.skipper.skipped == 2
    assert not sink.full()


def test_ack_sink_skips_what_does_not_decode_and_keeps_the_rest() -> None:
    sink = AckSink("postgresql://unused")
    sink.add(_record(b'{"kind":"ack", truncated', 1))
    sink.add(_record(_ack("42"), 2))
    assert sink.skipper.skipped == 1
    assert [a[2] for a in sink._acks] == [42]
