"""SenML packs (RFC 8428): base fields, times, units, sums, relayed sensors, rejections."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_helpers import RECEIVED, ctx

from maillage.envelope import Envelope, SourceFormat
from maillage.errors import DlqReason, PayloadError
from maillage.ingest.formats import parse_message

T0 = datetime.fromtimestamp(1_276_020_076.001, UTC)


def parse(pack: Any, device_type: str | None = "meter") -> list[Envelope]:
    return parse_message(orjson.dumps(pack), ctx("up/senml", device_type))


def only(pack: Any, device_type: str | None = "meter") -> Envelope:
    envelopes = parse(pack, device_type)
    assert len(envelopes) == 1
    return envelopes[0]


def test_rfc_multiple_datapoints_now() -> None:
    """RFC 8428 5.1.2: voltage and current 'now', names under a base name."""
    env = only([{"bn": "urn:dev:ow:10e2073a01080063:", "n": "voltage", "u": "V", "v": 120.1},
                {"n": "current", "u": "A", "v": 1.2}])
    assert env.source_format is SourceFormat.SENML
    assert env.ts == RECEIVED
    assert env.values == {"voltage_v": 120.1, "current_a": 1.2}
    assert env.attrs == {}


def test_rfc_base_time_and_base_unit_give_one_envelope_per_time() -> None:
    """RFC 8428 5.1.2, second example: base time, base unit, relative offsets."""
    pack = [{"bn": "urn:dev:ow:10e2073a0108006:", "bt": 1.276020076001e09, "bu": "A",
             "bver": 5, "n": "voltage", "u": "V", "v": 120.1}]
    pack += [{"n": "current", "t": -k, "v": round(1.7 - 0.1 * k, 1)} for k in (5, 4, 3, 2, 1)]
    pack += [{"n": "current", "v": 1.7}]
    envelopes = parse(pack)
    assert [e.ts for e in envelopes] == [T0 - timedelta(seconds=k) for k in (5, 4, 3, 2, 1, 0)]
    assert [e.values for e in envelopes] == [
        {"current_a": 1.2}, {"current_a": 1.3}, {"current_a": 1.4}, {"current_a": 1.5},
        {"current_a": 1.6}, {"voltage_v": 120.1, "current_a": 1.7},
    ]


@pytest.mark.parametrize(("times", "expected"), [
    pytest.param({"t": -60}, RECEIVED - timedelta(seconds=60), id="negative-relative"),
    pytest.param({"t": 0}, RECEIVED, id="zero-is-now"),
    pytest.param({"t": 2.5}, RECEIVED + timedelta(seconds=2.5), id="positive-relative"),
    pytest.param({"bt": -30, "t": -30}, RECEIVED - timedelta(seconds=60), id="base-plus-time"),
    pytest.param({"t": 2**28 - 1}, RECEIVED + timedelta(seconds=2**28 - 1),
                 id="just-below-2**28-is-relative"),
    pytest.param({"t": 2**28}, datetime.fromtimestamp(2**28, UTC), id="2**28-is-absolute"),
    pytest.param({"bt": 1.79e9, "t": 0.25}, datetime.fromtimestamp(1_790_000_000.25, UTC),
                 id="absolute-float"),
])
def test_times(times: dict[str, float], expected: datetime) -> None:
    """Times below 2**28 are relative to the receive time, others absolute (RFC 8428 4.5.3)."""
    env = only([{"n": "temperature", "u": "Cel", "v": 20.5, **times}])
    assert env.ts == expected
    assert env.received_at == RECEIVED


@pytest.mark.parametrize(("record", "values"), [
    pytest.param({"n": "power", "u": "kW", "v": 1.5}, {"active_power_w": 1500.0}, id="kW"),
    pytest.param({"n": "energy", "u": "kWh", "v": 12.5}, {"energy_import_wh": 12500.0},
                 id="kWh"),
    pytest.param({"n": "energy", "u": "Wh", "s": 12345}, {"energy_import_wh": 12345.0},
                 id="Wh-index-as-sum"),
    pytest.param({"n": "power", "u": "W", "v": 500, "s": 7_200_000},
                 {"active_power_w": 500.0, "energy_import_wh": 2000.0}, id="W-sum-is-W.s"),
    pytest.param({"n": "export", "u": "W", "s": 3_600_000}, {"energy_export_wh": 1000.0},
                 id="export-sum"),
    pytest.param({"n": "energy_export_wh", "u": "kWh", "v": 2}, {"energy_export_wh": 2000.0},
                 id="canonical-name-converted"),
    pytest.param({"n": "current", "u": "mA", "v": 250}, {"current_a": 0.25}, id="mA"),
    pytest.param({"n": "temperature", "u": "K", "v": 293.15}, {"temperature_c": 20.0},
                 id="kelvin"),
    pytest.param({"n": "rssi", "u": "dBW", "v": -100}, {"rssi_dbm": -70.0}, id="dBW"),
    pytest.param({"n": "humidity", "u": "%RH", "v": 45}, {"humidity_pct": 45.0}, id="%RH"),
    pytest.param({"n": "battery", "u": "%EL", "v": 80}, {"battery_pct": 80.0}, id="%EL"),
    pytest.param({"n": "lux", "u": "lx", "v": 12}, {"illuminance_lux": 12.0}, id="unit-only"),
    pytest.param({"n": "urn:dev:ow:10e2073a01080063", "u": "Cel", "v": 23.1},
                 {"temperature_c": 23.1}, id="name-is-the-device"),
    pytest.param({"n": "apparent_power", "u": "kVA", "v": 3.2}, {"apparent_power_va": 3200.0},
                 id="kVA"),
    pytest.param({"n": "voltage_l2", "u": "V", "v": 229}, {"voltage_l2_v": 229.0},
                 id="phase-alias"),
    pytest.param({"n": "dimming", "u": "/", "v": 0.4}, {"dimming_pct": 40.0}, id="ratio"),
    pytest.param({"n": "burning_hours", "u": "h", "v": 10234}, {"burning_hours_h": 10234.0},
                 id="name-plus-unit-suffix"),
    pytest.param({"n": "lamp", "vb": True}, {"lamp_on": 1.0}, id="boolean"),
    pytest.param({"n": "motion", "vb": False}, {"motion": 0.0}, id="canonical-boolean"),
    pytest.param({"n": "frequency", "u": "Hz", "v": 50.01}, {"frequency": 50.01},
                 id="unknown-kept"),
])
def test_units_and_names_map_to_metrics(record: dict[str, Any], values: dict[str, float]) -> None:
    """Names and units (RFC 8428, RFC 8798 secondary units) map to canonical metrics."""
    env = only([record])
    assert env.values == pytest.approx(values)
    assert env.unknown_metrics == (("frequency",) if "frequency" in values else ())


def test_string_and_data_values_go_to_attrs() -> None:
    """vs and vd are details, by short name."""
    env = only([{"bn": "urn:dev:mac:0024befffe804ff1:", "n": "firmware", "vs": "2.4.1"},
                {"n": "blob", "vd": "aGVsbG8"}, {"n": "temp", "u": "Cel", "v": 21}])
    assert env.attrs == {"firmware": "2.4.1", "blob": "aGVsbG8"}
    assert env.values == {"temperature_c": 21.0}


def test_base_value_and_base_sum() -> None:
    """bv is added to v, bs to s; a record with no value field takes the base value."""
    envelopes = parse([
        {"bn": "m:", "bt": 1.8e9, "bu": "Wh", "bv": 1000, "n": "energy", "v": 5},
        {"n": "energy", "t": 60},
        {"bs": 100, "n": "energy", "t": 120, "s": 1},
    ])
    assert [e.values["energy_import_wh"] for e in envelopes] == [1005.0, 1000.0, 101.0]


def test_base_only_record_sets_bases() -> None:
    """A first record with nothing but base fields is accepted."""
    env = only([{"bn": "urn:dev:mac:0024befffe804ff1:", "bt": 1.8e9, "bver": 10},
                {"n": "temperature", "u": "Cel", "v": 19}])
    assert env.ts == datetime.fromtimestamp(1.8e9, UTC)
    assert env.values == {"temperature_c": 19.0}


def test_unknown_optional_fields_are_ignored() -> None:
    """Fields not ending in '_' are ignorable (RFC 8428 4.4)."""
    env = only([{"n": "temperature", "u": "Cel", "v": 19, "ut": 300, "l": "x", "foo": 1}])
    assert env.values == {"temperature_c": 19.0}


def test_several_sensors_are_split_and_named() -> None:
    """Two name prefixes: one envelope per sensor, attrs['sensor'] = the prefix's last segment."""
    envelopes = parse([
        {"bn": "hub-3/bedroom-env/", "n": "temperature", "u": "Cel", "v": 19.5},
        {"n": "humidity", "u": "%RH", "v": 52},
        {"bn": "urn:dev:mac:0024befffe804ff1:", "n": "temperature", "u": "Cel", "v": 21},
    ], device_type="care_hub")
    assert [(e.attrs["sensor"], e.values) for e in envelopes] == [
        ("bedroom-env", {"temperature_c": 19.5, "humidity_pct": 52.0}),
        ("0024befffe804ff1", {"temperature_c": 21.0}),
    ]


def test_care_hub_single_sensor_is_named() -> None:
    """Packs of a care hub always name the sensor, even a single one."""
    env = only([{"bn": "hub-3/door-1/", "n": "door", "vb": True}], device_type="care_hub")
    assert env.attrs == {"sensor": "door-1"}
    assert env.values == {"door_open": 1.0}


def test_single_device_pack_has_no_sensor() -> None:
    """A device speaking for itself under its own name gets no sensor attribute."""
    env = only([{"bn": "urn:dev:mac:0024befffe804ff1:", "n": "power", "u": "W", "v": 5}])
    assert "sensor" not in env.attrs


@pytest.mark.parametrize(("payload", "reason", "detail"), [
    pytest.param(b"[{\"n\": ", DlqReason.MALFORMED, "JSON", id="bad-json"),
    pytest.param(b"\xff\xfe[]", DlqReason.MALFORMED, "JSON", id="not-utf8"),
    pytest.param({"n": "power", "u": "W", "v": 1}, DlqReason.INVALID_SCHEMA, "array",
                 id="not-an-array"),
    pytest.param([], DlqReason.INVALID_SCHEMA, "array", id="empty-pack"),
    pytest.param([42], DlqReason.INVALID_SCHEMA, "object", id="record-not-object"),
    pytest.param([{"n": "pow er", "v": 1}], DlqReason.INVALID_SCHEMA, "name", id="bad-name"),
    pytest.param([{"n": "_power", "u": "W", "v": 1}], DlqReason.INVALID_SCHEMA, "name",
                 id="bad-first-character"),
    pytest.param([{"u": "W", "v": 1}], DlqReason.INVALID_SCHEMA, "name", id="no-name"),
    pytest.param([{"n": "power", "u": "W", "v": 1, "vs": "x"}], DlqReason.INVALID_SCHEMA,
                 "more than one", id="two-values"),
    pytest.param([{"n": "power", "u": "W"}], DlqReason.INVALID_SCHEMA, "no value",
                 id="no-value"),
    pytest.param([{"bn": "x:"}], DlqReason.INVALID_SCHEMA, "no measurement", id="only-bases"),
    pytest.param([{"n": "power", "u": "W", "v": "1"}], DlqReason.INVALID_SCHEMA, "v must",
                 id="string-v"),
    pytest.param([{"n": "lamp", "vb": 1}], DlqReason.INVALID_SCHEMA, "vb", id="numeric-vb"),
    pytest.param([{"n": "power", "u": "W", "v": 1, "bver": 11}], DlqReason.UNSUPPORTED_FORMAT,
                 "version", id="future-version"),
    pytest.param([{"bver": 10}, {"n": "power", "u": "W", "v": 1, "bver": 9}],
                 DlqReason.INVALID_SCHEMA, "versions", id="mixed-versions"),
    pytest.param([{"n": "power", "u": "W", "v": 1, "crit_": True}],
                 DlqReason.UNSUPPORTED_FORMAT, "crit_", id="must-understand"),
    pytest.param([{"n": "power", "u": "W", "v": 1, "t": "now"}], DlqReason.BAD_TIMESTAMP, "t",
                 id="string-time"),
    pytest.param([{"n": "power", "u": "W", "v": 1, "bt": True}], DlqReason.BAD_TIMESTAMP, "bt",
                 id="boolean-base-time"),
    pytest.param([{"n": "power", "u": "W", "v": 1, "t": 1e300}], DlqReason.BAD_TIMESTAMP,
                 "range", id="time-out-of-range"),
    pytest.param([{"n": "power", "u": "W", "v": 1, "t": -1e12}], DlqReason.BAD_TIMESTAMP,
                 "range", id="relative-out-of-range"),
    pytest.param([{"n": "5700", "u": "furlong", "v": 1}], DlqReason.UNKNOWN_METRIC, "record 0",
                 id="no-name-no-unit"),
    pytest.param([{"n": "temperature", "u": "W", "v": 1}], DlqReason.BAD_UNIT, "temperature_c",
                 id="unit-against-name"),
    pytest.param([{"n": "energy_import_wh", "u": "degF", "v": 1}], DlqReason.BAD_UNIT, "degF",
                 id="unknown-unit-on-canonical-name"),
    pytest.param([{"n": "temperature", "u": "Cel", "s": 5}], DlqReason.UNKNOWN_METRIC, "sum",
                 id="sum-without-meaning"),
    pytest.param([{"bn": "a:", "n": "power", "u": "W", "v": 1}, {"n": "power", "u": "kW", "v": 2}],
                 DlqReason.INVALID_SCHEMA, "second value", id="same-metric-same-time"),
    pytest.param([{"n": "power", "u": "kW", "v": 1e308}], DlqReason.BAD_VALUE, "finite",
                 id="overflow-after-conversion"),
    pytest.param([{"n": "note", "vs": "x" * 300}], DlqReason.INVALID_SCHEMA, "longer",
                 id="long-text"),
])
def test_rejected_packs(payload: Any, reason: DlqReason, detail: str) -> None:
    """Each defect maps to its DLQ reason, and the detail says what is wrong."""
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    with pytest.raises(PayloadError) as err:
        parse_message(raw, ctx("up/senml", "meter"))
    assert err.value.reason is reason
    assert detail in err.value.detail


RECORD_NAMES = st.sampled_from(["power", "energy", "voltage", "current", "temperature",
                                "humidity", "battery", "rssi", "lamp_power_w", "dimming"])
UNITS_FOR = {"power": ["W", "kW"], "energy": ["Wh", "kWh"], "voltage": ["V", "mV"],
             "current": ["A", "mA"], "temperature": ["Cel", "K"], "humidity": ["%RH"],
             "battery": ["%EL"], "rssi": ["dBm", "dBW"], "lamp_power_w": ["W"],
             "dimming": ["%", "/"]}


@st.composite
def valid_packs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A pack of distinct named records, with optional base name and times."""
    names = draw(st.lists(RECORD_NAMES, min_size=1, max_size=6, unique=True))
    pack: list[dict[str, Any]] = []
    for name in names:
        rec: dict[str, Any] = {"n": name, "u": draw(st.sampled_from(UNITS_FOR[name])),
                               "v": draw(st.floats(0, 1, allow_nan=False))}
        if draw(st.booleans()):
            rec["t"] = draw(st.sampled_from([-120, -60, 0]))
        pack.append(rec)
    if draw(st.booleans()):
        pack[0]["bn"] = "urn:dev:mac:0024befffe804ff1:"
    if draw(st.booleans()):
        pack[0]["bt"] = draw(st.floats(1.7e9, 1.9e9))
    return pack


@settings(max_examples=200, deadline=None)
@given(valid_packs())
def test_valid_packs_always_parse(pack: list[dict[str, Any]]) -> None:
    """Well-formed packs parse into one value per record."""
    envelopes = parse(pack, device_type=None)
    assert sum(len(e.values) for e in envelopes) == len(pack)
    assert all(e.unknown_metrics == () for e in envelopes)


@settings(max_examples=200, deadline=None)
@given(valid_packs(), st.data())
def test_mutated_packs_raise_only_payload_errors(pack: list[dict[str, Any]],
                                                 data: st.DataObject) -> None:
    """Byte mutations of a valid pack never raise anything but PayloadError."""
    payload = bytearray(orjson.dumps(pack))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(payload) - 1))
        payload[pos] = data.draw(st.sampled_from(b'0123456789-.e"{}[],:tnfx '))
    try:
        parse_message(bytes(payload), ctx("up/senml", "streetlight"))
    except PayloadError:
        pass


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False,
                                                                             allow_infinity=False)
    | st.text(max_size=10) | st.sampled_from(["W", "kWh", "Cel", "power", "urn:dev:x:", "%"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb", "vd",
                         "s", "t", "ut", "x_"]), inner, max_size=6),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(JSON_VALUES, max_size=5))
def test_random_records_raise_only_payload_errors(pack: list[Any]) -> None:
    """Arbitrary JSON records with SenML field names never crash the parser."""
    try:
        parse_message(orjson.dumps(pack), ctx("up/senml", "care_hub"))
    except PayloadError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_payload_errors(payload: bytes) -> None:
    """Garbage is rejected with a reason."""
    try:
        parse_message(payload, ctx("up/senml"))
    except PayloadError:
        pass
