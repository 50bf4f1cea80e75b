"""Real frames of every format through Mosquitto, two gateways, Kafka and storage, checked row by row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from tests.ingest.ingest_helpers import frame, hist_group, std_group
from tests.ingest_e2e.ingest_e2e_helpers import IngestStack, Publisher, dlq_counts, utc, wait_until

BT = utc(2026, 11, 20, 12, 0)
EPOCH_BT = int(BT.timestamp())


def _publish_all(stack: IngestStack, device: object, messages: list[tuple[str, bytes]]) -> None:
    pub = Publisher(stack, device)  # type: ignore[arg-type]
    try:
        for channel, payload in messages:
            rc = pub.publish(channel, payload)
            assert not rc.is_failure, rc
    finally:
        pub.close()


def _values(rows: list[tuple[str, datetime, float, datetime]]) -> list[tuple[str, datetime, float]]:
    return [(m, ts, v) for m, ts, v, _ in rows]


def test_senml_packs_with_base_fields_are_stored_value_by_value(stack: IngestStack) -> None:
    """Base name, time, unit, value; relative and absolute times; kW/kWh conversions."""
    tenant = stack.new_tenant()
    meter, env = stack.register(tenant, [("m-senml", "meter"), ("env-1", "care_env")])
    absolute = [
        {"bver": 10, "bn": "urn:dev:mac:0024befffe804ff1:", "bt": EPOCH_BT, "bu": "W",
         "n": "power", "v": 512},
        {"n": "power", "t": 60, "v": 530.5},
        {"n": "energy", "u": "kWh", "t": 60, "v": 1234.5},
        {"n": "voltage", "u": "V", "v": 231.2},
        {"n": "apparent_power", "u": "kVA", "t": 900, "v": 0.75},
        # A base value is added to every later value (RFC 8428): an index sent as increments.
        {"bt": EPOCH_BT + 900, "bu": "Wh", "bv": 1_000_000, "n": "energy_import", "v": 250},
    ]
    relative = [
        {"bn": "env-1/", "n": "temperature", "u": "Cel", "v": 21.5, "t": -120},
        {"n": "humidity", "u": "%RH", "v": 48, "t": -120},
        {"n": "temperature", "u": "Cel", "v": 21.75},
        {"n": "battery", "u": "%EL", "v": 97},
    ]
    _publish_all(stack, meter, [("up/senml", orjson.dumps(absolute))])
    _publish_all(stack, env, [("up/senml", orjson.dumps(relative))])

    assert wait_until(lambda: len(stack.readings(tenant, "m-senml")) == 6)
    assert _values(stack.readings(tenant, "m-senml")) == [
        ("active_power_w", BT, 512.0),
        ("voltage_v", BT, 231.2),
        ("active_power_w", BT + timedelta(seconds=60), 530.5),
        ("energy_import_wh", BT + timedelta(seconds=60), 1_234_500.0),
        ("apparent_power_va", BT + timedelta(seconds=900), 750.0),
        ("energy_import_wh", BT + timedelta(seconds=900), 1_000_250.0),
    ]
    assert wait_until(lambda: len(stack.readings(tenant, "env-1")) == 4)
    rows = stack.readings(tenant, "env-1")
    # Relative times count from the gateway's receive time, kept with every row.
    assert [(m, ts - rx, v) for m, ts, v, rx in rows] == [
        ("humidity_pct", timedelta(seconds=-120), 48.0),
        ("temperature_c", timedelta(seconds=-120), 21.5),
        ("battery_pct", timedelta(0), 97.0),
        ("temperature_c", timedelta(0), 21.75),
    ]
    assert stack.rejected(tenant) == []


def _historique(base: str = "012345678", papp: str = "00450") -> list[bytes]:
    return [hist_group("ADCO", "031762120151"), hist_group("OPTARIF", "BASE"),
            hist_group("ISOUSC", "30"), hist_group("BASE", base), hist_group("PTEC", "TH.."),
            hist_group("IINST", "002"), hist_group("IMAX", "090"), hist_group("PAPP", papp),
            hist_group("MOTDETAT", "000000")]


def _standard() -> list[bytes]:
    return [std_group("ADSC", "041876097802"), std_group("VTIC", "02"),
            std_group("DATE", "", "H261120083000"), std_group("NGTF", "     BASE       "),
            std_group("EAST", "001234567"), std_group("EASF01", "000800000"),
            std_group("EASF02", "000434567"), std_group("IRMS1", "003"),
            std_group("URMS1", "231"), std_group("PREF", "09"), std_group("SINSTS", "00690")]


def test_tic_frames_valid_and_broken(stack: IngestStack) -> None:
    """Historique (receive time) and standard (DATE) frames stored; broken ones rejected with reasons."""
    tenant = stack.new_tenant()
    hist, std, bad = stack.register(tenant, [("linky-h", "meter"), ("linky-s", "meter"),
                                             ("linky-bad", "meter")])
    _publish_all(stack, hist, [("up/tic", frame(_historique()))])
    _publish_all(stack, std, [("up/tic", frame(_standard(), stx=False))])
    broken = bytearray(frame(_historique()))
    broken[broken.index(b"PAPP 00450 ") + 11] ^= 0x01  # the PAPP group's checksum character
    wrong_label = frame([hist_group("ADCO", "031762120151"), hist_group("base", "012345678")])
    bad_frames = [
        (bytes(broken), "bad_checksum"),
        (frame(_historique())[:-25], "truncated"),  # cut inside a group: no CR, no ETX
        (wrong_label, "unknown_label"),
        (frame(_historique(base="01234X678")), "bad_value"),
        ("é".encode() + frame(_historique()), "malformed"),
    ]
    counted = dlq_counts(stack)
    _publish_all(stack, bad, [("up/tic", f) for f, _ in bad_frames])

    assert wait_until(lambda: len(stack.readings(tenant, "linky-h")) == 4)
    rows = stack.readings(tenant, "linky-h")
    assert {(m, v) for m, _, v, _ in rows} == {
        ("energy_import_wh", 12_345_678.0), ("subscribed_power_va", 6000.0),
        ("current_a", 2.0), ("apparent_power_va", 450.0)}
    assert all(ts == rx for _, ts, _, rx in rows)  # historique has no clock: receive time
    assert wait_until(lambda: len(stack.readings(tenant, "linky-s")) == 7)
    at = datetime(2026, 11, 20, 7, 30, tzinfo=UTC)  # H = winter time, UTC+1
    assert _values(stack.readings(tenant, "linky-s")) == [
        ("apparent_power_va", at, 690.0), ("current_a", at, 3.0),
        ("energy_import_f01_wh", at, 800_000.0), ("energy_import_f02_wh", at, 434_567.0),
        ("energy_import_wh", at, 1_234_567.0), ("subscribed_power_va", at, 9000.0),
        ("voltage_v", at, 231.0)]
    assert wait_until(lambda: len(stack.rejected(tenant)) == len(bad_frames))
    got = stack.rejected(tenant)  # two gateways: arrival order is not publication order
    assert sorted((d, r, p) for d, r, _, p in got) == sorted(("linky-bad", r, f) for f, r in bad_frames)
    assert "PAPP" in next(detail for _, r, detail, _ in got if r == "bad_checksum")
    now = dlq_counts(stack)  # every rejection is counted (Prometheus, all gateways summed)
    assert {r: now[r] - counted.get(r, 0) for _, r in bad_frames} == {r: 1 for _, r in bad_frames}
    assert stack.readings(tenant, "linky-bad") == []


def test_lighting_and_care_payloads(stack: IngestStack) -> None:
    """Streetlight telemetry (JSON, SenML, acks) and care events and readings, with their rejections."""
    tenant = stack.new_tenant()
    lamp, cabinet, button, motion = stack.register(tenant, [
        ("sl-1", "streetlight"), ("cab-1", "lighting_cabinet"), ("pendant-1", "care_button"),
        ("pir-1", "care_motion")])
    t0 = "2026-11-20T17:30:00Z"
    lamp_msgs = [
        ("up/json", orjson.dumps({"ts": t0, "status": "ok",
                                  "values": {"lamp_on": 1, "dimming_pct": 40, "lamp_power_w": 42.5}})),
        ("up/senml", orjson.dumps([{"bn": "sl-1:", "bt": EPOCH_BT, "n": "lamp", "vb": True},
                                   {"n": "dimming", "u": "%", "v": 60},
                                   {"n": "lamp_power", "u": "W", "v": 38}])),
        ("up/ack", orjson.dumps({"id": "cmd-7", "status": "done", "ts": t0, "level": 40})),
        ("up/json", orjson.dumps({"ts": t0, "values": {"dimming_pct": 140}})),  # out of range
        ("up/json", orjson.dumps({"ts": t0, "status": "broken", "values": {"lamp_on": 0}})),
    ]
    _publish_all(stack, lamp, lamp_msgs)
    _publish_all(stack, cabinet, [("up/json", orjson.dumps(
        {"ts": t0, "values": {"active_power_w": 1520.0, "energy_import_wh": 88_000}}))])
    _publish_all(stack, button, [
        ("up/event", orjson.dumps({"ts": "2026-11-20T03:12:00Z", "event": "fall_detected",
                                   "values": {"battery_pct": 81}, "confidence": 0.93})),
        ("up/event", orjson.dumps({"event": "Fall Detected"})),  # not a snake case name
    ])
    _publish_all(stack, motion, [
        ("up/event", orjson.dumps({"ts": "2026-11-20T03:10:00Z", "event": "motion", "room": "hall"})),
        ("up/senml", orjson.dumps([{"bn": "pir-1:", "bt": EPOCH_BT, "n": "motion", "vb": False}])),
    ])

    assert wait_until(lambda: len(stack.readings(tenant, "sl-1")) == 6)
    at = datetime(2026, 11, 20, 17, 30, tzinfo=UTC)
    assert _values(stack.readings(tenant, "sl-1")) == [
        ("dimming_pct", BT, 60.0), ("lamp_on", BT, 1.0), ("lamp_power_w", BT, 38.0),
        ("dimming_pct", at, 40.0), ("lamp_on", at, 1.0), ("lamp_power_w", at, 42.5)]
    assert wait_until(lambda: len(stack.events(tenant, "sl-1")) == 2)  # the ack and the lamp status
    by_event = {event: (ts, attrs) for ts, event, attrs in stack.events(tenant, "sl-1")}
    ts, attrs = by_event["done"]
    assert (ts, attrs["command_id"], attrs["level"]) == (at, "cmd-7", 40.0)
    assert by_event["lamp_status"] == (at, {"status": "ok"})
    assert wait_until(lambda: len(stack.readings(tenant, "cab-1")) == 2)
    assert _values(stack.readings(tenant, "cab-1")) == [("active_power_w", at, 1520.0),
                                                        ("energy_import_wh", at, 88_000.0)]
    assert wait_until(lambda: len(stack.events(tenant, "pendant-1")) == 1)
    ts, event, attrs = stack.events(tenant, "pendant-1")[0]
    assert (ts, event, attrs["confidence"], attrs["values"]) == (
        utc(2026, 11, 20, 3, 12), "fall_detected", 0.93, {"battery_pct": 81.0})
    assert wait_until(lambda: len(stack.events(tenant, "pir-1")) == 1)
    assert [(e, a["room"]) for _, e, a in stack.events(tenant, "pir-1")] == [("motion", "hall")]
    assert wait_until(lambda: len(stack.readings(tenant, "pir-1")) == 1)
    assert _values(stack.readings(tenant, "pir-1")) == [("motion", BT, 0.0)]

    assert wait_until(lambda: len(stack.rejected(tenant)) == 3)
    assert sorted((d, r) for d, r, _, _ in stack.rejected(tenant)) == [
        ("pendant-1", "invalid_schema"), ("sl-1", "bad_value"), ("sl-1", "invalid_schema")]
