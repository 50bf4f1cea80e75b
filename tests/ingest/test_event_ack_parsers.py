"""Care events (`up/event`) and command acknowledgements (`up/ack`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_helpers import RECEIVED, ctx

from maillage.envelope import Envelope, SourceFormat
from maillage.errors import DlqReason, PayloadError
from maillage.ingest.formats import parse_message
from maillage.ingest.formats.event import KNOWN_EVENTS


def event(doc: Any, device_type: str | None = "care_button") -> Envelope:
    envelopes = parse_message(orjson.dumps(doc), ctx("up/event", device_type))
    assert len(envelopes) == 1
    return envelopes[0]


def ack(doc: Any) -> Envelope:
    envelopes = parse_message(orjson.dumps(doc), ctx("up/ack", "streetlight"))
    assert len(envelopes) == 1
    return envelopes[0]


def test_fall_detected_with_details_and_values() -> None:
    """The event name, its time, its details and a battery level."""
    env = event({"ts": "2026-11-23T18:04:55+01:00", "event": "fall_detected", "seq": 7,
                 "confidence": 0.93, "posture": "lying", "values": {"battery_pct": 81}})
    assert env.kind == "event"
    assert env.source_format is SourceFormat.EVENT
    assert env.event == "fall_detected"
    assert env.ts == datetime(2026, 11, 23, 17, 4, 55, tzinfo=UTC)
    assert env.seq == 7
    assert env.values == {"battery_pct": 81.0}
    assert env.attrs == {"confidence": 0.93, "posture": "lying"}
    assert env.unknown_metrics == ()


@pytest.mark.parametrize(("ts", "expected"), [
    pytest.param(1_795_453_495_000, datetime(2026, 11, 23, 17, 4, 55, tzinfo=UTC), id="epoch-ms"),
    pytest.param(1_795_453_495, datetime(2026, 11, 23, 17, 4, 55, tzinfo=UTC), id="epoch-s"),
    pytest.param(None, RECEIVED, id="absent"),
])
def test_event_time(ts: int | None, expected: datetime) -> None:
    """Epoch times as canonical JSON; without a time, the receive time."""
    doc: dict[str, Any] = {"event": "panic_button"}
    if ts is not None:
        doc["ts"] = ts
    assert event(doc).ts == expected


@pytest.mark.parametrize("field", ["sensor", "device"])
def test_relayed_sensor_is_named(field: str) -> None:
    """A hub names the sensor that fired; the gateway re-keys it."""
    env = event({"event": "door_open", field: "door-12"}, device_type="care_hub")
    assert env.attrs == {"sensor": "door-12"}
    assert env.device_id == "dev-1"


def test_unknown_event_is_kept_and_flagged() -> None:
    """A well-formed name outside the known set is accepted, flagged."""
    env = event({"event": "stove_left_on", "minutes": 45})
    assert env.event == "stove_left_on"
    assert env.attrs == {"minutes": 45.0, "unknown_event": True}


def test_known_events_are_not_flagged() -> None:
    """Every known event parses without the flag."""
    for name in sorted(KNOWN_EVENTS):
        assert "unknown_event" not in event({"event": name}).attrs


@pytest.mark.parametrize(("doc", "reason", "detail"), [
    pytest.param(b"{", DlqReason.MALFORMED, "JSON", id="bad-json"),
    pytest.param([{"event": "motion"}], DlqReason.INVALID_SCHEMA, "object", id="list"),
    pytest.param({"ts": 1}, DlqReason.INVALID_SCHEMA, "event", id="no-event"),
    pytest.param({"event": "FallDetected"}, DlqReason.INVALID_SCHEMA, "snake", id="camel-case"),
    pytest.param({"event": "fall detected"}, DlqReason.INVALID_SCHEMA, "snake", id="space"),
    pytest.param({"event": ""}, DlqReason.INVALID_SCHEMA, "snake", id="empty"),
    pytest.param({"event": "1st_fall"}, DlqReason.INVALID_SCHEMA, "snake", id="digit-first"),
    pytest.param({"event": "a" * 65}, DlqReason.INVALID_SCHEMA, "snake", id="too-long"),
    pytest.param({"event": 3}, DlqReason.INVALID_SCHEMA, "snake", id="number"),
    pytest.param({"event": "motion", "ts": "yesterday"}, DlqReason.BAD_TIMESTAMP, "ts",
                 id="bad-ts"),
    pytest.param({"event": "motion", "ts": "0001-01-01T00:00:00+01:00"},
                 DlqReason.BAD_TIMESTAMP, "range", id="ts-out-of-range"),
    pytest.param({"event": "motion", "room": {"name": "kitchen"}}, DlqReason.INVALID_SCHEMA,
                 "room", id="nested-detail"),
    pytest.param({"event": "motion", "values": [1]}, DlqReason.INVALID_SCHEMA, "values",
                 id="values-list"),
    pytest.param({"event": "motion", "values": {"Battery": 3}}, DlqReason.UNKNOWN_METRIC,
                 "Battery", id="bad-metric-name"),
    pytest.param({"event": "motion", "values": {"battery_pct": "low"}}, DlqReason.BAD_VALUE,
                 "battery_pct", id="bad-metric-value"),
    pytest.param({"event": "motion", "sensor": "bad id!"}, DlqReason.INVALID_SCHEMA, "sensor",
                 id="bad-sensor-id"),
    pytest.param({"event": "motion", "sensor": "a", "device": "b"}, DlqReason.INVALID_SCHEMA,
                 "different", id="two-sensors"),
    pytest.param({"event": "motion", "seq": "1"}, DlqReason.INVALID_SCHEMA, "seq", id="bad-seq"),
])
def test_rejected_events(doc: Any, reason: DlqReason, detail: str) -> None:
    """Each defect maps to its DLQ reason."""
    raw = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    with pytest.raises(PayloadError) as err:
        parse_message(raw, ctx("up/event", "care_hub"))
    assert err.value.reason is reason
    assert detail in err.value.detail


@pytest.mark.parametrize(("doc", "status", "attrs", "ts"), [
    pytest.param({"id": "cmd-7f3a", "status": "done"}, "done", {"command_id": "cmd-7f3a"},
                 RECEIVED, id="done"),
    pytest.param({"id": 42, "status": "failed", "error": "driver timeout",
                  "ts": "2026-11-23T17:04:00Z"}, "failed",
                 {"command_id": "42", "error": "driver timeout"},
                 datetime(2026, 11, 23, 17, 4, tzinfo=UTC), id="failed-int-id"),
    pytest.param({"id": "c1", "status": "done", "level": 40}, "done",
                 {"command_id": "c1", "level": 40.0}, RECEIVED, id="extra-detail"),
])
def test_acks(doc: dict[str, Any], status: str, attrs: dict[str, Any], ts: datetime) -> None:
    """An ack carries the status as its event and the command id as text."""
    env = ack(doc)
    assert env.kind == "ack"
    assert env.source_format is SourceFormat.ACK
    assert env.event == status
    assert env.attrs == attrs
    assert env.ts == ts
    assert env.values == {}


@pytest.mark.parametrize(("doc", "reason", "detail"), [
    pytest.param(b"ok", DlqReason.MALFORMED, "JSON", id="bad-json"),
    pytest.param("done", DlqReason.INVALID_SCHEMA, "object", id="string"),
    pytest.param({"status": "done"}, DlqReason.INVALID_SCHEMA, "'id'", id="no-id"),
    pytest.param({"id": "", "status": "done"}, DlqReason.INVALID_SCHEMA, "'id'", id="empty-id"),
    pytest.param({"id": True, "status": "done"}, DlqReason.INVALID_SCHEMA, "'id'",
                 id="boolean-id"),
    pytest.param({"id": "c1"}, DlqReason.INVALID_SCHEMA, "status", id="no-status"),
    pytest.param({"id": "c1", "status": "ok"}, DlqReason.INVALID_SCHEMA, "status",
                 id="unknown-status"),
    pytest.param({"id": "c1", "status": ["done"]}, DlqReason.INVALID_SCHEMA, "status",
                 id="list-status"),
    pytest.param({"id": "c1", "status": "done", "ts": []}, DlqReason.BAD_TIMESTAMP, "ts",
                 id="bad-ts"),
    pytest.param({"id": "c1", "status": "done", "detail": [1]}, DlqReason.INVALID_SCHEMA,
                 "detail", id="nested-detail"),
])
def test_rejected_acks(doc: Any, reason: DlqReason, detail: str) -> None:
    """Each defect maps to its DLQ reason."""
    raw = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    with pytest.raises(PayloadError) as err:
        parse_message(raw, ctx("up/ack"))
    assert err.value.reason is reason
    assert detail in err.value.detail


SCALARS = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)
EVENT_KEYS = st.sampled_from(["ts", "event", "seq", "values", "sensor", "device", "room"])
ACK_KEYS = st.sampled_from(["id", "status", "ts", "error", "level"])


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed event with optional time, sensor, values and details."""
    doc: dict[str, Any] = {"event": draw(st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True))}
    if draw(st.booleans()):
        doc["ts"] = draw(st.integers(1_600_000_000_000, 1_900_000_000_000))
    if draw(st.booleans()):
        doc["sensor"] = draw(st.from_regex(r"[a-z0-9][a-z0-9._:-]{0,20}", fullmatch=True))
    if draw(st.booleans()):
        doc["values"] = {"battery_pct": draw(st.floats(0, 100))}
    doc.update(draw(st.dictionaries(st.sampled_from(["room", "confidence", "note"]),
                                    SCALARS.filter(lambda v: not isinstance(v, str) or len(v) < 50),
                                    max_size=3)))
    return doc


@settings(max_examples=200, deadline=None)
@given(valid_events())
def test_valid_events_always_parse(doc: dict[str, Any]) -> None:
    """Well-formed events always parse to one event envelope."""
    env = event(doc, device_type="care_hub")
    assert env.event == doc["event"]
    assert env.attrs.get("sensor") == doc.get("sensor")


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(EVENT_KEYS, JSON, max_size=6), st.sampled_from(["up/event", "up/ack"]))
def test_random_documents_raise_only_payload_errors(doc: dict[str, Any], channel: str) -> None:
    """Arbitrary JSON objects with the expected keys never crash the parsers."""
    try:
        parse_message(orjson.dumps(doc), ctx(channel, "care_hub"))
    except PayloadError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(ACK_KEYS, JSON, max_size=5))
def test_random_acks_raise_only_payload_errors(doc: dict[str, Any]) -> None:
    """Arbitrary ack-like documents never crash the parser."""
    try:
        parse_message(orjson.dumps(doc), ctx("up/ack"))
    except PayloadError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["up/event", "up/ack"]))
def test_random_bytes_raise_only_payload_errors(payload: bytes, channel: str) -> None:
    """Garbage is rejected with a reason."""
    try:
        parse_message(payload, ctx(channel))
    except PayloadError:
        pass


@settings(max_examples=200, deadline=None)
@given(valid_events(), st.data())
def test_mutated_events_raise_only_payload_errors(doc: dict[str, Any],
                                                  data: st.DataObject) -> None:
    """Byte mutations of a valid event never raise anything but PayloadError."""
    payload = bytearray(orjson.dumps(doc))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(payload) - 1))
        payload[pos] = data.draw(st.integers(0, 255))
    try:
        parse_message(bytes(payload), ctx("up/event", "care_hub"))
    except PayloadError:
        pass
